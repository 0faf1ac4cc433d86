"""Stripe sub-resources that change their parent without a parent event: discounts, tax IDs, disputes, refunds.

Each event's `data.object` is the sub-resource (https://docs.stripe.com/api/events/types): `customer.discount.*`
a discount ("Occurs whenever a coupon is attached to a customer"), `customer.tax_id.*` a tax ID,
`charge.dispute.*` a dispute, `charge.refund.updated` a refund ("Occurs whenever a refund is updated on selected
payment methods", https://docs.stripe.com/api/refunds). The parent gets no `*.updated` of its own: `charge.updated`
"Occurs whenever a charge description or metadata is updated, or upon an asynchronous capture"
(https://docs.stripe.com/api/charges), so a dispute sets `charge.disputed` silently; a discount sets the customer's
`discount`. A failed refund no longer counts in the charge's `amount_refunded` (its `failure_balance_transaction`
reverses the refund's balance transaction, https://docs.stripe.com/api/refunds/object; the charge side is inferred).
Tax IDs are not part of a customer rendered by default since 2020-08-27
(https://docs.stripe.com/changelog/2020-08-27/deprecates-auto-expansion-tax-id-customer): the customer stays as is.

On by default: a share of customer and charge updates goes through a sub-resource.
"""
from __future__ import annotations

from dataclasses import dataclass

from .ids import stripe_id

REFUND_FAILURE = "expired_or_canceled_card"


@dataclass(frozen=True, slots=True)
class SubresourceChange:
    """The event a sub-resource change emits, the sub-resource it carries, and whether the parent changed."""

    event_type: str
    kind: str  # the sub-resource's `object`
    obj: dict
    parent_changed: bool


class StripeSubresources:
    """`_change_subresource(collection, parent, when)`, mixed into StripeModel (needs its `rng`)."""

    subresource_share: float | None = None  # set: overrides the runtime's stripe_subresource_share (walk tests)

    def _change_subresource(self, collection: str, parent: dict, when: int) -> SubresourceChange | None:
        """A sub-resource change of `parent` (mutated in place), or None to change the parent itself."""
        share = self.subresource_share
        if share is None:
            share = self.settings().get("stripe_subresource_share", 0.0)
        if collection not in ("customer", "charge") or self.rng.random() >= share:
            return None
        if collection == "customer":
            return self._change_discount(parent, when) if self.rng.random() < 0.6 else self._add_tax_id(parent, when)
        if parent["status"] == "succeeded" and parent["captured"] and parent["refunded"]:
            return self._fail_refund(parent, when)
        if parent["status"] == "succeeded" and parent["captured"] and not parent["disputed"]:
            return self._open_dispute(parent, when)
        return None

    def _change_discount(self, customer: dict, when: int) -> SubresourceChange:
        current = customer["discount"]
        if current is not None and self.rng.random() < 0.5:
            customer["discount"] = None
            return SubresourceChange("customer.discount.deleted", "discount", current, True)
        percent = self.rng.choice((10, 15, 20, 25, 50))
        coupon = {"id": f"{percent}OFF", "object": "coupon", "duration": "forever", "percent_off": float(percent),
                  "amount_off": None, "currency": None, "valid": True}
        discount = {"id": stripe_id(self.rng, "di"), "object": "discount", "checkout_session": None,
                    "coupon": coupon, "customer": customer["id"], "end": None, "invoice": None,
                    "invoice_item": None, "promotion_code": None, "start": when, "subscription": None}
        customer["discount"] = discount
        kind = "customer.discount.created" if current is None else "customer.discount.updated"
        return SubresourceChange(kind, "discount", discount, True)

    def _add_tax_id(self, customer: dict, when: int) -> SubresourceChange:
        tax_id = {"id": stripe_id(self.rng, "txi"), "object": "tax_id", "country": "DE", "created": when,
                  "customer": customer["id"], "livemode": False, "type": "eu_vat",
                  "value": f"DE{self.rng.randint(100000000, 999999999)}",
                  "verification": {"status": "pending", "verified_address": None, "verified_name": None}}
        return SubresourceChange("customer.tax_id.created", "tax_id", tax_id, False)

    def _open_dispute(self, charge: dict, when: int) -> SubresourceChange:
        dispute = {"id": stripe_id(self.rng, "dp"), "object": "dispute", "amount": charge["amount"],
                   "charge": charge["id"], "created": when, "currency": charge["currency"],
                   "is_charge_refundable": False, "livemode": False, "metadata": {},
                   "reason": "fraudulent", "status": "needs_response"}
        charge["disputed"] = True
        return SubresourceChange("charge.dispute.created", "dispute", dispute, True)

    def _fail_refund(self, charge: dict, when: int) -> SubresourceChange:
        refund = {"id": stripe_id(self.rng, "re"), "object": "refund", "amount": charge["amount_refunded"],
                  "charge": charge["id"], "created": when, "currency": charge["currency"],
                  "failure_reason": REFUND_FAILURE, "metadata": {}, "reason": None, "status": "failed"}
        charge.update(refunded=False, amount_refunded=0)
        return SubresourceChange("charge.refund.updated", "refund", refund, True)


def subresource_url(kind: str, obj: dict) -> str:
    """Where a sub-resource is retrieved (a thin event's `related_object.url`)."""
    if kind in ("tax_id", "discount"):
        return f"/v1/customers/{obj['customer']}/{'tax_ids/' + obj['id'] if kind == 'tax_id' else 'discount'}"
    return f"/v1/{kind}s/{obj['id']}"
