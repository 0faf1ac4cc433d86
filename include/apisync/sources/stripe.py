"""Stripe: backfill by listing (newest first), then the /v1/events feed read in settled time windows.

How Stripe really behaves, and what this module does about it:
- A list cursor (`starting_after`) that names an object deleted since answers 400 `resource_missing`
  (stripe-php#1264). The backfill position therefore also remembers the `created` second of the
  oldest object emitted and the ids emitted at that second; when the cursor object is gone the walk
  re-anchors with `created[lte]` at that second and skips those ids. It never skips nor wedges.
- Events are kept 30 days, and an `ending_before=<event>` cursor older than that answers 400. The
  incremental cursor is therefore a *time* (`at`, the server clock of the last run), not an event id:
  it moves forward on every run, even when a collection is quiet, and cannot age out while the
  schedule runs. If it is older than the retention anyway (sync paused for a month), the run says so
  in one line, re-lists the collection and reports the gap (deletes in the gap: run reconcile).
- The events list is eventually consistent: an event can become visible seconds after a newer one
  (Sequin and Estuary read Stripe events only up to now minus a settle window). Every run re-reads the
  last `settle_s` seconds before `at` and skips the event ids it already emitted (`seen`).
- Many event types change an object beyond created/updated/deleted; each collection subscribes to
  every type whose `data.object` is that object (https://docs.stripe.com/api/events/types), and
  events are routed by `data.object.object`. `customer.subscription.deleted` means the subscription
  *ended*: it stays retrievable with `status: canceled`, so it is an update, not a delete.
- Listed objects render in the request's `Stripe-Version` (else the account default), but event
  payloads in the version the event was created with (API reference, List all events). The source
  pins `Stripe-Version` on every request and re-fetches an object whose event was rendered in another
  version, so one record never changes shape between paths.

Stripe objects carry no "updated" field, so versions come from the server clock: an event's
`created`, or for a listed object the response's `Date` minus 1 ms. The minus 1 ms makes an event
stamped in the same second as the listing win over it: that event is at least as new as what we read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from apisync.events import Observation, iso_to_ms, ms_to_iso
from apisync.http import ApiClient, FatalError, MalformedResponseError
from apisync.sources.base import Batch, ObservationFactory, require, server_time_ms

log = logging.getLogger("apisync.sources.stripe")

DEFAULT_API_VERSION = "2024-06-20"
PAGE_SIZE = 100
SETTLE_S = 60  # how far back every incremental run re-reads events that may have surfaced late
RETENTION_S = 30 * 86400  # Stripe lists events of the last 30 days only
MAX_WINDOW_S = 3600  # one incremental window is held in memory: catch up a long pause in slices


@dataclass(frozen=True, slots=True)
class StripeCollection:
    """Where a collection lists, which event types change it, and which one really deletes it."""

    path: str
    object: str  # `object` of the API resource; events are routed by `data.object.object`
    event_types: tuple[str, ...]
    delete_event: str | None = None  # None: Stripe never deletes it (ended objects stay retrievable)
    list_params: Mapping[str, str] = field(default_factory=dict)


# Event types per object, from https://docs.stripe.com/api/events/types (each list ≤ 20, the `types[]` cap).
COLLECTIONS: dict[str, StripeCollection] = {
    "customer": StripeCollection(
        "/v1/customers", "customer", ("customer.created", "customer.updated", "customer.deleted"),
        delete_event="customer.deleted"),
    "subscription": StripeCollection(
        "/v1/subscriptions", "subscription",
        tuple(f"customer.subscription.{kind}" for kind in (
            "created", "updated", "deleted", "paused", "resumed", "pending_update_applied",
            "pending_update_expired", "trial_will_end")),
        list_params={"status": "all"}),  # Stripe omits canceled subscriptions unless asked for all
    "invoice": StripeCollection(
        "/v1/invoices", "invoice",
        tuple(f"invoice.{kind}" for kind in (
            "created", "updated", "deleted", "finalized", "finalization_failed", "paid",
            "payment_action_required", "payment_failed", "payment_succeeded", "sent", "marked_uncollectible",
            "voided", "overdue", "overpaid", "will_be_due")),
        delete_event="invoice.deleted"),  # only drafts can be deleted
    "charge": StripeCollection(
        "/v1/charges", "charge",
        tuple(f"charge.{kind}" for kind in (
            "captured", "expired", "failed", "pending", "refunded", "succeeded", "updated"))),
}
DELETE_EVENTS = frozenset(spec.delete_event for spec in COLLECTIONS.values() if spec.delete_event)
COLLECTION_OF_OBJECT = {spec.object: name for name, spec in COLLECTIONS.items()}


@dataclass(slots=True)
class ListPosition:
    """Where a newest-first walk stands: the last id, and the oldest `created` second with its ids."""

    after: str | None = None
    created: int | None = None
    ids_at_created: list[str] = field(default_factory=list)

    @classmethod
    def from_cursor(cls, cursor: Mapping[str, Any] | None) -> ListPosition:
        cursor = cursor or {}
        # `cursor` is the paginator state written before this position existed.
        after = cursor.get("after") or cursor.get("cursor")
        return cls(after, cursor.get("created"), list(cursor.get("ids_at_created") or ()))

    def to_cursor(self) -> dict[str, Any]:
        return {"after": self.after, "created": self.created, "ids_at_created": list(self.ids_at_created)}

    def emitted(self, obj: Mapping[str, Any]) -> bool:
        """Already walked past: only objects of the oldest second can come back after a re-anchor."""
        return obj.get("created") == self.created and obj.get("id") in self.ids_at_created

    def advance(self, obj: Mapping[str, Any]) -> None:
        created = int(obj["created"])
        if self.created is None or created < self.created:
            self.created, self.ids_at_created = created, []
        if created == self.created and obj["id"] not in self.ids_at_created:
            self.ids_at_created.append(obj["id"])
        self.after = obj["id"]


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a walk: the objects not emitted before, the response, and whether more follow."""

    objects: list[dict[str, Any]]
    response: Any
    has_more: bool


