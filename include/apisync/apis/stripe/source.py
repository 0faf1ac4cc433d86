"""Stripe: backfill by listing (newest first), then the /v1/events feed read in settled time windows.

How Stripe really behaves, and what this module does about it:
- A list cursor (`starting_after`) that names an object deleted since answers 400 `resource_missing`
  (stripe-php#1264). Walks re-anchor on the `created` second instead (`lists`).
- Events are kept 30 days, and an `ending_before=<event>` cursor older than that answers 400. The
  incremental cursor is therefore a *time* (`at`, the server clock of the last run), not an event id:
  it moves forward on every run, even when a collection is quiet, and cannot age out while the
  schedule runs. If it is older than the retention anyway (sync paused for a month), the run says so
  in one line and re-lists the collection like a backfill: the delete events Stripe still lists, then
  the listing, page by page, each page committed with its position, so a crash or a timeout resumes
  where it stopped. The re-list starts at server second T and the event feed takes over from
  T − settle, so every change is in the listing or in an event (deletes older than the retention leave
  neither: run reconcile).
- The events list is eventually consistent: an event can become visible seconds after a newer one
  (Sequin and Estuary read Stripe events only up to now minus a settle window). Every run re-reads the
  last `settle_s` seconds before `at` and skips the event ids it remembers emitting (`seen`, bounded).
  A window is read oldest first, a page at a time, with a checkpoint after each (`events`): a
  billing run's burst of events costs pages, never memory or a checkpoint beyond its bound.
- Many event types change an object beyond created/updated/deleted; each collection subscribes to
  every type whose `data.object` is that object (https://docs.stripe.com/api/events/types), and
  events are routed by `data.object.object`; sub-resource events (a dispute, a refund, a discount, a tax
  ID, a card) re-fetch the parent they change (`subresources`). `customer.subscription.deleted`
  means the subscription *ended*: it stays retrievable with `status: canceled`, so it is an update, not a delete.
- Listed objects render in the request's `Stripe-Version` (else the account default), but event
  payloads in the version the event was created with (API reference, List all events). The source
  pins `Stripe-Version` on every request and re-fetches an object whose event was rendered in another
  version, so one record never changes shape between paths.

Stripe objects carry no "updated" field, so versions come from the server clock: an event's
`created`, or for a listed object the response's `Date` minus 1 ms. The minus 1 ms makes an event
stamped in the same second as the listing win over it: that event is at least as new as what we read.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from apisync.apis.stripe.events import (
    EVENTS_PATH,
    MAX_SEEN,
    EventPage,
    EventWindow,
    SeenEvents,
    checked_events,
    walk_oldest_first,
)
from apisync.apis.stripe.lists import ListPage, ListPosition, walk_newest_first
from apisync.apis.stripe.subresources import event_types_of, parent_of
from apisync.events import Observation, iso_to_ms, ms_to_iso
from apisync.http import ApiClient, FatalError
from apisync.sources.base import Batch, ObservationFactory, require, server_time_ms

log = logging.getLogger("apisync.apis.stripe")

DEFAULT_API_VERSION = "2024-06-20"
PAGE_SIZE = 100
SETTLE_S = 60  # how far back every incremental run re-reads events that may have surfaced late
RETENTION_S = 30 * 86400  # Stripe lists events of the last 30 days only


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
# Sub-resource events change the object too (`subresources`): each collection also reads those of its children.
COLLECTIONS = {name: dataclasses.replace(spec, event_types=spec.event_types + event_types_of(name))
               for name, spec in COLLECTIONS.items()}
DELETE_EVENTS = frozenset(spec.delete_event for spec in COLLECTIONS.values() if spec.delete_event)
COLLECTION_OF_OBJECT = {spec.object: name for name, spec in COLLECTIONS.items()}


class StripeSource:
    """The Stripe source: list endpoints for backfill and reconcile, /v1/events for incremental."""

    api = "stripe"
    collections = tuple(COLLECTIONS)

    def __init__(self, factory: ObservationFactory | None = None, page_size: int = PAGE_SIZE,
                 api_version: str = DEFAULT_API_VERSION, settle_s: int = SETTLE_S, max_seen: int = MAX_SEEN) -> None:
        self.factory = factory or ObservationFactory(self.api)
        self.page_size, self.api_version = page_size, api_version
        self.settle_s, self.max_seen = settle_s, max_seen
        # Sent on every request: listings then render in the pinned version, whatever the account default.
        self.headers = {"Stripe-Version": api_version}
        # Webhook payloads render in the endpoint's version: another one is re-fetched by the normalizer.
        self.webhook_options = {"api_version": api_version}

    def incremental_start(self, client: ApiClient, collection: str) -> dict[str, Any]:
        result = client.get_json(EVENTS_PATH, {"limit": 1})
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
            if window.relist is not None:
                yield from self._relist(client, collection, window)
                window = EventWindow(window.at)  # the event feed takes over where the re-list began
            first, now = self._newest_events(client, collection, window.at - self.settle_s)
            if window.at - self.settle_s >= now - RETENTION_S:
                yield from self._window(client, collection, window, first, now)
                return
            # The feed lost events: re-list the collection from now on, then read events from now − settle.
            window = EventWindow(now, relist={"gap_from": window.at, "position": None})

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
    def _newest_events(self, client, collection: str, low: int) -> tuple[ListPage, int]:
        """The newest page of events since `low`, and the server second it was read at."""
        params = {"types[]": list(COLLECTIONS[collection].event_types), "created[gte]": low, "limit": self.page_size}
        result = client.get_json(EVENTS_PATH, params)
        page = ListPage(checked_events(result.data), result.response, bool(result.data.get("has_more")))
        return page, server_time_ms(result.response, self.api) // 1000

    def _window(self, client, collection: str, window: EventWindow, first: ListPage,
                now: int) -> Iterator[Batch]:
        """Events since at − settle (or above `after`) up to `now`, oldest first, one batch per page, each
        with its cursor."""
        high, types = now, {"types[]": list(COLLECTIONS[collection].event_types)}
        seen = SeenEvents.from_cursor(window.seen, window.at, self.max_seen)
        if window.after:
            pages = walk_oldest_first(client, types, int(window.after["created"]), high, self.page_size,
                                      after=window.after)
        elif first.has_more:
            pages = walk_oldest_first(client, types, window.at - self.settle_s, high, self.page_size)
        else:  # the whole window fits in the page already read
            pages = iter([EventPage(first.objects[::-1], last=True)])
        at, after = window.at, window.after
        for page in pages:
            fresh = [event for event in page.events if event["id"] not in seen]
            for event in fresh:
                seen.add(event["id"], int(event["created"]))
            if page.events:
                newest = page.events[-1]
                # Every second before the newest one on the page is passed (all up to `high` at the end) ...
                at = max(at, int(newest["created"]) - 1)
                if int(newest["created"]) <= high - self.settle_s:  # ... and everything listed below it
                    after = {"created": int(newest["created"]), "id": newest["id"]}
            if page.last:
                at, after = max(at, high), None
            if fresh or page.last:
                cursor = EventWindow(at, seen.to_cursor(at - self.settle_s), after=after).to_cursor()
                yield Batch(self._observations(client, collection, fresh), cursor, done=page.last)

    def _relist(self, client, collection: str, window: EventWindow) -> Iterator[Batch]:
        """The deletes Stripe still lists, then the whole collection, one checkpointed batch per page (a
        resumed re-list goes on from its position); the last cursor hands over to the feed at `window.at`."""
        spec, relist = COLLECTIONS[collection], dict(window.relist or {})
        note = self._gap_note(collection, relist, resumed=bool(relist.get("position") or relist.get("deletes")))
        if not relist.get("deletes_done"):
            for observations, state in self._retained_deletes(client, collection, window.at, relist):
                yield Batch(observations, EventWindow(window.at, {}, state).to_cursor(), note=note)
                note = ""
            relist = state
        position = ListPosition.from_cursor(relist.get("position"))
        for page in walk_newest_first(client, spec.path, dict(spec.list_params), position, self.page_size):
            version = server_time_ms(page.response, self.api) - 1
            observations = [self._listed(collection, obj, version, "poll") for obj in page.objects]
            following = {**relist, "position": position.to_cursor()} if page.has_more else None
            yield Batch(observations, EventWindow(window.at, {}, following).to_cursor(), note=note)
            note = ""

    def _retained_deletes(self, client, collection: str, began: int,
                          relist: dict[str, Any]) -> Iterator[tuple[list[Observation], dict[str, Any]]]:
        """The delete events of the last 30 days before the re-list began, oldest first (a listing cannot
        show what is gone), each page with the re-list state that follows it."""
        delete_event = COLLECTIONS[collection].delete_event
        if delete_event is None:
            yield [], {**relist, "deletes_done": True}
            return
        # The newest delete replayed; one surfacing late below it is re-read by the feed from began − settle.
        after = relist.get("deletes")
        low = int(after["created"]) if after else began - RETENTION_S + self.settle_s
        for page in walk_oldest_first(client, {"types[]": [delete_event]}, low, began, self.page_size, after=after):
            if page.events:
                after = {"created": int(page.events[-1]["created"]), "id": page.events[-1]["id"]}
            yield (self._observations(client, collection, page.events),
                   {**relist, "deletes": after, "deletes_done": page.last})

    def _gap_note(self, collection: str, relist: Mapping[str, Any], resumed: bool) -> str:
        """A cursor older than the retention has lost events; say so in one line."""
        gap_from = relist.get("gap_from")
        since = ms_to_iso(int(gap_from) * 1000) if gap_from is not None else "unknown"
        action = "the re-list of the collection resumes" if resumed else "the collection is re-listed"
        action += " (with the delete events Stripe still lists)"
        message = (f"stripe {collection}: the incremental cursor ({since}) is older than Stripe's 30-day event "
                   f"retention; {action} to recover missed changes, run stripe_reconcile to find deletes made "
                   f"in the gap")
        log.error(message)
        return message

    def _observations(self, client, collection: str, events: list[dict[str, Any]]) -> list[Observation]:
        """Events that change this collection's objects → observations. The object is re-fetched (once per
        page) when the payload is in another API version, or is a sub-resource that changed its parent."""
        spec, out, refetched = COLLECTIONS[collection], [], {}
        for event in events:
            obj = require(event.get("data") or {}, "object", self.api, "/v1/events")
            target = self._target(collection, obj)
            if target is None:
                continue  # e.g. a subscription's discount, read by the subscription collection
            object_id, stale = target
            created = int(require(event, "created", self.api, "/v1/events"))
            deleted = not stale and event.get("type") == spec.delete_event
            data: Mapping[str, Any] | None = None if stale else obj
            if stale or (not deleted and event.get("api_version") not in (None, self.api_version)):
                if object_id not in refetched:
                    fresh = self.fetch(client, collection, object_id)
                    refetched[object_id] = fresh.data if fresh else None
                data = refetched[object_id]
                if data is None:
                    continue  # gone since: its delete event follows
            out.append(self.factory.make(collection, object_id, created * 1000, data, source="poll", deleted=deleted,
                                         reason=f"Stripe {event['type']} event" if deleted else None))
        return out

    @staticmethod
    def _target(collection: str, obj: Any) -> tuple[str, bool] | None:
        """(id of this collection's object the event changes, whether the payload is not that object), or None."""
        if not isinstance(obj, Mapping):
            return None
        if obj.get("object") == COLLECTIONS[collection].object:
            return (str(obj["id"]), False) if obj.get("id") else None
        parent = parent_of(obj)
        if parent is None or parent[0] != collection:
            if parent is None:
                log.debug("stripe %s: a %s event names no synced parent", collection, obj.get("object"))
            return None
        return parent[1], True

    def _listed(self, collection: str, obj: Any, version: int, source: str) -> Observation:
        object_id = require(obj, "id", self.api, COLLECTIONS[collection].path)
        return self.factory.make(collection, object_id, version, obj, source=source)


def _epoch_s(date: str) -> int:
    return iso_to_ms(date if "T" in date else f"{date}T00:00:00+00:00") // 1000
