"""Stripe API versions: which the simulator speaks and how an object renders in each.

Stripe picks a request's version from its `Stripe-Version` header, else the account's default
(https://docs.stripe.com/api-versions, "How versions are specified in requests"). Objects are
stored once, in the CANONICAL shape, and transformed on output; rendered bytes are cached per
version on the store entry so lists stay as cheap as before.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

ACACIA_ERA = "2024-06-20"
BASIL = "2025-03-31.basil"
SUPPORTED = (ACACIA_ERA, BASIL)
DEFAULT_VERSION = ACACIA_ERA
CANONICAL = ACACIA_ERA

# 2025-03-31.basil "Adds subscription item-level billing periods and removes subscription-level
# periods": current_period_start/current_period_end are no longer on the subscription, only on
# items.data[] (https://docs.stripe.com/changelog/basil/2025-03-31/deprecate-subscription-current-period-start-and-end).
# Items carry the period in both versions: Stripe adds fields to older versions too (additive
# changes are not breaking), only the removal is version-gated.
_REMOVED: dict[tuple[str, str], tuple[str, ...]] = {
    (BASIL, "subscription"): ("current_period_start", "current_period_end"),
}


def is_supported(version: str) -> bool:
    """Whether the simulator can render this version."""
    return version in SUPPORTED


def differs(collection: str, version: str) -> bool:
    """Whether `collection` renders differently from the stored shape in `version`."""
    return (version, collection) in _REMOVED


def render(collection: str, data: dict[str, Any], version: str) -> dict[str, Any]:
    """`data` (canonical shape) as Stripe returns it in `version` (a shallow copy if it changes)."""
    removed = _REMOVED.get((version, collection))
    if not removed:
        return data
    return {key: value for key, value in data.items() if key not in removed}


def renderer(collection: str, version: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A one-argument render function, as Entry.view wants."""
    return lambda data: render(collection, data, version)