def walk_newest_first(client: ApiClient, path: str, params: Mapping[str, Any], position: ListPosition,
                      limit: int) -> Iterator[ListPage]:
    """A Stripe list, newest first, that survives the deletion of its cursor object."""
    while True:
        query = {**params, "limit": limit}
        if position.after:
            query["starting_after"] = position.after
        try:
            result = client.get_json(path, query)
        except FatalError as error:
            if not (position.after and position.created is not None and _cursor_object_gone(error)):
                raise
            log.info("stripe %s: cursor object %s no longer exists; resuming at created <= %s",
                     path, position.after, ms_to_iso(position.created * 1000))
            query.pop("starting_after")
            query["created[lte]"] = min(position.created, int(params.get("created[lte]", position.created)))
            result = client.get_json(path, query)
        objects = _list_data(result.data, path)
        fresh = [obj for obj in objects if not position.emitted(obj)]
        for obj in objects:  # newest first: the position ends at the oldest object of the page
            require(obj, "id", "stripe", path)
            require(obj, "created", "stripe", path)
            position.advance(obj)
        has_more = bool(result.data.get("has_more"))
        if has_more and not objects:
            raise MalformedResponseError("stripe", "GET", path, 200, "page says has_more but holds no object")
        yield ListPage(fresh, result.response, has_more)
        if not has_more:
            return


@dataclass(frozen=True, slots=True)
class EventWindow:
    """The incremental cursor: events up to server second `at` are read; `seen` = ids emitted since at − settle."""

    at: int
    seen: frozenset[str] = frozenset()

    @classmethod
    def from_cursor(cls, cursor: Mapping[str, Any]) -> EventWindow:
        at = cursor.get("at", cursor.get("since"))  # `since`: the hand-over of cursors written before windows
        if at is None:
            raise ValueError("stripe incremental cursor has no 'at'; re-run the backfill with restart")
        return cls(int(at), frozenset(cursor.get("seen") or ()))

    def to_cursor(self) -> dict[str, Any]:
        return {"at": self.at, "seen": sorted(self.seen)}


