"""Stripe webhooks: the `Stripe-Signature` scheme, and an event → an observation of its object.

- Signature (https://docs.stripe.com/webhooks#verify-manually): `Stripe-Signature: t=<unix>,v1=<hex>`,
  HMAC-SHA256 over "<t>.<body>"; one v1 per active secret during a rotation.
- The event object: the record is `data.object`, version = `created` × 1000 (Stripe objects
  carry no updated stamp); only the types that really delete (`customer.deleted`, `invoice.deleted`)
  are deletes: `customer.subscription.deleted` means the subscription ended, and it stays a record
  with `status: canceled`. A thin event (no `data.object`, only `related_object`), or one rendered in
  another API version than the pinned one, is flagged `thin` so the normalizer re-fetches the object.
  A sub-resource event (`charge.dispute.*`, `customer.discount.*`, ...: `data.object` is the dispute,
  discount, ...) is a thin observation of the parent it changes; one that belongs to no synced object is
  `NotSynced` (consumed, not dead-lettered).
- An event destination's thin event (`object: "v2.core.event"`, https://docs.stripe.com/event-destinations;
  v1 resources' types carry a `v1.` prefix, e.g. `v1.customer.updated`) has `created` as an ISO 8601
  string and names its object in `related_object` {id, type, url}: a thin observation at `created` in ms.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from apisync.apis.stripe.source import COLLECTION_OF_OBJECT, DELETE_EVENTS
from apisync.apis.stripe.subresources import is_subresource, parent_of
from apisync.events import NotSynced, Observation, ObservationError, iso_to_ms
from apisync.webhooks.payloads import json_object
from apisync.webhooks.signatures import (
    DEFAULT_TOLERANCE_S,
    NO_REQUEST,
    InvalidSignature,
    MalformedSignature,
    RequestLine,
    any_match,
    hmac_sha256,
    int_timestamp,
    required_header,
    unhex,
)


@dataclass(frozen=True, slots=True)
class StripeSignature:
    """`Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>]`, HMAC-SHA256 over "<t>.<body>"."""

    secrets: tuple[str, ...] = field(repr=False)
    tolerance_s: int = DEFAULT_TOLERANCE_S
    header = "Stripe-Signature"

    def verify(self, body: bytes, headers: Mapping[str, str], now: float, request: RequestLine = NO_REQUEST) -> None:
        """Raise SignatureError unless one v1 signature matches and t is recent enough."""
        timestamp, signatures = self._parse(required_header(headers, self.header))
        # Stripe's own libraries reject only timestamps older than the tolerance.
        if timestamp < now - self.tolerance_s:
            raise InvalidSignature("Stripe-Signature timestamp outside the tolerance (replayed or delayed)")
        signed = f"{timestamp}.".encode() + body
        expected = [hmac_sha256(s.encode(), signed) for s in self.secrets]
        if not any_match(expected, signatures):
            raise InvalidSignature("Stripe-Signature does not match any active secret")

    def _parse(self, value: str) -> tuple[int, list[bytes]]:
        timestamp, signatures = None, []
        for item in value.split(","):
            name, _, val = item.strip().partition("=")
            if name == "t":
                timestamp = int_timestamp(val, self.header)
            elif name == "v1":
                signatures.append(unhex(val, self.header))
        if timestamp is None or not signatures:
            raise MalformedSignature("Stripe-Signature needs t= and at least one v1=")
        return timestamp, signatures



STRIPE_THIN_EVENT = "v2.core.event"  # the `object` of an event destination's thin event


def parse_stripe(body: bytes, headers: Mapping[str, str], synced_at: str,
                 api_version: str | None = None) -> Observation:
    """A Stripe event → an observation of its object (thin if rendered in another than `api_version`)."""
    event = json_object(body)
    if event.get("object") == STRIPE_THIN_EVENT:
        return _stripe_thin_event(event, synced_at)
    kind, created = event.get("type"), event.get("created")
    if not isinstance(kind, str) or not isinstance(created, int):
        raise ObservationError("Stripe event lacks type or integer created")
    obj = (event.get("data") or {}).get("object")
    if isinstance(obj, dict) and is_subresource(obj.get("object")):
        return _stripe_parent(kind, created, obj, synced_at)
    thin = not isinstance(obj, dict)
    if thin:
        # thin events name the object in related_object and carry no snapshot
        obj = event.get("related_object") or {}
    object_name = obj.get("object") or obj.get("type")
    collection = COLLECTION_OF_OBJECT.get(object_name)
    if collection is None or not obj.get("id"):
        raise ObservationError(f"Stripe event {kind!r} names no known object")
    deleted = kind in DELETE_EVENTS
    # The payload renders in the event's API version; another shape than the pinned one is re-fetched.
    thin = thin or (api_version is not None and event.get("api_version") not in (None, api_version))
    data = None if thin else obj
    return Observation("stripe", collection, str(obj["id"]), created * 1000, "webhook", synced_at,
                       data, deleted, thin and not deleted, reason=f"Stripe {kind} event" if deleted else None)


def version_mismatch_hint(body: bytes, options: Mapping[str, Any]) -> str | None:
    """For an event rendered in another API version than the pinned one (`api_version` of the parser's
    options): how to spare its re-fetch; None for any other."""
    pinned = options.get("api_version")
    if pinned is None:
        return None
    with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
        event = orjson.loads(body)
        version = event.get("api_version")
        if version not in (None, pinned) and isinstance((event.get("data") or {}).get("object"), dict):
            return (f"webhook events arrive in API version {version} but apisync pins {pinned}, so every such "
                    f"event's object is re-fetched (one request each); set the webhook endpoint's API version "
                    f"to {pinned}, or the connection extra `api_version` to {version} if apisync should read "
                    "that version")
    return None


def _stripe_parent(kind: str, created: int, sub: dict[str, Any], synced_at: str) -> Observation:
    """A sub-resource event (a dispute, refund, discount, tax ID, card) → a thin observation of the parent it
    changes, which gets no event of its own (`subresources`)."""
    parent = parent_of(sub)
    if parent is None:
        raise NotSynced(f"Stripe {kind} event: its {sub.get('object')} belongs to no synced object")
    collection, parent_id = parent
    return Observation("stripe", collection, parent_id, created * 1000, "webhook", synced_at, None, thin=True)


def _stripe_thin_event(event: dict[str, Any], synced_at: str) -> Observation:
    """A `v2.core.event` → a thin observation of `related_object` (a delete for a deleting type)."""
    kind, created, related = event.get("type"), event.get("created"), event.get("related_object")
    if not isinstance(kind, str) or not isinstance(created, str):
        raise ObservationError("Stripe thin event lacks type or ISO 8601 created")
    if not isinstance(related, dict) or not related.get("id"):
        raise ObservationError(f"Stripe thin event {kind!r} has no related_object")
    related_type = str(related.get("type") or "").removeprefix("v1.")
    if is_subresource(related_type):
        # A reference to the sub-resource names no parent; its snapshot event in /v1/events does, and the
        # incremental event window re-reads the parent from it.
        raise NotSynced(f"Stripe thin event {kind!r}: a {related_type} reference names no parent to re-fetch")
    collection = COLLECTION_OF_OBJECT.get(related_type)
    if collection is None:
        raise ObservationError(f"Stripe thin event {kind!r} names no known object")
    deleted = kind.removeprefix("v1.") in DELETE_EVENTS
    return Observation("stripe", collection, str(related["id"]), iso_to_ms(created), "webhook", synced_at,
                       None, deleted, not deleted, reason=f"Stripe {kind} event" if deleted else None)
