"""Stripe: backfill by listing (newest first), then the /v1/events feed from a marker taken before it.

Stripe objects carry no "updated" field, so versions come from the server clock: an event's
`created`, or for a listed object the response's `Date` minus 1 ms. The minus 1 ms makes an event
stamped in the same second as the listing win over it: that event is at least as new as what we read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from apisync.events import Observation, iso_to_ms
from apisync.http import ApiClient, FatalError, StripeCursorPaginator, iterate_pages
from apisync.sources.base import Batch, ObservationFactory, require, server_time_ms


@dataclass(frozen=True, slots=True)
class StripeCollection:
    """Where a collection lists, and which event types report its changes."""

    path: str
    event_types: tuple[str, ...]
    list_params: Mapping[str, str] | None = None


COLLECTIONS: dict[str, StripeCollection] = {
    "customer": StripeCollection("/v1/customers", ("customer.created", "customer.updated", "customer.deleted")),
    "subscription": StripeCollection(
        "/v1/subscriptions",
        ("customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted"),
        {"status": "all"},  # Stripe omits canceled subscriptions unless asked for all
    ),
    "invoice": StripeCollection(
        "/v1/invoices", ("invoice.created", "invoice.updated", "invoice.paid", "invoice.deleted")),
    "charge": StripeCollection("/v1/charges", ("charge.succeeded", "charge.updated", "charge.refunded")),
}
PAGE_SIZE = 100


class StripeSource:
    """The Stripe source; incremental reads /v1/events oldest-first with `ending_before`."""

    api = "stripe"
    collections = tuple(COLLECTIONS)

    def __init__(self, factory: ObservationFactory | None = None, page_size: int = PAGE_SIZE) -> None:
        self.factory = factory or ObservationFactory(self.api)
        self.page_size = page_size

    def incremental_start(self, client: ApiClient, collection: str) -> dict[str, Any]:
        result = client.get_json("/v1/events", self._event_params(collection, limit=1))
        events = result.data.get("data") or []
        return {"after_event": events[0]["id"] if events else None,
                "since": server_time_ms(result.response, self.api) // 1000}

    def backfill(self, client, collection, cursor, start_date) -> Iterator[Batch]:
        spec = COLLECTIONS[collection]
        params = dict(spec.list_params or {})
        if start_date:
            params["created[gte]"] = _epoch_s(start_date)
        paginator = StripeCursorPaginator(spec.path, params, limit=self.page_size, state=cursor)
        for page in iterate_pages(client, paginator):
            version = server_time_ms(page.response, self.api) - 1
            observations = [self._listed(collection, obj, version, spec.path, "backfill") for obj in page.records]
            yield Batch(observations, page.state, done=paginator.done)

    def incremental(self, client, collection, cursor) -> Iterator[Batch]:
        after = cursor.get("after_event")
        if after is None:
            yield from self._first_events(client, collection, cursor)
            return
        while True:
            params = self._event_params(collection, limit=self.page_size, ending_before=after)
            page = client.get_json("/v1/events", params).data
            events = list(reversed(page.get("data") or []))  # oldest first
            if events:
                after = require(events[-1], "id", self.api, "/v1/events")
            has_more = bool(page.get("has_more"))
            yield Batch([self._from_event(collection, e) for e in events],
                        {"after_event": after, "since": cursor.get("since")}, done=not has_more)
            if not has_more:
                return

    def list_ids(self, client, collection) -> Iterator[str]:
        spec = COLLECTIONS[collection]
        paginator = StripeCursorPaginator(spec.path, dict(spec.list_params or {}), limit=self.page_size)
        for page in iterate_pages(client, paginator):
            yield from (str(require(obj, "id", self.api, spec.path)) for obj in page.records)

    def fetch(self, client, collection, object_id) -> Observation | None:
        path = f"{COLLECTIONS[collection].path}/{object_id}"
        try:
            result = client.get_json(path)
        except FatalError as error:
            if error.status == 404:
                return None
            raise
        if result.data.get("deleted"):
            return None
        return self._listed(collection, result.data, server_time_ms(result.response, self.api) - 1, path, "reconcile")

    def _first_events(self, client, collection, cursor) -> Iterator[Batch]:
        # No event existed when the backfill began: read everything since its start time (newest
        # first, the only order `created[gte]` offers), then continue with ending_before from the newest.
        params = self._event_params(collection, **{"created[gte]": cursor.get("since") or 0})
        events = [e for page in iterate_pages(client, StripeCursorPaginator("/v1/events", params, limit=self.page_size))
                  for e in page.records]
        events.reverse()
        after = events[-1]["id"] if events else None
        yield Batch([self._from_event(collection, e) for e in events],
                    {"after_event": after, "since": cursor.get("since")}, done=True)

    def _event_params(self, collection: str, **extra: Any) -> dict[str, Any]:
        return {"types[]": list(COLLECTIONS[collection].event_types), **extra}

    def _listed(self, collection: str, obj: Any, version: int, endpoint: str, source: str) -> Observation:
        object_id = require(obj, "id", self.api, endpoint)
        return self.factory.make(collection, object_id, version, obj, source=source)

    def _from_event(self, collection: str, event: Mapping[str, Any]) -> Observation:
        created = require(event, "created", self.api, "/v1/events")
        obj = require(event.get("data") or {}, "object", self.api, "/v1/events")
        deleted = str(event.get("type", "")).endswith(".deleted")
        return self.factory.make(collection, require(obj, "id", self.api, "/v1/events"),
                                 int(created) * 1000, obj, source="poll", deleted=deleted)


def _epoch_s(date: str) -> int:
    return iso_to_ms(date if "T" in date else f"{date}T00:00:00+00:00") // 1000
