"""HubSpot CRM v3: contacts, companies and deals through the search API, walks that never skip and never
page past its 10,000-result cap.

CRM search (https://developers.hubspot.com/docs/api-reference/search/guide#limitations) answers at most
10,000 results per query (an `after` of 10,000 or more is a 400), sorts on ONE property (airbytehq/airbyte#43317:
"we can only sort on a single field in HS"), lags behind writes ("several seconds to propagate to the search
indexing"), and never shows archived objects. So no walk here ever sends `after`: every page is the first
page of a fresh query whose filter starts after what was emitted.

- Backfill: `hs_object_id GT <last id>` sorted by `hs_object_id` (immutable: no page can shift), re-issued
  per page; the cursor is the last id. The incremental start marker is the server time taken before it.
- Incremental: `<stamp> GTE since` sorted by the stamp (`hs_lastmodifieddate`; contacts `lastmodifieddate`),
  from the cursor minus `lookback_ms` (covers the search index lag), re-issued from the newest stamp of each
  page; `KeysetPosition` dedupes the re-read ties. A page entirely in one millisecond is swept by
  `<stamp> EQ ms AND hs_object_id GT <last id>` sorted by id, then the walk continues at ms + 1: every query
  strictly advances (a stamp or an id), so the walk cannot loop.
- Deletes: archiving is HubSpot's delete and search never shows it, so each incremental run also lists
  `?archived=true` (ordered by id, no cap on list endpoints) and emits a delete for every object archived
  since the previous listing began (`archived_since`, server time). Deletion webhooks bring them sooner;
  reconcile (`list_ids` + `fetch` → `Gone` on 404) catches the rest.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from apisync.events import Observation, iso_to_ms, ms_to_iso
from apisync.http import ApiClient, FatalError, MalformedResponseError, PaginationLoopError
from apisync.sources.base import Batch, Gone, ObservationFactory, require, server_time_ms
from apisync.sources.keyset import MAX_RECENT, KeysetPosition

PAGE_SIZE = 200  # the most one search page returns (changelog "Increasing our API limits", 2024)
LIST_PAGE_SIZE = 100  # the most one list page returns
BATCH_READ_SIZE = 100  # ids per batch read (CRM objects API, "Read a batch of objects": inputs up to 100)
LOOKBACK_MS = 300_000  # search lags "several seconds"; five minutes of re-reads (deduped) is cheap
CLOCK_SLACK_MS = 1_000  # the Date header has whole seconds; archivedAt has milliseconds
GONE = "archived in HubSpot (read answers 404)"
_COMMON = ("createdate", "hs_lastmodifieddate", "hs_object_id")
# collection: (path objectType, change stamp property, the properties synced: a read asks for the same)
OBJECTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "contact": ("contacts", "lastmodifieddate",
                (*_COMMON, "lastmodifieddate", "email", "firstname", "lastname", "lifecyclestage", "phone")),
    "company": ("companies", "hs_lastmodifieddate", (*_COMMON, "name", "domain", "industry", "city", "description")),
    "deal": ("deals", "hs_lastmodifieddate",
             (*_COMMON, "dealname", "amount", "dealstage", "pipeline", "closedate", "description")),
}


def _filter(prop: str, operator: str, value: Any) -> dict[str, str]:
    return {"propertyName": prop, "operator": operator, "value": str(value)}


class HubSpotSource:
    """Contacts, companies and deals of one HubSpot account (a private app token)."""

    api = "hubspot"
    collections = tuple(OBJECTS)

    def __init__(self, factory: ObservationFactory | None = None, lookback_ms: int = LOOKBACK_MS,
                 page_size: int = PAGE_SIZE, max_recent: int = MAX_RECENT) -> None:
        if not 1 <= page_size <= PAGE_SIZE:
            raise ValueError(f"hubspot page_size must be 1..{PAGE_SIZE}, got {page_size}")
        self.factory = factory or ObservationFactory(self.api)
        self.lookback_ms = lookback_ms
        self.page_size = page_size
        self.max_recent = max_recent  # dedupe memory per run (see `keyset`)

    def incremental_start(self, client: ApiClient, collection: str) -> dict[str, Any]:
        response = client.get(self._path(collection), {"limit": 1})
        return KeysetPosition(server_time_ms(response, self.api)).to_cursor(self.lookback_ms)

    def backfill(self, client, collection, cursor, start_date) -> Iterator[Batch]:
        """Every live object by ascending id; the cursor is the last id emitted."""
        last_id = str((cursor or {}).get("last_id") or "")
        floor = [_filter(OBJECTS[collection][1], "GTE", iso_to_ms(
            start_date if "T" in start_date else f"{start_date}T00:00:00+00:00"))] if start_date else []
        while True:
            after = [_filter("hs_object_id", "GT", last_id)] if last_id else []
            rows = self._search(client, collection, floor + after, "hs_object_id")
            if rows:
                last_id = self._advance_id(collection, last_id, rows)
            done = len(rows) < self.page_size
            yield Batch([self._observe(collection, row, "backfill") for row in rows], {"last_id": last_id}, done)
            if done:
                return

    def incremental(self, client, collection, cursor) -> Iterator[Batch]:
        """Changes since the cursor minus the lookback, then the objects archived since the last listing."""
        position = KeysetPosition.from_cursor(cursor, self.max_recent)
        since_ms = max(0, position.version - self.lookback_ms)
        archived_since = iso_to_ms(cursor["archived_since"]) if cursor.get("archived_since") else since_ms
        for rows in self._changes(client, collection, position, since_ms):
            observations = [self._observe(collection, row, "poll") for row in rows]
            yield Batch(observations, self._cursor(position, archived_since))
        yield from self._archived(client, collection, position, archived_since)

    def list_ids(self, client, collection) -> Iterator[str]:
        for row in self._listing(client, collection, archived=False):
            yield str(require(row, "id", self.api, self._path(collection)))

    def fetch(self, client, collection, object_id) -> Observation | Gone:
        """One object as a read returns it (the synced properties); Gone once archived (404)."""
        path = f"{self._path(collection)}/{object_id}"
        try:
            data = client.get_json(path, {"properties": ",".join(OBJECTS[collection][2])}).data
        except FatalError as error:
            if error.status == 404:
                return Gone(GONE)
            raise
        return self._observe(collection, data, "reconcile")

    refetch_batch_size = BATCH_READ_SIZE

    def refetch_many(self, client, collection, object_ids) -> dict[str, Observation | Gone]:
        """Up to `BATCH_READ_SIZE` objects in one `batch/read`; an id it does not return is Gone (archived).

        The batch read answers the live objects it found as `results` and names the others in `errors`
        (207, category OBJECT_NOT_FOUND); archived objects are not returned unless `archived` is asked."""
        # propertiesWithHistory is required by the batch read's schema (BatchReadInputSimplePublicObjectId).
        body = {"inputs": [{"id": str(oid)} for oid in object_ids], "properties": list(OBJECTS[collection][2]),
                "propertiesWithHistory": []}
        data = client.post_json(f"{self._path(collection)}/batch/read", body).data
        rows = data.get("results") if isinstance(data, Mapping) else None
        if not isinstance(rows, list):
            raise MalformedResponseError(self.api, "POST", f"{self._path(collection)}/batch/read", 200,
                                         "the batch read answer has no results list")
        found = {str(require(row, "id", self.api, self._path(collection))): row for row in rows}
        return {str(oid): self._observe(collection, found[str(oid)], "reconcile") if str(oid) in found else Gone(GONE)
                for oid in object_ids}

    def _changes(self, client, collection: str, position: KeysetPosition, since_ms: int) -> Iterator[list]:
        """Fresh rows page by page, oldest change first; sweeps a millisecond that fills a whole page."""
        stamp = OBJECTS[collection][1]
        while True:
            rows = self._search(client, collection, [_filter(stamp, "GTE", since_ms)], stamp)
            yield self._fresh(collection, position, rows)
            if len(rows) < self.page_size:
                return
            newest = max(self._version(collection, row) for row in rows)
            if newest > since_ms:
                since_ms = newest  # inclusive: the ties at `newest` are re-read and deduped
                continue
            yield from self._sweep(client, collection, position, since_ms)
            since_ms += 1

    def _sweep(self, client, collection: str, position: KeysetPosition, ms: int) -> Iterator[list]:
        """Every object stamped `ms`, by id: more of them than one page holds."""
        stamp, last_id = OBJECTS[collection][1], ""
        while True:
            after = [_filter("hs_object_id", "GT", last_id)] if last_id else []
            rows = self._search(client, collection, [_filter(stamp, "EQ", ms), *after], "hs_object_id")
            yield self._fresh(collection, position, rows)
            if len(rows) < self.page_size:
                return
            last_id = self._advance_id(collection, last_id, rows)

    def _archived(self, client, collection: str, position: KeysetPosition, since_ms: int) -> Iterator[Batch]:
        """Deletes of the objects archived at or after `since_ms`; the new mark goes with the last page."""
        first = client.get(self._path(collection), {"limit": 1, "archived": "true"})
        started = server_time_ms(first, self.api) - CLOCK_SLACK_MS  # before any archive this walk can miss
        deletes = []
        for row in self._listing(client, collection, archived=True):
            archived_ms = iso_to_ms(require(row, "archivedAt", self.api, self._path(collection)))
            if archived_ms >= since_ms:
                deletes.append(self.factory.make(collection, require(row, "id", self.api, self._path(collection)),
                                                 archived_ms, None, source="poll", deleted=True, reason=GONE))
        for start in range(0, len(deletes), self.page_size):
            yield Batch(deletes[start:start + self.page_size], self._cursor(position, since_ms))
        yield Batch([], self._cursor(position, max(since_ms, started)), done=True)

    def _listing(self, client, collection: str, archived: bool) -> Iterator[dict]:
        """The list endpoint by id (`after` = the next id; list endpoints have no 10,000 cap)."""
        params: dict[str, Any] = {"limit": LIST_PAGE_SIZE, "properties": "hs_object_id",
                                  "archived": "true" if archived else "false"}
        while True:
            page = client.get_json(self._path(collection), params).data
            yield from page.get("results") or []
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return
            if after == params.get("after"):
                raise PaginationLoopError(self.api, "GET", self._path(collection), 200,
                                          f"paging.next.after repeats {after!r}")
            params["after"] = after

    def _search(self, client, collection: str, filters: list[dict], sort: str) -> list[dict]:
        body = {"filterGroups": [{"filters": filters}] if filters else [],
                "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
                "properties": list(OBJECTS[collection][2]), "limit": self.page_size}
        data = client.post_json(f"{self._path(collection)}/search", body).data
        rows = data.get("results") if isinstance(data, Mapping) else None
        if not isinstance(rows, list):
            raise PaginationLoopError(self.api, "POST", f"{self._path(collection)}/search", 200,
                                      "the search answer has no results list")
        return rows

    def _advance_id(self, collection: str, last_id: str, rows: list[dict]) -> str:
        """The id after which the next page starts; it must move forward, or the walk would loop."""
        new = str(require(rows[-1], "id", self.api, self._path(collection)))
        if last_id and int(new) <= int(last_id):
            raise PaginationLoopError(self.api, "POST", f"{self._path(collection)}/search", 200,
                                      f"id order went back from {last_id} to {new}")
        return new

    def _fresh(self, collection: str, position: KeysetPosition, rows: list[dict]) -> list[dict]:
        keyed = [(str(require(row, "id", self.api, self._path(collection))), self._version(collection, row), row)
                 for row in rows]
        fresh = [(oid, version, row) for oid, version, row in keyed if position.is_new(oid, version, row)]
        for oid, version, row in fresh:
            position.advance(oid, version, row)
        return [row for _oid, _version, row in fresh]

    def _cursor(self, position: KeysetPosition, archived_since: int) -> dict[str, Any]:
        return {**position.to_cursor(self.lookback_ms), "archived_since": ms_to_iso(archived_since)}

    def _version(self, collection: str, row: Any) -> int:
        props = require(row, "properties", self.api, self._path(collection))
        return iso_to_ms(require(props, OBJECTS[collection][1], self.api, self._path(collection)))

    def _observe(self, collection: str, row: Any, source: str) -> Observation:
        object_id = require(row, "id", self.api, self._path(collection))
        return self.factory.make(collection, object_id, self._version(collection, row), row, source=source)

    @staticmethod
    def _path(collection: str) -> str:
        return f"/crm/v3/objects/{OBJECTS[collection][0]}"