class StripeSource:
    """The Stripe source: list endpoints for backfill and reconcile, /v1/events for incremental."""

    api = "stripe"
    collections = tuple(COLLECTIONS)

    def __init__(self, factory: ObservationFactory | None = None, page_size: int = PAGE_SIZE,
                 api_version: str = DEFAULT_API_VERSION, settle_s: int = SETTLE_S,
                 max_window_s: int = MAX_WINDOW_S) -> None:
        self.factory = factory or ObservationFactory(self.api)
        self.page_size, self.api_version = page_size, api_version
        self.settle_s, self.max_window_s = settle_s, max_window_s
        # Sent on every request: listings then render in the pinned version, whatever the account default.
        self.headers = {"Stripe-Version": api_version}
        # Webhook payloads render in the endpoint's version: another one is re-fetched by the normalizer.
        self.webhook_options = {"api_version": api_version}

    def incremental_start(self, client: ApiClient, collection: str) -> dict[str, Any]:
        result = client.get_json("/v1/events", {"limit": 1})
        return EventWindow(server_time_ms(result.response, self.api) // 1000).to_cursor()

    def backfill(self, client, collection, cursor, start_date) -> Iterator[Batch]:
        spec = COLLECTIONS[collection]
        params = dict(spec.list_params)
        if start_date:
            params["created[gte]"] = _epoch_s(start_date)
        position = ListPosition.from_cursor(cursor)
        for page in walk_newest_first(client, spec.path, params, position, self.page_size):
            version = server_time_ms(page.response, self.api) - 1
            observations = [self._listed(collection, obj, version, "backfill") for obj in page.objects]
            yield Batch(observations, position.to_cursor(), done=not page.has_more)

    def incremental(self, client, collection, cursor) -> Iterator[Batch]:
        window = EventWindow.from_cursor(cursor)
        while True:
            batch, window, caught_up = self._next_window(client, collection, window)
            yield batch
            if caught_up:
                return

    def list_ids(self, client, collection) -> Iterator[str]:
        spec = COLLECTIONS[collection]
        for page in walk_newest_first(client, spec.path, dict(spec.list_params), ListPosition(), self.page_size):
            yield from (str(obj["id"]) for obj in page.objects)

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
        return self._listed(collection, result.data, server_time_ms(result.response, self.api) - 1, "reconcile")

    # ---- incremental ----------------------------------------------------------------------
    def _next_window(self, client, collection: str, window: EventWindow) -> tuple[Batch, EventWindow, bool]:
        """Events since at − settle (a bounded slice when there are many): the batch and the next window."""
        low = window.at - self.settle_s
        pages = self._events(client, collection, low)
        first = next(pages)
        now = server_time_ms(first.response, self.api) // 1000
        note = ""
        if low < now - RETENTION_S:
            note = self._gap_note(collection, window)
            pages.close()
            low = now - RETENTION_S
            pages = self._events(client, collection, low)
            first = next(pages)
        high = now
        if first.has_more and now - low > self.max_window_s:
            # A long pause with many events: one bounded slice now, the rest on the next turn of the loop.
            pages.close()
            high = low + self.max_window_s
            pages = self._events(client, collection, low, high)
            first = next(pages)
        events = first.objects + [e for page in pages for e in page.objects]
        events.reverse()  # oldest first, so each record's changes arrive in order
        observations = self._observations(client, collection, [e for e in events if e.get("id") not in window.seen])
        if note:
            observations += list(self._relist(client, collection))
        seen = frozenset(e["id"] for e in events if int(e.get("created", 0)) >= high - self.settle_s)
        following = EventWindow(high, seen)
        return Batch(observations, following.to_cursor(), done=high >= now, note=note), following, high >= now

    def _events(self, client, collection: str, low: int, high: int | None = None) -> Iterator[ListPage]:
        """This collection's events created in [low, high], newest first."""
        params: dict[str, Any] = {"types[]": list(COLLECTIONS[collection].event_types), "created[gte]": low}
        if high is not None:
            params["created[lte]"] = high
        return walk_newest_first(client, "/v1/events", params, ListPosition(), self.page_size)

    def _gap_note(self, collection: str, window: EventWindow) -> str:
        """A cursor older than the retention has lost events; say so in one line."""
        message = (f"stripe {collection}: the incremental cursor ({ms_to_iso(window.at * 1000)}) is older than "
                   f"Stripe's 30-day event retention; the collection was re-listed to recover missed changes, "
                   f"run stripe_reconcile to find deletes made in the gap")
        log.error(message)
        return message

    def _relist(self, client, collection: str) -> Iterator[Observation]:
        spec = COLLECTIONS[collection]
        for page in walk_newest_first(client, spec.path, dict(spec.list_params), ListPosition(), self.page_size):
            version = server_time_ms(page.response, self.api) - 1
            yield from (self._listed(collection, obj, version, "poll") for obj in page.objects)

    def _observations(self, client, collection: str, events: list[dict[str, Any]]) -> list[Observation]:
        """Events of this collection's object → observations; other versions' payloads are re-fetched."""
        spec, out, refetched = COLLECTIONS[collection], [], {}
        for event in events:
            obj = require(event.get("data") or {}, "object", self.api, "/v1/events")
            if not isinstance(obj, Mapping) or obj.get("object") != spec.object or not obj.get("id"):
                continue  # e.g. charge.dispute.* carries a dispute: not this collection's object
            created = int(require(event, "created", self.api, "/v1/events"))
            deleted = event.get("type") == spec.delete_event
            data: Mapping[str, Any] | None = obj
            if not deleted and event.get("api_version") not in (None, self.api_version):
                if obj["id"] not in refetched:
                    fresh = self.fetch(client, collection, obj["id"])
                    refetched[obj["id"]] = fresh.data if fresh else None
                data = refetched[obj["id"]]
                if data is None:
                    continue  # gone since: its delete event follows
            out.append(self.factory.make(collection, obj["id"], created * 1000, data, source="poll", deleted=deleted,
                                         reason=f"Stripe {event['type']} event" if deleted else None))
        return out

    def _listed(self, collection: str, obj: Any, version: int, source: str) -> Observation:
        object_id = require(obj, "id", self.api, COLLECTIONS[collection].path)
        return self.factory.make(collection, object_id, version, obj, source=source)


def _cursor_object_gone(error: FatalError) -> bool:
    return error.status == 400 and "resource_missing" in (error.reason or "")


def _list_data(data: Any, path: str) -> list[dict[str, Any]]:
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise MalformedResponseError("stripe", "GET", path, 200, "list page has no data array")
    return data["data"]


def _epoch_s(date: str) -> int:
    return iso_to_ms(date if "T" in date else f"{date}T00:00:00+00:00") // 1000
