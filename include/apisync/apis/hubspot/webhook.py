"""HubSpot webhooks (Webhooks API v3): the v3 signature, the batch split, and the parser of one change.

- Signature ("Validating requests", v3, https://developers.hubspot.com/docs/apps/legacy-apps/authentication/
  validating-requests): `X-HubSpot-Signature-v3` = base64(HMAC-SHA256(client secret, method + URI + body +
  `X-HubSpot-Request-Timestamp`)), the URI with `%3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C %3B` decoded;
  reject timestamps (ms) more than 5 minutes away. Several secrets may be active during a rotation.
  The URI is the one HubSpot called: behind a proxy the receiver passes its public URL
  (`WebhookSettings.public_url`), not the rewritten one it was reached at.
- A delivery is a JSON array of up to 100 events; `split_events` turns it into one body per event, which
  the receiver stores as its own message (keyed by its record).
- An event names the object (`objectId`) and what happened (`subscriptionType` `<type>.creation |
  propertyChange | deletion | ...`) at `occurredAt` (ms), never the object: every event but a deletion is a
  thin observation the normalizer re-fetches through `HubSpotSource.fetch`; a deletion is a delete.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from apisync.apis.hubspot.source import OBJECTS
from apisync.events import Observation, ObservationError
from apisync.webhooks.signatures import (
    DEFAULT_TOLERANCE_S,
    NO_REQUEST,
    InvalidSignature,
    MalformedSignature,
    RequestLine,
)

SIGNATURE_HEADER, TIMESTAMP_HEADER = "X-HubSpot-Signature-v3", "X-HubSpot-Request-Timestamp"
# The only escapes HubSpot decodes before signing the URI (everything else stays encoded).
_DECODED = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'", "%28": "(",
            "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
DELETE_KINDS = frozenset({"deletion", "privacyDeletion"})


def signed_uri(url: str) -> str:
    """The request URI as HubSpot signs it."""
    return _ESCAPE.sub(lambda m: _DECODED.get(m.group(0).upper(), m.group(0)), url)


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


@dataclass(frozen=True, slots=True)
class HubSpotSignatureV3:
    """`X-HubSpot-Signature-v3` over method + URI + body + timestamp (ms), any active secret, ±tolerance."""

    secrets: tuple[str, ...] = field(repr=False)
    tolerance_s: int = DEFAULT_TOLERANCE_S

    def verify(self, body: bytes, headers: Mapping[str, str], now: float, request: RequestLine = NO_REQUEST) -> None:
        """Raise SignatureError unless the signature matches one secret and the timestamp is recent."""
        lowered = _lower(headers)
        raw_ts, given = lowered.get(TIMESTAMP_HEADER.lower()), lowered.get(SIGNATURE_HEADER.lower())
        if not raw_ts or not given:
            raise MalformedSignature(f"missing header {TIMESTAMP_HEADER if not raw_ts else SIGNATURE_HEADER}")
        try:
            stamp_ms = int(raw_ts)
            signature = base64.b64decode(given, validate=True)
        except (ValueError, binascii.Error):
            raise MalformedSignature(f"{TIMESTAMP_HEADER} is not an integer or {SIGNATURE_HEADER} "
                                     "is not base64") from None
        if abs(now * 1000 - stamp_ms) > self.tolerance_s * 1000:
            raise InvalidSignature(f"{TIMESTAMP_HEADER} outside the tolerance (replayed or delayed)")
        signed = request.method.upper().encode() + signed_uri(request.url).encode() + body + raw_ts.encode()
        found = False
        for secret in self.secrets:  # no short-circuit: the timing must not reveal which secret matched
            found |= hmac.compare_digest(hmac.new(secret.encode(), signed, hashlib.sha256).digest(), signature)
        if not found:
            raise InvalidSignature(f"{SIGNATURE_HEADER} does not match any active secret")


def split_events(body: bytes) -> list[bytes]:
    """A delivery (a JSON array of events) → one body per event; ValueError (answer 400) otherwise."""
    try:
        events = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError("HubSpot delivery is not JSON") from None
    if isinstance(events, dict):
        events = [events]
    if not isinstance(events, list) or not events or not all(isinstance(e, dict) for e in events):
        raise ValueError("HubSpot delivery is not a non-empty JSON array of events")
    return [orjson.dumps(event) for event in events]


def parse_hubspot(body: bytes, headers: Mapping[str, str], synced_at: str) -> Observation:
    """One event → a thin observation of its object (re-fetched), or a delete for a deletion."""
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ObservationError("HubSpot event is not JSON") from None
    if not isinstance(event, dict):
        raise ObservationError("HubSpot event is not a JSON object (split the delivery first)")
    kind, object_id, occurred = event.get("subscriptionType"), event.get("objectId"), event.get("occurredAt")
    if not isinstance(kind, str) or "." not in kind or object_id in (None, "") or not isinstance(occurred, int):
        raise ObservationError("HubSpot event lacks subscriptionType, objectId or integer occurredAt")
    collection, _, change = kind.partition(".")
    if collection not in OBJECTS:
        raise ObservationError(f"HubSpot event {kind!r} names no synced object type")
    deleted = change in DELETE_KINDS
    return Observation("hubspot", collection, str(object_id), occurred, "webhook", synced_at, None, deleted,
                       thin=not deleted, reason=f"HubSpot {kind} webhook" if deleted else None)
