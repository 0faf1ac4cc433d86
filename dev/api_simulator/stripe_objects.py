"""Stripe objects: how each is built and how it may change, following Stripe's own lifecycles.

Event names and what they mean come from Stripe's "Types of events" (https://docs.stripe.com/api/events/types)
and the Events lists on https://docs.stripe.com/api/charges, /api/invoices and /api/subscriptions;
invoice transitions from https://docs.stripe.com/invoicing/integration/workflow-transitions.
Every field a change touches is also set by the builder, so all objects of a kind share one shape.
Changes return (event type, previous_attributes) and mutate the object in place.
"""
from __future__ import annotations

import copy

from .ids import stripe_id

PREFIX = {"customer": "cus", "subscription": "sub", "invoice": "in", "charge": "ch"}
EVENT_PREFIX = {"customer": "customer", "subscription": "customer.subscription", "invoice": "invoice",
                "charge": "charge"}
SUB_STATUSES = ("active", "past_due", "unpaid", "trialing")
DECLINE = {"failure_code": "card_declined", "failure_message": "Your card was declined."}


def created_event(collection: str, obj: dict) -> str:
    """The event a new object announces itself with."""
    if collection == "charge":
        # A charge is born succeeded (captured or only authorized), pending or failed.
        return {"failed": "charge.failed", "pending": "charge.pending"}.get(obj["status"], "charge.succeeded")
    return f"{EVENT_PREFIX[collection]}.created"


def updatable(collection: str, data: dict) -> bool:
    """A canceled subscription has ended for good: Stripe never changes or cancels it again."""
    return not (collection == "subscription" and data["status"] == "canceled")


def deletable(collection: str, data: dict) -> bool:
    """Only draft invoices can be deleted (Delete a draft invoice: https://docs.stripe.com/api/invoices/delete)."""
    if collection == "invoice":
        return data["status"] == "draft"
    return collection != "charge" and updatable(collection, data)


