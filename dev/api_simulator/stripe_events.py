"""The Stripe /v1/events feed: recording, late visibility, retention.

Three real behaviours live here:
- Each event is frozen in the API version the account had when it was created; its `data.object`
  never changes with a request's Stripe-Version ("Each event data is rendered according to Stripe
  API version at its creation time ... (not according to your current Stripe API version or
  Stripe-Version header)", https://docs.stripe.com/api/events/list).
- The list is eventually consistent: an event can appear seconds after a newer one. Sequin polls
  only up to now - 5 s for that reason (https://blog.sequin.io/finding-and-fixing-eventual-consistency-with-stripe-events),
  Estuary up to now - 1 min (estuary/connectors#2731). Here each new event waits a seeded random
  delay in [0, stripe_events_lag_s] before list or retrieve shows it; webhooks are not delayed.
- Events older than the retention window (30 days, https://docs.stripe.com/api/events) are
  dropped; their ids stay known so a cursor naming one can be told apart from a typo.
- An event destination sends snapshot events (the v1 event above) or thin events, as its
  `event_payload` says (https://docs.stripe.com/event-destinations). A thin event is unversioned:
  `object: "v2.core.event"`, `type` with a `v1.` prefix for v1 resources (changelog 2026-09-30.endive,
  "Makes thin events for API v1 resources generally available"), `created` an ISO 8601 string with
  milliseconds, and `related_object` {id, type, url} instead of `data.object`; it is signed with the
  same `Stripe-Signature` scheme. `/v1/events` keeps listing the snapshot events either way.
"""
from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

import orjson

from .clock import Clock
from .ids import stripe_id
from .model import WebhookMessage
from .store import Collection, KeyFn
from .stripe_subresources import subresource_url
from .stripe_versions import render
from .timefmt import iso_time

EVENT_PAYLOADS = ("snapshot", "thin")
RESOURCE_PATHS = {"customer": "/v1/customers", "subscription": "/v1/subscriptions", "invoice": "/v1/invoices",
                  "charge": "/v1/charges"}


class EventFeed:
    """Events by (created, seq), the ids not yet visible, and the ids aged out of retention."""

    def __init__(self, clock: Clock, rng: random.Random, key: KeyFn,
                 settings: Callable[[], dict[str, Any]]) -> None:
        self.clock = clock
        self.rng = rng
        self.settings = settings
        self.events = Collection("event", {"created": key})
        self._visible_at: dict[str, float] = {}  # only events still hidden, or recently so
        self.event_payload = "snapshot"  # what the event destination is sent: snapshot or thin events

    def record(self, event_type: str, collection: str, obj: dict, when: int,
               previous: dict | None = None, delayed: bool = True) -> WebhookMessage:
        """Store one event (rendered in the account's current version) and return its webhook."""
        version = self.settings()["stripe_api_version"]
        data: dict[str, Any] = {"object": copy.deepcopy(render(collection, obj, version))}
        if previous:
            data["previous_attributes"] = previous
        event = {"id": stripe_id(self.rng, "evt"), "object": "event", "api_version": version,
                 "created": when, "data": data, "livemode": False, "pending_webhooks": 1,
                 "request": {"id": stripe_id(self.rng, "req"), "idempotency_key": None}, "type": event_type}
        self.events.put(event["id"], event, when * 1000)
        if delayed:
            self._hide(event["id"])
        sent = thin_event(event, collection, obj) if self.event_payload == "thin" else event
        return WebhookMessage("stripe", orjson.dumps(sent), event_type, sent["id"])

    def _hide(self, oid: str) -> None:
        # Drawn even when the lag is 0 so the rng sequence does not depend on the setting's value
        # being zero or not (runs with the same seed and settings stay identical).
        lag = float(self.settings()["stripe_events_lag_s"] or 0.0)
        delay = self.rng.uniform(0.0, lag)
        if delay > 0:
            self._visible_at[oid] = self.clock.now() + delay

    def hidden(self) -> frozenset[str]:
        """Ids not visible yet on the server clock (forgets the ones whose time has come)."""
        if not self._visible_at:
            return frozenset()
        now = self.clock.now()
        for oid in [oid for oid, at in self._visible_at.items() if at <= now]:
            del self._visible_at[oid]
        return frozenset(self._visible_at)

    def aged_out(self, oid: str) -> bool:
        """Whether `oid` was an event that retention has since removed."""
        return oid in self.events.deleted

    def prune(self) -> None:
        """Drop events older than the retention window, remembering their ids."""
        horizon = self.clock.now_s() - int(self.settings()["events_retention_days"] * 86400)
        keys = self.events.indexes["created"].keys
        while keys and keys[0][0] < horizon:
            oid = keys[0][-1]
            self.events.delete(oid, 0)
            self.events.graveyard.pop(oid, None)  # keep only the id (in `deleted`), not the body
            self._visible_at.pop(oid, None)


def thin_event(event: dict[str, Any], collection: str, obj: dict) -> dict[str, Any]:
    """The thin event an event destination sends for a snapshot event: a reference, no object."""
    return {"id": f"evt_65{event['id'].removeprefix('evt_')}", "object": "v2.core.event",
            "type": f"v1.{event['type']}", "created": iso_time(event["created"]), "livemode": event["livemode"],
            "context": None, "reason": {"type": "request", "request": {**event["request"]}},
            "related_object": {"id": obj["id"], "type": obj["object"], "url": _url(collection, obj)}}


def _url(collection: str, obj: dict) -> str:
    """The related object's path: a synced collection's, or a sub-resource's (a dispute, a tax ID, ...)."""
    if collection in RESOURCE_PATHS:
        return f"{RESOURCE_PATHS[collection]}/{obj['id']}"
    return subresource_url(collection, obj)
