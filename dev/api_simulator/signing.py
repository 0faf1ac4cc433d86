"""Webhook signatures exactly as each provider computes them."""
from __future__ import annotations

import base64
import hashlib
import hmac
import re


def stripe_signature(body: bytes, secrets: list[str], timestamp: int) -> str:
    """Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>"> — one v1 per secret (rotation)."""
    signed = str(timestamp).encode() + b"." + body
    parts = [f"t={timestamp}"]
    parts += [f"v1={hmac.new(s.encode(), signed, hashlib.sha256).hexdigest()}" for s in secrets]
    return ",".join(parts)


def github_signature(body: bytes, secret: str) -> str:
    """X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def standard_webhooks_key(secret: str) -> bytes:
    """Standard Webhooks secrets are `whsec_<base64>`; the HMAC key is the decoded part."""
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError:
        return raw.encode()  # not base64: sign with the text itself rather than refuse to deliver


def standard_webhooks_signature(msg_id: str, timestamp: int, body: bytes, secrets: list[str]) -> str:
    """webhook-signature: space-separated `v1,<base64 HMAC-SHA256 of "<id>.<ts>.<body>">`."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join("v1," + base64.b64encode(hmac.new(standard_webhooks_key(s), signed, hashlib.sha256).digest())
                    .decode() for s in secrets)


# The characters the v3 validation guide says to decode in the request URI before signing.
_V3_DECODED = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'", "%28": "(",
               "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}


def hubspot_uri(uri: str) -> str:
    """The request URI as HubSpot signs it: the listed URL-encoded characters decoded, nothing else."""
    return re.sub(r"%[0-9A-Fa-f]{2}", lambda m: _V3_DECODED.get(m.group(0).upper(), m.group(0)), uri)


def hubspot_signature_v3(secret: str, method: str, uri: str, body: bytes, timestamp_ms: int) -> str:
    """X-HubSpot-Signature-v3: base64 HMAC-SHA256 (client secret) of method + URI + body + timestamp.

    HubSpot "Validating requests" (v3): concatenate requestMethod + requestUri + requestBody + the
    X-HubSpot-Request-Timestamp value as UTF-8, HMAC-SHA256 with the app's client secret, base64;
    receivers reject timestamps older than 5 minutes.
    """
    signed = method.encode() + hubspot_uri(uri).encode() + body + str(timestamp_ms).encode()
    return base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()


def hubspot_signature_v1(secret: str, body: bytes) -> str:
    """X-HubSpot-Signature (X-HubSpot-Signature-Version: v1, still sent for CRM webhooks): hex SHA-256 of
    client secret + body."""
    return hashlib.sha256(secret.encode() + body).hexdigest()