class StripeObjects:
    """Builders (`_new_<collection>`) and changes (`_change_<collection>`), mixed into StripeModel.

    Relies on ApiModel's `rng`, `person()` and `phrase()`.
    """

    # ---- builders ------------------------------------------------------------------------
    def _new_customer(self, oid: str, when: int, _customers: list[str]) -> dict:
        first, last = self.person()
        return {"id": oid, "object": "customer", "address": None, "balance": 0, "created": when,
                "currency": "usd", "default_source": None, "delinquent": False, "discount": None,
                "description": self.phrase(), "email": f"{first}.{last}@example.com".lower().replace(" ", ""),
                "invoice_prefix": oid[4:12].upper(), "livemode": False, "metadata": {},
                "name": f"{first} {last}", "phone": None, "preferred_locales": [], "shipping": None,
                "tax_exempt": "none", "test_clock": None}

    def _new_subscription(self, oid: str, when: int, customers: list[str]) -> dict:
        end = when + 30 * 86400
        price = {"id": stripe_id(self.rng, "price"), "object": "price", "currency": "usd",
                 "unit_amount": self.rng.choice((900, 1900, 4900, 9900)), "recurring": {"interval": "month"}}
        item = {"id": stripe_id(self.rng, "si"), "object": "subscription_item", "price": price,
                "quantity": self.rng.randint(1, 5), "created": when,
                "current_period_start": when, "current_period_end": end}
        return {"id": oid, "object": "subscription", "customer": self.rng.choice(customers),
                "created": when, "current_period_start": when, "current_period_end": end,
                "status": self.rng.choice(("active", "active", "trialing", "past_due")),
                "cancel_at_period_end": False, "canceled_at": None, "ended_at": None, "currency": "usd",
                "items": {"object": "list", "data": [item], "has_more": False,
                          "url": f"/v1/subscription_items?subscription={oid}"},
                "livemode": False, "metadata": {}, "pending_update": None}

    def _new_invoice(self, oid: str, when: int, customers: list[str]) -> dict:
        amount = self.rng.randint(1, 300) * 100
        # Most invoices start as drafts (Stripe finalizes subscription invoices about an hour later).
        status = self.rng.choice(("draft", "draft", "open", "paid"))
        paid = amount if status == "paid" else 0
        return {"id": oid, "object": "invoice", "customer": self.rng.choice(customers), "created": when,
                "currency": "usd", "status": status, "amount_due": amount, "amount_paid": paid,
                "amount_remaining": amount - paid, "total": amount, "paid": status == "paid",
                "attempt_count": int(status == "paid"), "attempted": status == "paid",
                "number": None if status == "draft" else _invoice_number(oid),
                "subscription": None, "livemode": False, "metadata": {}}

    def _new_charge(self, oid: str, when: int, customers: list[str]) -> dict:
        amount = self.rng.randint(5, 500) * 100
        roll = self.rng.random()
        kind = "succeeded" if roll < 0.7 else "uncaptured" if roll < 0.8 else "pending" if roll < 0.9 else "failed"
        charge = {"id": oid, "object": "charge", "amount": amount, "amount_captured": amount,
                  "amount_refunded": 0, "captured": True, "currency": "usd",
                  "customer": self.rng.choice(customers), "created": when, "description": self.phrase(),
                  "disputed": False, "failure_code": None, "failure_message": None, "invoice": None, "livemode": False,
                  "metadata": {}, "paid": True, "refunded": False, "status": "succeeded"}
        if kind == "uncaptured":  # authorized only (capture=false): paid, not yet captured
            charge.update(captured=False, amount_captured=0)
        elif kind == "pending":  # e.g. bank debits: not paid until they clear
            charge.update(status="pending", paid=False)
        elif kind == "failed":
            charge.update(status="failed", paid=False, captured=False, amount_captured=0, **DECLINE)
        return charge

    # ---- changes -------------------------------------------------------------------------
    def _change_customer(self, obj: dict, when: int) -> tuple[str, dict]:
        previous = {"description": obj["description"]}
        obj["description"] = self.phrase()
        return "customer.updated", previous

    def _change_subscription(self, obj: dict, when: int) -> tuple[str, dict]:
        if obj["status"] == "paused":
            obj["status"] = "active"
            return "customer.subscription.resumed", {"status": "paused"}
        roll = self.rng.random()
        if roll < 0.15:
            previous = {"status": obj["status"]}
            obj["status"] = "paused"
            return "customer.subscription.paused", previous
        if roll < 0.3:
            return self._apply_pending_update(obj, when)
        previous = {"status": obj["status"], "cancel_at_period_end": obj["cancel_at_period_end"]}
        obj["status"] = self.rng.choice(SUB_STATUSES)
        obj["cancel_at_period_end"] = self.rng.random() < 0.2
        return "customer.subscription.updated", previous

    def _apply_pending_update(self, obj: dict, when: int) -> tuple[str, dict]:
        # An update made with payment_behavior=pending_if_incomplete lands once its invoice is paid;
        # the event's previous_attributes hold the old items and the pending_update now cleared.
        item = obj["items"]["data"][0]
        quantity = item["quantity"] % 5 + 1
        previous = {"items": copy.deepcopy(obj["items"]),
                    "pending_update": {"expires_at": when + 23 * 3600,
                                       "subscription_items": [{"id": item["id"], "quantity": quantity}]}}
        item["quantity"] = quantity
        return "customer.subscription.pending_update_applied", previous

    def _change_invoice(self, obj: dict, when: int) -> tuple[str, dict]:
        status = obj["status"]
        roll = self.rng.random()
        if status == "draft" and roll < 0.75:
            obj.update(status="open", number=_invoice_number(obj["id"]))
            return "invoice.finalized", {"status": "draft", "number": None}
        if status == "open" and roll < 0.3:
            previous = {"attempt_count": obj["attempt_count"], "attempted": obj["attempted"]}
            obj.update(attempt_count=obj["attempt_count"] + 1, attempted=True)  # stays open, retried later
            return "invoice.payment_failed", previous
        if status in ("open", "uncollectible") and roll < 0.6:
            return self._pay_invoice(obj)
        if status in ("open", "uncollectible") and roll < 0.8:
            obj["status"] = "void"
            return "invoice.voided", {"status": status}
        if status == "open":
            obj["status"] = "uncollectible"
            return "invoice.marked_uncollectible", {"status": "open"}
        previous = {"metadata": obj["metadata"]}
        obj["metadata"] = {"touched": str(when)}
        return "invoice.updated", previous

    @staticmethod
    def _pay_invoice(obj: dict) -> tuple[str, dict]:
        keys = ("status", "paid", "amount_paid", "amount_remaining", "attempt_count", "attempted")
        previous = {key: obj[key] for key in keys}
        obj.update(status="paid", paid=True, amount_paid=obj["amount_due"], amount_remaining=0,
                   attempt_count=obj["attempt_count"] + 1, attempted=True)
        return "invoice.paid", previous

    def _change_charge(self, obj: dict, when: int) -> tuple[str, dict]:
        roll = self.rng.random()
        if obj["status"] == "pending":
            return _settle_pending(obj, succeed=roll < 0.8)
        if obj["status"] == "succeeded" and not obj["refunded"]:
            if not obj["captured"]:
                return _capture(obj) if roll < 0.7 else _expire(obj)
            if roll < 0.5:
                previous = {"refunded": False, "amount_refunded": obj["amount_refunded"]}
                obj.update(refunded=True, amount_refunded=obj["amount"])
                return "charge.refunded", previous
        previous = {"description": obj["description"]}
        obj["description"] = self.phrase()
        return "charge.updated", previous


def _invoice_number(oid: str) -> str:
    return f"{oid[3:11].upper()}-0001"


def _settle_pending(obj: dict, succeed: bool) -> tuple[str, dict]:
    if succeed:
        obj.update(status="succeeded", paid=True)
        return "charge.succeeded", {"status": "pending", "paid": False}
    previous = {"status": "pending", "captured": obj["captured"], "amount_captured": obj["amount_captured"],
                "failure_code": None, "failure_message": None}
    obj.update(status="failed", paid=False, captured=False, amount_captured=0, **DECLINE)
    return "charge.failed", previous


def _capture(obj: dict) -> tuple[str, dict]:
    obj.update(captured=True, amount_captured=obj["amount"])
    return "charge.captured", {"captured": False, "amount_captured": 0}


def _expire(obj: dict) -> tuple[str, dict]:
    # "Uncaptured payments expire a set number of days after they are created (7 by default), after
    # which they are marked as refunded" (https://docs.stripe.com/api/charges/capture).
    obj.update(refunded=True, amount_refunded=obj["amount"])
    return "charge.expired", {"refunded": False, "amount_refunded": 0}
