"""Webhook signatures, verified over the raw body bytes: what every scheme shares, and Standard Webhooks.

Each scheme is one small class with `verify(body, headers, now, request)` (`request`: the method and URL
the delivery was posted to, for schemes that sign them); it raises `MalformedSignature`
(answer 400) or `InvalidSignature` (answer 401) and never puts a secret in the message.
Several secrets may be active at once (rotation): any one matching is enough. A provider's own scheme
lives in its API's package (`apisync.apis.<api>.webhook`), built from the helpers here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from apisync.errors import FatalError

DEFAULT_TOLERANCE_S = 300


@dataclass(frozen=True, slots=True)
class RequestLine:
    """The method and full URL a delivery was posted to, for schemes that sign them (HubSpot v3 does)."""

    method: str = "POST"
    url: str = ""


NO_REQUEST = RequestLine()


class SignatureError(FatalError):
    """A delivery that must not be accepted; `status` is the HTTP answer."""

    status = 401


class MalformedSignature(SignatureError):
    """A signature header is missing or cannot be parsed."""

    status = 400


class InvalidSignature(SignatureError):
    """No signature matches, or the timestamp is outside the tolerance."""

    status = 401


def required_header(headers: Mapping[str, str], name: str) -> str:
    """Return a required header (case-insensitive lookup) or raise MalformedSignature."""
    lowered = {k.lower(): v for k, v in headers.items()}
    value = lowered.get(name.lower())
    if not value:
        raise MalformedSignature(f"missing header {name}")
    return value


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 digest of message."""
    return hmac.new(key, message, hashlib.sha256).digest()


def any_match(expected: Sequence[bytes], given: Sequence[bytes]) -> bool:
    """Constant-time comparison of every expected digest against every given one."""
    found = False
    for digest in expected:
        for candidate in given:
            # no short-circuit: the timing must not reveal which secret matched
            found |= hmac.compare_digest(digest, candidate)
    return found


def int_timestamp(raw: str, header: str) -> int:
    """An integer timestamp header value, else MalformedSignature naming the header."""
    try:
        return int(raw)
    except ValueError:
        raise MalformedSignature(f"header {header} has a non-integer timestamp") from None


def unhex(value: str, header: str) -> bytes:
    """A hex signature's bytes, else MalformedSignature naming the header."""
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise MalformedSignature(f"header {header} carries a signature that is not hex") from None


@dataclass(frozen=True, slots=True)
class StandardWebhooksSignature:
    """Standard Webhooks: webhook-id/-timestamp/-signature, `v1,<b64>` over "<id>.<ts>.<body>"."""

    secrets: tuple[str, ...] = field(repr=False)
    tolerance_s: int = DEFAULT_TOLERANCE_S

    def verify(self, body: bytes, headers: Mapping[str, str], now: float, request: RequestLine = NO_REQUEST) -> None:
        """Raise SignatureError unless one v1 signature matches and the timestamp is within ±tolerance."""
        msg_id = required_header(headers, "webhook-id")
        raw_ts = required_header(headers, "webhook-timestamp")
        given = _sw_signatures(required_header(headers, "webhook-signature"))
        # the spec rejects timestamps too far in the future as well as too old
        if abs(now - int_timestamp(raw_ts, "webhook-timestamp")) > self.tolerance_s:
            raise InvalidSignature("webhook-timestamp outside the tolerance (replayed or delayed)")
        signed = f"{msg_id}.{raw_ts}.".encode() + body
        expected = [hmac_sha256(_sw_key(s), signed) for s in self.secrets]
        if not any_match(expected, given):
            raise InvalidSignature("webhook-signature does not match any active secret")


def _sw_signatures(value: str) -> list[bytes]:
    """Decode the space-separated `v1,<base64>` entries; other versions are ignored."""
    found = []
    for entry in value.split():
        version, _, b64 = entry.partition(",")
        if version != "v1":
            continue
        try:
            found.append(base64.b64decode(b64, validate=True))
        except (binascii.Error, ValueError):
            raise MalformedSignature("webhook-signature carries a v1 entry that is not base64") from None
    if not found:
        raise MalformedSignature("webhook-signature has no v1 entry")
    return found


def _sw_key(secret: str) -> bytes:
    """`whsec_<base64>` → key bytes; a secret without the prefix is used as its own bytes."""
    if not secret.startswith("whsec_"):
        return secret.encode()
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a configured Standard Webhooks secret is not valid whsec_<base64>") from None

