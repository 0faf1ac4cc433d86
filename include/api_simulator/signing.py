"""Webhook signatures exactly as each provider computes them."""
from __future__ import annotations

import base64
import hashlib
import hmac


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
