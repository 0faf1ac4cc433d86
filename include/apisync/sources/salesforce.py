"""Salesforce: one SOQL keyset walk on (SystemModstamp, Id) serves backfill and incremental.

`queryAll` includes soft-deleted rows (IsDeleted = true), which become delete observations, so the
walk sees deletes too. SystemModstamp (indexed, >= LastModifiedDate) is the documented cursor field.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from apisync.events import Observation, iso_to_ms, ms_to_iso
from apisync.http import ApiClient, FatalError, SalesforceNextRecordsPaginator, iterate_pages
from apisync.sources.base import Batch, ObservationFactory, require, server_time_ms
from apisync.sources.keyset import KeysetPosition

API_VERSION = "v61.0"
PAGE_SIZE = 2000  # the most one SOQL batch returns
LOOKBACK_MS = 60_000
_AUDIT = ("OwnerId", "CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp")
# Declared fields per object (a connector names what it syncs; SOQL has no SELECT *).
OBJECTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "account": ("Account", ("Id", "IsDeleted", "Name", "Type", "Industry", "AnnualRevenue", "NumberOfEmployees",
                            "BillingCity", "BillingCountry", "Phone", "Website") + _AUDIT),
    "contact": ("Contact", ("Id", "IsDeleted", "AccountId", "FirstName", "LastName", "Name", "Email", "Phone",
                            "Title") + _AUDIT),
    "opportunity": ("Opportunity", ("Id", "IsDeleted", "AccountId", "Name", "StageName", "Amount", "CloseDate",
                                    "Probability", "IsClosed", "IsWon") + _AUDIT),
}


class SalesforceSource:
    """Account, Contact and Opportunity from one org."""

    api = "salesforce"
    collections = tuple(OBJECTS)

    def __init__(self, factory: ObservationFactory | None = None, lookback_ms: int = LOOKBACK_MS,
                 page_size: int = PAGE_SIZE) -> None:
        self.factory = factory or ObservationFactory(self.api)
        self.lookback_ms = lookback_ms
        self.page_size = page_size

    def incremental_start(self, client: ApiClient, collection: str) -> dict[str, Any]:
        sobject, _ = OBJECTS[collection]
        response = client.get(self._path("query"), {"q": f"SELECT Id FROM {sobject} LIMIT 1"})
        return KeysetPosition(server_time_ms(response, self.api)).to_cursor()

    def backfill(self, client, collection, cursor, start_date) -> Iterator[Batch]:
        position = KeysetPosition.from_cursor(cursor)
        if not cursor and start_date:
            position.version = iso_to_ms(start_date if "T" in start_date else f"{start_date}T00:00:00+00:00")
        yield from self._walk(client, collection, position, position.version, position.last_id, "backfill")

    def incremental(self, client, collection, cursor) -> Iterator[Batch]:
        position = KeysetPosition.from_cursor(cursor)
        yield from self._walk(client, collection, position, max(0, position.version - self.lookback_ms), "", "poll")

    def list_ids(self, client, collection) -> Iterator[str]:
        sobject, _ = OBJECTS[collection]
        paginator = SalesforceNextRecordsPaginator(self._path("query"), {"q": f"SELECT Id FROM {sobject}"})
        for page in iterate_pages(client, paginator):
            yield from (str(require(row, "Id", self.api, self._path("query"))) for row in page.records)

    def fetch(self, client, collection, object_id) -> Observation | None:
        sobject, _ = OBJECTS[collection]
        try:
            data = client.get_json(self._path(f"sobjects/{sobject}/{object_id}")).data
        except FatalError as error:
            if error.status == 404:
                return None
            raise
        return self._observe(collection, data, "reconcile")

    def _walk(self, client, collection, position: KeysetPosition, since_ms: int, after_id: str,
              source: str) -> Iterator[Batch]:
        while True:
            rows = self._page(client, collection, since_ms, after_id)
            fresh = [row for row in rows if position.is_new(*self._id_version(row), row)]
            for row in fresh:
                position.advance(*self._id_version(row), row)
            done = len(rows) < self.page_size
            observations = [self._observe(collection, row, source) for row in fresh]
            yield Batch(observations, position.to_cursor(self.lookback_ms), done=done)
            if done:
                return
            after_id, since_ms = self._id_version(rows[-1])

    def _page(self, client, collection: str, since_ms: int, after_id: str) -> list[dict]:
        sobject, fields = OBJECTS[collection]
        stamp = ms_to_iso(since_ms)
        where = (f"(SystemModstamp = {stamp} AND Id > '{after_id}') OR SystemModstamp > {stamp}"
                 if after_id else f"SystemModstamp >= {stamp}")
        soql = (f"SELECT {', '.join(fields)} FROM {sobject} WHERE {where} "
                f"ORDER BY SystemModstamp, Id LIMIT {self.page_size}")
        paginator = SalesforceNextRecordsPaginator(self._path("queryAll"), {"q": soql})
        return [row for page in iterate_pages(client, paginator) for row in page.records]

    def _id_version(self, row: Any) -> tuple[str, int]:
        stamp = require(row, "SystemModstamp", self.api, self._path("queryAll"))
        return str(require(row, "Id", self.api, self._path("queryAll"))), iso_to_ms(stamp)

    def _observe(self, collection: str, row: Any, source: str) -> Observation:
        object_id, version = self._id_version(row)
        return self.factory.make(collection, object_id, version, row, source=source,
                                 deleted=bool(row.get("IsDeleted")))

    def _path(self, rest: str) -> str:
        return f"/services/data/{API_VERSION}/{rest}"
