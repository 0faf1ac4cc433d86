"""Stripe dataset: customers, subscriptions, invoices, charges and the /v1/events feed."""
from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from .config import default_runtime
from .ids import stripe_id
from .model import ApiModel, Mutation
from .store import Collection
from .stripe_events import EventFeed
from .stripe_objects import EVENT_PREFIX, PREFIX, StripeObjects, created_event, deletable, updatable
from .stripe_subresources import StripeSubresources, SubresourceChange
from .stripe_versions import CANONICAL, render


class StripeModel(StripeObjects, StripeSubresources, ApiModel):
    """Objects keyed by id, indexed by (created, insertion seq) like Stripe's newest-first lists."""

    api = "stripe"
    collections = ("customer", "subscription", "invoice", "charge")
    seeds_per_collection = True
    # Stripe never deletes charges; subscriptions "delete" by cancelling; only draft invoices delete.
    mutable = {"create": collections, "update": collections, "delete": ("customer", "subscription", "invoice")}

    def __init__(self, clock, seed: int, settings: Callable[[], dict[str, Any]] = default_runtime) -> None:
        super().__init__(clock, seed)
        self._seq: dict[str, int] = {}
        self._seeding = False
        self._aged_before: int | None = None  # while seeding: events before this second have aged out
        self.settings = settings
        key = self._created_key
        self.data = {name: Collection(name, {"created": key}) for name in self.collections}
        self.feed = EventFeed(clock, self.rng, key, settings)

    @property
    def events(self) -> Collection:
        """The /v1/events collection (visible or not; see EventFeed.hidden)."""
        return self.feed.events

    def _created_key(self, oid: str, data: dict[str, Any]) -> tuple:
        return (data["created"], self._seq.setdefault(oid, len(self._seq)), oid)

    # ---- seeding -------------------------------------------------------------------------
    def seed(self, count: int, counts: Mapping[str, int] | None = None) -> None:
        """`count` objects per collection (`counts` sets some collections' own) on one shared timeline over
        45 days; customers come first. A bulk seed (`counts`) records no event the retention has already
        dropped: the feed would prune it unread, and at 100,000 objects events are most of the seeding."""
        sizes = {name: (counts or {}).get(name, count) for name in self.collections}
        order = self.seed_order(sizes, first="customer")
        self._seed(order, self.seed_times(len(order)), self._retention_horizon() if counts else None)

    def seed_aged(self, counts: Mapping[str, int], start_s: int, end_s: int) -> int:
        """Add `counts` objects per collection created in [start_s, end_s], a span the event retention has
        already passed: like real history whose events aged out, they leave none (and no webhook).
        Returns how many were created (children need a customer)."""
        if end_s >= self._retention_horizon():
            raise ValueError("aged history must end before the event retention's horizon "
                             f"({self._retention_horizon()}); later history would need its events")
        order = self.seed_order({name: counts.get(name, 0) for name in self.collections}, first="customer")
        before = sum(len(self.data[name]) for name in self.collections)
        self._seed(order, self.times_between(len(order), start_s, end_s), aged_before=end_s + 1)
        return sum(len(self.data[name]) for name in self.collections) - before

    def _seed(self, order: list[str], times: list[int], aged_before: int | None) -> None:
        """Create history at `times` (visible at once, no webhooks; no event before `aged_before`)."""
        self._seeding, self._aged_before = True, aged_before
        try:
            for when, collection in zip(times, order, strict=True):
                self._create(collection, when)
        finally:
            self._seeding, self._aged_before = False, None
        self.outbox.clear()

    def _retention_horizon(self) -> int:
        """The oldest `created` second the event feed still keeps (EventFeed.prune drops older ones)."""
        return self.clock.now_s() - int(self.settings()["events_retention_days"] * 86400)

    # ---- mutations -----------------------------------------------------------------------
    def mutate(self, kind: str, collection: str) -> Mutation | None:
        """Create, update or delete one object now, emitting its event."""
        now = self.clock.now_s()
        if kind == "create":
            oid = self._create(collection, now)
        elif kind == "update":
            oid = self._update(collection, now)
        else:
            oid = self._delete(collection, now)
        if oid is None:
            return None
        return Mutation(self.api, collection, oid, kind, now * 1000)

    def delete_now(self, collection: str, oid: str) -> Mutation | None:
        """Delete a named object (customers, draft invoices; subscriptions by cancelling)."""
        entry = self.data[collection].entries.get(oid) if collection in self.data else None
        if entry is None or not deletable(collection, entry.data):
            return None
        now = self.clock.now_s()
        self._remove(collection, oid, now)
        return Mutation(self.api, collection, oid, "delete", now * 1000)

    def _create(self, collection: str, when: int) -> str | None:
        customers = self.data["customer"].entries
        if collection != "customer" and not customers:
            return None
        # Only the objects that belong to a customer draw one: listing the ids for each new customer
        # would make seeding quadratic in the number of customers.
        owners = list(customers) if collection != "customer" else []
        build = getattr(self, f"_new_{collection}")
        obj = build(stripe_id(self.rng, PREFIX[collection]), when, owners)
        self._store(collection, obj, when, created_event(collection, obj))
        return obj["id"]

    def _update(self, collection: str, when: int) -> str | None:
        entries = self.data[collection].entries
        candidates = [oid for oid, e in entries.items() if updatable(collection, e.data)]
        if not candidates:
            return None
        oid = self.rng.choice(candidates)
        obj = copy.deepcopy(entries[oid].data)
        change = self._change_subresource(collection, obj, when)
        if change is not None:
            self._store_subresource(collection, obj, when, change)
            return oid
        event_type, previous = getattr(self, f"_change_{collection}")(obj, when)
        self._store(collection, obj, when, event_type, previous)
        return oid

    def _store_subresource(self, collection: str, parent: dict, when: int, change: SubresourceChange) -> None:
        """The parent changes (if it does) with no event of its own; the event carries the sub-resource."""
        if change.parent_changed:
            self.data[collection].put(parent["id"], parent, when * 1000)
        self._event(change.event_type, change.kind, change.obj, when)

    def _delete(self, collection: str, when: int) -> str | None:
        entries = self.data[collection].entries
        candidates = [oid for oid, e in entries.items() if deletable(collection, e.data)]
        if not candidates:
            return None
        oid = self.rng.choice(candidates)
        self._remove(collection, oid, when)
        return oid

    def _remove(self, collection: str, oid: str, when: int) -> None:
        if collection == "subscription":
            self._cancel(oid, when)
            return
        obj = self.data[collection].entries[oid].data
        self._event(f"{EVENT_PREFIX[collection]}.deleted", collection, obj, when)
        self.data[collection].delete(oid, when * 1000)

    def _cancel(self, oid: str, when: int) -> None:
        # customer.subscription.deleted "Occurs whenever a customer's subscription ends"
        # (https://docs.stripe.com/api/subscriptions): the subscription is kept, retrievable and listed
        # under status=canceled|all, with canceled_at and ended_at
        # (https://docs.stripe.com/changelog/2016-07-06/filter-canceled-subscriptions-retrieve-individually).
        obj = copy.deepcopy(self.data["subscription"].entries[oid].data)
        obj.update(status="canceled", canceled_at=when, ended_at=when)
        self._store("subscription", obj, when, "customer.subscription.deleted")

    def _store(self, collection: str, obj: dict, when: int, event_type: str, previous=None) -> None:
        self.data[collection].put(obj["id"], obj, when * 1000)
        self._event(event_type, collection, obj, when, previous)

    def _event(self, event_type: str, collection: str, obj: dict, when: int, previous: dict | None = None) -> None:
        """Record a Stripe event and queue its webhook (webhooks are never delayed)."""
        if self._aged_before is not None and when < self._aged_before:
            return  # history older than the retention: its event is gone from the feed
        message = self.feed.record(event_type, collection, obj, when, previous, delayed=not self._seeding)
        self.outbox.append(message)

    def prune_events(self) -> None:
        """Drop events older than the retention window (Stripe keeps 30 days)."""
        self.feed.prune()

    # ---- truth ---------------------------------------------------------------------------
    def truth(self, api_version: str | None = None) -> dict[str, Any]:
        """Version = created of the object's last event, in ms; data rendered in `api_version`
        (default: the account's)."""
        version = api_version or self.settings()["stripe_api_version"]
        objects = {name: {oid: {"version": e.version, "data": self._rendered(name, e.data, version)}
                          for oid, e in col.entries.items()}
                   for name, col in self.data.items()}
        deleted = {name: list(col.deleted) for name, col in self.data.items()}
        return {"objects": objects, "deleted": deleted}

    @staticmethod
    def _rendered(collection: str, data: dict, version: str) -> dict:
        return data if version == CANONICAL else render(collection, data, version)
