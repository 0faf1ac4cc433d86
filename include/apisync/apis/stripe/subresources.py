"""Stripe sub-resource events: they change a parent object that gets no event of its own, so the parent is re-read.

A sub-resource event's `data.object` is the sub-resource, not the object it changes
(https://docs.stripe.com/api/events/types): `customer.discount.*` a discount, `customer.source.*` a card, bank
account or source, `customer.tax_id.*` a tax ID, `charge.dispute.*` a dispute, `charge.refund.updated` a refund.
Stripe documents no parent `*.updated` alongside them: `charge.updated` "Occurs whenever a charge description or
metadata is updated, or upon an asynchronous capture" (https://docs.stripe.com/api/charges), so a dispute
(`charge.disputed`) or a failed refund (`charge.amount_refunded`) changes the charge silently; a discount sets the
customer's (or subscription's) `discount`. So each sub-resource event names its parent's record key and the
parent is fetched, on the webhook path (a thin observation) and in the polled event window alike.

`tax_ids` and `sources` are not part of a customer rendered by default since 2020-08-27
(https://docs.stripe.com/changelog/2020-08-27/deprecates-auto-expansion-tax-id-customer and
.../deprecates-auto-expansion-customer-sources): re-reading the customer then usually finds it unchanged, which
the version fence answers with "unchanged" at the cost of one read.

A discount belongs to the most specific object it names: a subscription's discount changes the subscription,
not the customer, although both ids are on it. A sub-resource without a synced parent (a refund of no charge, a
customer-less tax ID of an account) is not synced.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Subresource:
    """Which event types carry one kind of sub-resource and where its parent's id is (most specific first)."""

    objects: tuple[str, ...]  # `data.object.object` values
    event_types: tuple[str, ...]
    parents: tuple[tuple[str, str], ...]  # (field of the sub-resource, parent collection)


SUBRESOURCES: tuple[Subresource, ...] = (
    Subresource(("discount",), tuple(f"customer.discount.{kind}" for kind in ("created", "updated", "deleted")),
                (("subscription", "subscription"), ("invoice", "invoice"), ("customer", "customer"))),
    Subresource(("card", "bank_account", "source"),
                tuple(f"customer.source.{kind}" for kind in ("created", "updated", "deleted", "expiring")),
                (("customer", "customer"),)),
    Subresource(("tax_id",), tuple(f"customer.tax_id.{kind}" for kind in ("created", "updated", "deleted")),
                (("customer", "customer"),)),
    Subresource(("dispute",), tuple(f"charge.dispute.{kind}" for kind in (
        "created", "updated", "closed", "funds_withdrawn", "funds_reinstated")), (("charge", "charge"),)),
    Subresource(("refund",), ("charge.refund.updated",), (("charge", "charge"),)),
)
_BY_OBJECT = {name: sub for sub in SUBRESOURCES for name in sub.objects}


def is_subresource(object_name: object) -> bool:
    """Whether `object_name` (a `data.object.object`) is a sub-resource apisync routes to its parent."""
    return object_name in _BY_OBJECT


def event_types_of(collection: str) -> tuple[str, ...]:
    """The sub-resource event types that can change an object of `collection`."""
    return tuple(kind for sub in SUBRESOURCES if any(parent == collection for _field, parent in sub.parents)
                 for kind in sub.event_types)


def parent_of(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """(collection, id) of the synced object a sub-resource changes, or None if it names none."""
    sub = _BY_OBJECT.get(obj.get("object"))
    if sub is None:
        return None
    for field, collection in sub.parents:
        ref = obj.get(field)
        ref = ref.get("id") if isinstance(ref, Mapping) else ref  # an expanded parent carries its id
        if isinstance(ref, str) and ref:
            return collection, ref
    return None
