"""Stripe dataset: customers, subscriptions, invoices, charges and the /v1/events feed."""
from __future__ import annotations

import copy
from typing import Any

import orjson

from .ids import stripe_id
from .model import ApiModel, Mutation, WebhookMessage
from .store import Collection

API_VERSION = "2024-06-20"
PREFIX = {"customer": "cus", "subscription": "sub", "invoice": "in", "charge": "ch"}
EVENT_PREFIX = {"customer": "customer", "subscription": "customer.subscription", "invoice": "invoice",
                "charge": "charge"}


class StripeModel(ApiModel):
    """Objects keyed by id, indexed by (created, insertion seq) like Stripe's newest-first lists."""

    api = "stripe"
    collections = ("customer", "subscription", "invoice", "charge")
    # Stripe never deletes charges; subscriptions "delete" by cancelling; only draft invoices delete.
    mutable = {"create": collections, "update": collections, "delete": ("customer", "subscription", "invoice")}

    def __init__(self, clock, seed: int, retention_days=lambda: 30) -> None:
        super().__init__(clock, seed)
        self._seq: dict[str, int] = {}
        self.retention_days = retention_days
        key = self._created_key
        self.data = {name: Collection(name, {"created": key}) for name in self.collections}
        self.events = Collection("event", {"created": key})

    def _created_key(self, oid: str, data: dict[str, Any]) -> tuple:
        return (data["created"], self._seq.setdefault(oid, len(self._seq)), oid)

    # ---- seeding -------------------------------------------------------------------------
    def seed(self, count: int) -> None:
        """`count` objects per collection on one shared timeline; customers come first."""
        order = [c for c in self.collections for _ in range(count)]
        self.rng.shuffle(order)
        if count:
            order.remove("customer")
            order.insert(0, "customer")
        for when, collection in zip(self.seed_times(len(order)), order, strict=True):
            self._create(collection, when)
        self.outbox.clear()

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
        """Delete a named object (customers, draft invoices, subscriptions by cancelling)."""
        if collection not in self.mutable["delete"] or oid not in self.data[collection].entries:
            return None
        now = self.clock.now_s()
        self._remove(collection, oid, now)
        return Mutation(self.api, collection, oid, "delete", now * 1000)

    def _create(self, collection: str, when: int) -> str | None:
        customers = list(self.data["customer"].entries)
        if collection != "customer" and not customers:
            return None
        build = getattr(self, f"_new_{collection}")
        obj = build(stripe_id(self.rng, PREFIX[collection]), when, customers)
        suffix = "succeeded" if collection == "charge" else "created"
        self._store(collection, obj, when, f"{EVENT_PREFIX[collection]}.{suffix}")
        return obj["id"]

    def _update(self, collection: str, when: int) -> str | None:
        entries = self.data[collection].entries
        if not entries:
            return None
        oid = self.rng.choice(list(entries))
        obj = copy.deepcopy(entries[oid].data)
        event_type, previous = getattr(self, f"_change_{collection}")(obj, when)
        self._store(collection, obj, when, event_type, previous)
        return oid

    def _delete(self, collection: str, when: int) -> str | None:
        entries = self.data[collection].entries
        candidates = [oid for oid, e in entries.items()
                      if collection != "invoice" or e.data["status"] == "draft"]
        if not candidates:
            return None
        oid = self.rng.choice(candidates)
        self._remove(collection, oid, when)
        return oid

    def _remove(self, collection: str, oid: str, when: int) -> None:
        obj = copy.deepcopy(self.data[collection].entries[oid].data)
        if collection == "subscription":
            obj.update(status="canceled", canceled_at=when, ended_at=when)
            self.data[collection].put(oid, obj, when * 1000)
        self._event(f"{EVENT_PREFIX[collection]}.deleted", obj, when)
        self.data[collection].delete(oid, when * 1000)

    def _store(self, collection: str, obj: dict, when: int, event_type: str, previous=None) -> None:
        self.data[collection].put(obj["id"], obj, when * 1000)
        self._event(event_type, obj, when, previous)

    def _event(self, event_type: str, obj: dict, when: int, previous: dict | None = None) -> None:
        """Record a Stripe event and queue its webhook."""
        data: dict[str, Any] = {"object": copy.deepcopy(obj)}
        if previous:
            data["previous_attributes"] = previous
        event = {"id": stripe_id(self.rng, "evt"), "object": "event", "api_version": API_VERSION,
                 "created": when, "data": data, "livemode": False, "pending_webhooks": 1,
                 "request": {"id": stripe_id(self.rng, "req"), "idempotency_key": None}, "type": event_type}
        self.events.put(event["id"], event, when * 1000)
        self.outbox.append(WebhookMessage("stripe", orjson.dumps(event), event_type, event["id"]))

    def prune_events(self) -> None:
        """Drop events older than the retention window (Stripe keeps 30 days)."""
        horizon = self.clock.now_s() - int(self.retention_days() * 86400)
        keys = self.events.indexes["created"].keys
        while keys and keys[0][0] < horizon:
            oid = keys[0][-1]
            self.events.delete(oid, 0)
            self.events.deleted.pop(oid, None)
            self.events.graveyard.pop(oid, None)

    # ---- object builders -----------------------------------------------------------------
    def _new_customer(self, oid: str, when: int, _customers: list[str]) -> dict:
        first, last = self.person()
        return {"id": oid, "object": "customer", "address": None, "balance": 0, "created": when,
                "currency": "usd", "default_source": None, "delinquent": False,
                "description": self.phrase(), "email": f"{first}.{last}@example.com".lower().replace(" ", ""),
                "invoice_prefix": oid[4:12].upper(), "livemode": False, "metadata": {},
                "name": f"{first} {last}", "phone": None, "preferred_locales": [], "shipping": None,
                "tax_exempt": "none", "test_clock": None}

    def _new_subscription(self, oid: str, when: int, customers: list[str]) -> dict:
        price = {"id": stripe_id(self.rng, "price"), "object": "price", "currency": "usd",
                 "unit_amount": self.rng.choice((900, 1900, 4900, 9900)), "recurring": {"interval": "month"}}
        item = {"id": stripe_id(self.rng, "si"), "object": "subscription_item", "price": price,
                "quantity": self.rng.randint(1, 5), "created": when}
        return {"id": oid, "object": "subscription", "customer": self.rng.choice(customers),
                "created": when, "current_period_start": when, "current_period_end": when + 30 * 86400,
                "status": self.rng.choice(("active", "active", "trialing", "past_due")),
                "cancel_at_period_end": False, "canceled_at": None, "ended_at": None, "currency": "usd",
                "items": {"object": "list", "data": [item], "has_more": False,
                          "url": f"/v1/subscription_items?subscription={oid}"},
                "livemode": False, "metadata": {}}

    def _new_invoice(self, oid: str, when: int, customers: list[str]) -> dict:
        amount = self.rng.randint(1, 300) * 100
        status = self.rng.choice(("draft", "open", "open", "paid"))
        paid = amount if status == "paid" else 0
        return {"id": oid, "object": "invoice", "customer": self.rng.choice(customers), "created": when,
                "currency": "usd", "status": status, "amount_due": amount, "amount_paid": paid,
                "amount_remaining": amount - paid, "total": amount, "paid": status == "paid",
                "number": None if status == "draft" else f"{oid[3:11].upper()}-0001",
                "subscription": None, "livemode": False, "metadata": {}}

    def _new_charge(self, oid: str, when: int, customers: list[str]) -> dict:
        amount = self.rng.randint(5, 500) * 100
        return {"id": oid, "object": "charge", "amount": amount, "amount_captured": amount,
                "amount_refunded": 0, "currency": "usd", "customer": self.rng.choice(customers),
                "created": when, "description": self.phrase(), "invoice": None, "livemode": False,
                "metadata": {}, "paid": True, "refunded": False, "status": "succeeded"}

    # ---- object changes: return (event type, previous_attributes) ------------------------
    def _change_customer(self, obj: dict, when: int) -> tuple[str, dict]:
        previous = {"description": obj["description"]}
        obj["description"] = self.phrase()
        return "customer.updated", previous

    def _change_subscription(self, obj: dict, when: int) -> tuple[str, dict]:
        previous = {"status": obj["status"], "cancel_at_period_end": obj["cancel_at_period_end"]}
        obj["status"] = self.rng.choice(("active", "past_due", "unpaid", "trialing"))
        obj["cancel_at_period_end"] = self.rng.random() < 0.2
        return "customer.subscription.updated", previous

    def _change_invoice(self, obj: dict, when: int) -> tuple[str, dict]:
        previous = {"status": obj["status"], "amount_paid": obj["amount_paid"], "paid": obj["paid"]}
        if obj["status"] in ("draft", "open"):
            obj.update(status="paid", paid=True, amount_paid=obj["amount_due"], amount_remaining=0)
            obj["number"] = obj["number"] or f"{obj['id'][3:11].upper()}-0001"
            return "invoice.paid", previous
        obj["metadata"] = {"touched": str(when)}
        return "invoice.updated", {"metadata": {}}

    def _change_charge(self, obj: dict, when: int) -> tuple[str, dict]:
        if not obj["refunded"] and self.rng.random() < 0.5:
            previous = {"refunded": False, "amount_refunded": obj["amount_refunded"]}
            obj.update(refunded=True, amount_refunded=obj["amount"])
            return "charge.refunded", previous
        previous = {"description": obj["description"]}
        obj["description"] = self.phrase()
        return "charge.updated", previous

    # ---- truth ---------------------------------------------------------------------------
    def truth(self) -> dict[str, Any]:
        """Version = created of the object's last event, in ms."""
        objects = {name: {oid: {"version": e.version, "data": e.data} for oid, e in col.entries.items()}
                   for name, col in self.data.items()}
        deleted = {name: list(col.deleted) for name, col in self.data.items()}
        return {"objects": objects, "deleted": deleted}
