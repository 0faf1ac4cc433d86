"""Stripe as apisync knows it: the spec. Listings and cursors live in `source` (`lists`: newest-first
listings; `events`: the event window; `subresources`: what changes a parent without its own event); the
signature scheme and the payload parser in `webhook`.

Errors (https://docs.stripe.com/rate-limits, https://docs.stripe.com/error-low-level): 429 on rate
limits with no documented Retry-After; `Stripe-Should-Retry: true|false` overrides the status-based
decision, as Stripe's own clients do. Error bodies are `{"error": {"type", "code", "message"}}`.
"""

from __future__ import annotations

from typing import Any

import httpx

from apisync.apis.stripe.connection import CONNECTION
from apisync.apis.stripe.source import StripeSource
from apisync.apis.stripe.webhook import StripeSignature, parse_stripe, version_mismatch_hint
from apisync.http.retry import ApiSignals
from apisync.registry import ApiSpec, WebhookSpec


def _should_retry(response: httpx.Response) -> bool | None:
    return {"true": True, "false": False}.get(response.headers.get("stripe-should-retry", ""))


def _message(body: object) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return ""
    return " ".join(str(error[k]) for k in ("code", "message") if error.get(k))


def build_source(settings: Any) -> StripeSource:
    """Extras: `page_size`, `api_version` (the Stripe-Version to pin), `settle_s` (event settle window)."""
    options = {name: settings.extra[name] for name in ("api_version", "settle_s") if settings.extra.get(name)}
    if settings.extra.get("page_size"):
        options["page_size"] = int(settings.extra["page_size"])
    return StripeSource(**options)


SPEC = ApiSpec(
    name="stripe",
    collections=("customer", "subscription", "invoice", "charge"),
    build_source=build_source,
    default_rate_per_s=20.0,  # a share of live mode's 100 req/s, leaving room for the account's own apps
    signals=ApiSignals(should_retry=_should_retry, message=_message),
    webhook=WebhookSpec(StripeSignature, parse_stripe, kept_headers=("stripe-signature",),
                        refetch_hint=version_mismatch_hint),
    connection=CONNECTION,
    rules={
        "subscription": [{"kind": "transition", "field": "status", "event": "status_changed"}],
        "invoice": [{"kind": "threshold", "field": "amount_due", "threshold": 1000,
                     "event": "amount_due_crossed_1000"}],
    },
    # its objects' field names, the ledger states' dictionary: never change them once a ledger holds data
    ledger_fields=(
        "address", "amount", "amount_captured", "amount_due", "amount_paid", "amount_refunded",
        "amount_remaining", "attempt_count", "attempted", "balance", "cancel_at_period_end", "canceled_at",
        "captured", "created", "currency", "current_period_end", "current_period_start", "customer", "data",
        "default_source", "delinquent", "description", "email", "ended_at", "failure_code", "failure_message",
        "has_more", "id", "interval", "invoice", "invoice_prefix", "items", "livemode", "metadata", "name",
        "number", "object", "paid", "pending_update", "phone", "preferred_locales", "price", "quantity",
        "recurring", "refunded", "shipping", "status", "subscription", "tax_exempt", "test_clock", "total",
        "unit_amount", "url"
    ),
)
