"""Salesforce: one SOQL keyset walk on (SystemModstamp, Id) serves backfill and incremental.

`queryAll` includes soft-deleted rows (IsDeleted = true), which become delete observations, so the
walk sees deletes too. SystemModstamp (indexed, >= LastModifiedDate) is the documented cursor field.

Long transactions commit rows stamped with their *start* time, so a row can appear behind the cursor
long after it. Before each incremental walk (and at the backfill's hand-over) the source asks
`sobjects/<Type>/updated/` for `latestDateCovered`: "for safety, use this value for the startDate of
your next call ... If Salesforce executes a long-running transaction on your instance, the value in
this field is the start time of that long-running transaction until it completes" (SOAP API
Developer Guide, GetUpdatedResult). Every row stamped before it was committed before the walk began,
so the next run restarts at min(cursor - lookback, covered) and nothing still open is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from apisync.events import Observation, iso_to_ms, ms_to_iso
from apisync.http import ApiClient, FatalError, NextRecordsUrlPaginator, iterate_pages
from apisync.sources.base import Batch, ObservationFactory, require, server_time_ms
from apisync.sources.keyset import MAX_RECENT, KeysetPosition

API_VERSION = "v61.0"
PAGE_SIZE = 2000  # the most one SOQL batch returns
LOOKBACK_MS = 60_000  # ties and clock jitter; long transactions are covered by latestDateCovered
# Ids per re-fetch query: 200 quoted 18-character ids keep the query URL near 5 KB, well inside the
# REST API's 16,384-byte URI limit and SOQL's 100,000-character statement limit.
REFETCH_IDS = 200
REPLICATION_DAYS = 29  # `updated/` accepts a start at most 30 days back
log = logging.getLogger("apisync.apis.salesforce")
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

# Outbound Messaging (SOAP) carries every value as text; these declared fields are not strings in REST.
FIELD_KINDS = {"IsDeleted": "boolean", "IsClosed": "boolean", "IsWon": "boolean", "AnnualRevenue": "double",
               "Amount": "double", "Probability": "double", "NumberOfEmployees": "int",
               "CreatedDate": "datetime", "LastModifiedDate": "datetime", "SystemModstamp": "datetime"}
COLLECTION_OF_TYPE = {sobject: collection for collection, (sobject, _) in OBJECTS.items()}


def rest_value(name: str, text: str | None) -> Any:
    """One SOAP field value as the REST API renders it (datetimes as `...000+0000`)."""
    kind = FIELD_KINDS.get(name)
    if text is None or kind is None:
        return text
    if kind == "boolean":
        return text == "true"
    if kind == "double":
        return float(text)
    if kind == "int":
        return int(text)
    return ms_to_iso(iso_to_ms(text)).replace("Z", "+0000")


def row_from_soap(collection: str, object_id: str, values: dict[str, str | None]) -> dict[str, Any] | None:
    """The REST row for a SOAP sObject, or None unless it carries every declared field."""
    sobject, fields = OBJECTS[collection]
    if any(name not in values for name in fields):
        return None
    url = f"/services/data/{API_VERSION}/sobjects/{sobject}/{object_id}"
    return {"attributes": {"type": sobject, "url": url}, **{f: rest_value(f, values[f]) for f in fields}}


class SalesforceSource:
    """Account, Contact and Opportunity from one org."""

    api = "salesforce"
    collections = tuple(OBJECTS)

    def __init__(self, factory: ObservationFactory | None = None, lookback_ms: int = LOOKBACK_MS,
                 page_size: int = PAGE_SIZE, max_recent: int = MAX_RECENT) -> None:
        self.factory = factory or ObservationFactory(self.api)
        self.lookback_ms = lookback_ms
        self.page_size = page_size
        self.max_recent = max_recent  # dedupe memory per run (see `keyset`)

    def incremental_start(self, client: ApiClient, collection: str) -> dict[str, Any]:
        now_ms = self._server_now(client, collection)
        covered = self._latest_covered(client, collection, now_ms, now_ms)
        return self._cursor(KeysetPosition(now_ms), covered)

    def backfill(self, client, collection, cursor, start_date) -> Iterator[Batch]:
        position = KeysetPosition.from_cursor(cursor, self.max_recent)
        if not cursor and start_date:
            position.version = iso_to_ms(start_date if "T" in start_date else f"{start_date}T00:00:00+00:00")
        yield from self._walk(client, collection, position, position.version, position.last_id, "backfill")

    def incremental(self, client, collection, cursor) -> Iterator[Batch]:
        position = KeysetPosition.from_cursor(cursor, self.max_recent)
        since_ms = self.restart_ms(position, cursor)
        # asked before the walk: whatever is still open now is stamped at or after `covered`
        covered = self._latest_covered(client, collection, since_ms, self._server_now(client, collection))
        yield from self._walk(client, collection, position, since_ms, "", "poll", covered)

    def restart_ms(self, position: KeysetPosition, cursor: dict[str, Any] | None) -> int:
        """Where a run re-reads from: the lookback, or earlier if a transaction was open last time."""
        since = position.version - self.lookback_ms
        if cursor and cursor.get("covered"):
            since = min(since, iso_to_ms(cursor["covered"]))
        return max(0, since)

    def list_ids(self, client, collection) -> Iterator[str]:
        sobject, _ = OBJECTS[collection]
        paginator = NextRecordsUrlPaginator(self._path("query"), {"q": f"SELECT Id FROM {sobject}"}, api=self.api)
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

    refetch_batch_size = REFETCH_IDS

    def refetch_many(self, client, collection, object_ids) -> dict[str, Observation | None]:
        """Up to `REFETCH_IDS` objects in one SOQL `WHERE Id IN (...)` query; an id it does not return is
        gone (None), as a read's 404 would say (`query`, unlike `queryAll`, leaves deleted rows out)."""
        sobject, fields = OBJECTS[collection]
        if not all(str(oid).isalnum() for oid in object_ids):  # ids are alphanumeric: nothing to quote
            raise FatalError(self.api, "GET", self._path("query"), 400, "an id to re-fetch is not a Salesforce id")
        quoted = ", ".join(f"'{oid}'" for oid in object_ids)
        soql = f"SELECT {', '.join(fields)} FROM {sobject} WHERE Id IN ({quoted})"
        paginator = NextRecordsUrlPaginator(self._path("query"), {"q": soql}, api=self.api)
        found = {}
        for page in iterate_pages(client, paginator):
            for row in page.records:
                found[str(require(row, "Id", self.api, self._path("query")))] = row
        return {str(oid): self._observe(collection, found[str(oid)], "reconcile") if str(oid) in found else None
                for oid in object_ids}

    def _walk(self, client, collection, position: KeysetPosition, since_ms: int, after_id: str,
              source: str, covered: int | None = None) -> Iterator[Batch]:
        while True:
            rows = self._page(client, collection, since_ms, after_id)
            fresh = [row for row in rows if position.is_new(*self._id_version(row), row)]
            for row in fresh:
                position.advance(*self._id_version(row), row)
            done = len(rows) < self.page_size
            observations = [self._observe(collection, row, source) for row in fresh]
            yield Batch(observations, self._cursor(position, covered), done=done)
            if done:
                return
            after_id, since_ms = self._id_version(rows[-1])

    def _cursor(self, position: KeysetPosition, covered: int | None) -> dict[str, Any]:
        """The position, plus `covered`; its dedupe memory spans everything the next run re-reads."""
        if covered is None:
            return position.to_cursor(self.lookback_ms)
        keep = max(self.lookback_ms, position.version - covered)
        return {**position.to_cursor(keep), "covered": ms_to_iso(covered)}

    def _server_now(self, client, collection: str) -> int:
        sobject, _ = OBJECTS[collection]
        response = client.get(self._path("query"), {"q": f"SELECT Id FROM {sobject} LIMIT 1"})
        return server_time_ms(response, self.api)

    def _latest_covered(self, client, collection: str, since_ms: int, now_ms: int) -> int | None:
        """`latestDateCovered` of `updated/` up to now; None (lookback only) if the object has no feed."""
        sobject, _ = OBJECTS[collection]
        # the window only has to be valid: <= 30 days back, and start before end at minute precision
        start = min(max(since_ms, now_ms - REPLICATION_DAYS * 86_400_000), now_ms - 120_000)
        path = self._path(f"sobjects/{sobject}/updated/")
        try:
            answer = client.get_json(path, {"start": ms_to_iso(start), "end": ms_to_iso(now_ms)}).data
        except FatalError as error:
            if error.status not in (400, 404):
                raise
            log.warning("%s: no latestDateCovered (%s); relying on the %d s lookback",
                        sobject, error.reason, self.lookback_ms // 1000)
            return None
        latest = answer.get("latestDateCovered") if isinstance(answer, dict) else None
        return min(iso_to_ms(latest), now_ms) if isinstance(latest, str) else None

    def _page(self, client, collection: str, since_ms: int, after_id: str) -> list[dict]:
        sobject, fields = OBJECTS[collection]
        stamp = ms_to_iso(since_ms)
        where = (f"(SystemModstamp = {stamp} AND Id > '{after_id}') OR SystemModstamp > {stamp}"
                 if after_id else f"SystemModstamp >= {stamp}")
        soql = (f"SELECT {', '.join(fields)} FROM {sobject} WHERE {where} "
                f"ORDER BY SystemModstamp, Id LIMIT {self.page_size}")
        paginator = NextRecordsUrlPaginator(self._path("queryAll"), {"q": soql}, api=self.api)
        return [row for page in iterate_pages(client, paginator) for row in page.records]

    def _id_version(self, row: Any) -> tuple[str, int]:
        stamp = require(row, "SystemModstamp", self.api, self._path("queryAll"))
        return str(require(row, "Id", self.api, self._path("queryAll"))), iso_to_ms(stamp)

    def _observe(self, collection: str, row: Any, source: str) -> Observation:
        object_id, version = self._id_version(row)
        deleted = bool(row.get("IsDeleted"))
        return self.factory.make(collection, object_id, version, row, source=source, deleted=deleted,
                                 reason="IsDeleted in queryAll (in the Recycle Bin)" if deleted else None)

    def _path(self, rest: str) -> str:
        return f"/services/data/{API_VERSION}/{rest}"

