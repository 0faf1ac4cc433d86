"""HubSpot CRM as apisync knows it: the spec. Search walks and archived listings live in `source`; the v3
signature, the batch split and the event parser in `webhook`.

Limits (https://developers.hubspot.com/docs/developer-tooling/platform/usage-guidelines; "Search the CRM",
Limitations): a private app gets 100 (190 on Professional/Enterprise) requests per rolling 10 seconds, with
`X-HubSpot-RateLimit-Max`, `-Remaining` and `-Interval-Milliseconds` on answers; the search endpoints allow
5 requests per second per account, the binding limit for a sync that reads through search. Over a limit:
429 `{"status": "error", "message", "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING" |
"SECONDLY"}` without Retry-After. Other errors: `{"status": "error", "message", "category", "correlationId"}`.
"""

from __future__ import annotations

from typing import Any

import httpx

from apisync.apis.hubspot.connection import CONNECTION
from apisync.apis.hubspot.source import HubSpotSource
from apisync.apis.hubspot.webhook import HubSpotSignatureV3, parse_hubspot, split_events
from apisync.formats import http_date_s
from apisync.http.ratelimit import QuotaSignal
from apisync.http.retry import ApiSignals
from apisync.registry import ApiSpec, WebhookSpec

INTERVAL_MS = 10_000  # the rolling window when a 429 or the headers do not say
POLICY_WAIT_S = {"SECONDLY": 1.0}


def _message(body: object) -> str:
    """`<policyName or category>: <message>` from HubSpot's error body."""
    if not isinstance(body, dict):
        return ""
    label = body.get("policyName") or body.get("category") or ""
    message = str(body.get("message") or "")
    return f"{label}: {message}" if label and message else str(label or message)


def _interval_s(headers: httpx.Headers) -> float:
    try:
        return int(headers.get("x-hubspot-ratelimit-interval-milliseconds", INTERVAL_MS)) / 1000
    except ValueError:
        return INTERVAL_MS / 1000


def _rate_limit_wait(response: httpx.Response, reason: str, now: float) -> float | None:
    """No Retry-After: a second for the search limit, the rolling window (10 s) for the app limit."""
    if ": SECONDLY:" in reason:
        return POLICY_WAIT_S["SECONDLY"]
    if ": TEN_SECONDLY_ROLLING:" in reason:
        return _interval_s(response.headers)
    return _interval_s(response.headers) if response.headers.get("x-hubspot-ratelimit-remaining") == "0" else 1.0


def quota(headers: httpx.Headers) -> QuotaSignal | None:
    """X-HubSpot-RateLimit-Remaining of -Max, the rolling window ending one interval after the answer."""
    try:
        remaining, limit = int(headers["x-hubspot-ratelimit-remaining"]), int(headers["x-hubspot-ratelimit-max"])
    except (KeyError, ValueError):
        return None
    date = http_date_s(headers.get("date"))
    return QuotaSignal(remaining=remaining, limit=limit,
                       reset_at=None if date is None else date + _interval_s(headers))


def build_source(settings: Any) -> HubSpotSource:
    """Extras: `page_size` (search pages, at most 200), `lookback_s` (re-read window covering the search lag)."""
    options: dict[str, Any] = {}
    if settings.extra.get("page_size"):
        options["page_size"] = int(settings.extra["page_size"])
    if settings.extra.get("lookback_s") not in (None, ""):
        options["lookback_ms"] = int(float(settings.extra["lookback_s"]) * 1000)
    return HubSpotSource(**options)


SPEC = ApiSpec(
    name="hubspot",
    collections=("contact", "company", "deal"),
    build_source=build_source,
    default_rate_per_s=4.0,  # under the search limit (5/s per account), itself under 100 per 10 s
    signals=ApiSignals(rate_limit_wait=_rate_limit_wait, message=_message, quota=quota),
    webhook=WebhookSpec(HubSpotSignatureV3, parse_hubspot, split=split_events),
    connection=CONNECTION,
    rules={"deal": [{"kind": "transition", "field": "properties.dealstage", "event": "dealstage_changed"}]},
    # its objects' field names, the ledger states' dictionary: never change them once a ledger holds data
    ledger_fields=(
        "amount", "archived", "city", "closedate", "createdAt", "createdate", "dealname", "dealstage",
        "description", "domain", "email", "firstname", "hs_lastmodifieddate", "hs_object_id", "id", "industry",
        "lastmodifieddate", "lastname", "lifecyclestage", "name", "phone", "pipeline", "properties",
        "updatedAt"
    ),
)
