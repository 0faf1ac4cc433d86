"""Webhook signature headers as the providers compute them, for tests that deliver signed webhooks.

Written from the providers' documentation, apart from apisync's verifiers (`apisync.webhooks.signatures`,
`apisync.apis.<api>.webhook`), so that a test checks one against the other; importable from every tier
(tests/conftest.py puts this folder on the path).
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def sign_stripe(secret: str, body: bytes, timestamp: int) -> str:
    """A Stripe-Signature header value for body at timestamp (https://docs.stripe.com/webhooks)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def sign_github(secret: str, body: bytes) -> str:
    """An X-Hub-Signature-256 header value for body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign_standard(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """A Standard Webhooks webhook-signature header value (one v1 entry) for body; a `whsec_<base64>`
    secret signs with its decoded bytes."""
    key = base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") else secret.encode()
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()
