"""Salesforce as apisync knows it: the spec. SOQL walks and `latestDateCovered` live in `source`;
Outbound Messaging (SOAP) in `outbound_messaging`; the payload parser in `webhook`.

Limits (https://developer.salesforce.com/docs/atlas.en-us.salesforce_app_limits_cheatsheet.meta):
every response has `Sforce-Limit-Info: api-usage=used/allowed`; over the daily allowance → 403 with
errorCode REQUEST_LIMIT_EXCEEDED, a rolling 24 h window with no reset time given, so back off a good
while. Error bodies are `[{"message", "errorCode"}]`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import httpx

from apisync.apis.salesforce.connection import CONNECTION, outbound_options_from_connection
from apisync.apis.salesforce.source import SalesforceSource
from apisync.apis.salesforce.webhook import parse_salesforce
from apisync.http.ratelimit import QuotaSignal
from apisync.http.retry import ApiSignals
from apisync.registry import ApiSpec, WebhookSpec
from apisync.webhooks.signatures import StandardWebhooksSignature

LIMIT_WAIT_S = 300.0
_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")


def _is_rate_limited(response: httpx.Response, reason: str) -> bool:
    return response.status_code == 403 and "request_limit_exceeded" in reason.lower()


def _rate_limit_wait(response: httpx.Response, reason: str, now: float) -> float | None:
    return LIMIT_WAIT_S if "request_limit_exceeded" in reason.lower() else None


def _message(body: object) -> str:
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return " ".join(str(body[0].get(k, "")) for k in ("errorCode", "message")).strip()
    return str(body.get("message", "")) if isinstance(body, dict) else ""


def quota(headers: httpx.Headers) -> QuotaSignal | None:
    """`Sforce-Limit-Info: api-usage=used/allowed` (rolling 24 h, so no reset time)."""
    match = _USAGE.search(headers.get("sforce-limit-info", ""))
    if not match:
        return None
    used, allowed = int(match.group(1)), int(match.group(2))
    return QuotaSignal(remaining=allowed - used, limit=allowed, reset_at=None)


def _outbound_options(env: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """The Outbound Messaging endpoint's receiver options (see `outbound_endpoint`)."""
    from apisync.apis.salesforce.outbound_endpoint import options_from_env  # FastAPI loads where a receiver runs

    return options_from_env(env)


def _mount_outbound_messaging(app: Any, context: Any) -> None:
    """Mount the Outbound Messaging endpoint on the receiver's app (see `outbound_endpoint`)."""
    from apisync.apis.salesforce.outbound_endpoint import mount_outbound_messaging

    mount_outbound_messaging(app, context)


def build_source(settings: Any) -> SalesforceSource:
    """Extras: `lookback_s` (the keyset's minimum re-read window), `page_size`."""
    options: dict[str, Any] = {}
    if settings.extra.get("page_size"):
        options["page_size"] = int(settings.extra["page_size"])
    if settings.extra.get("lookback_s"):
        options["lookback_ms"] = int(float(settings.extra["lookback_s"]) * 1000)
    return SalesforceSource(**options)


SPEC = ApiSpec(
    name="salesforce",
    collections=("account", "contact", "opportunity"),
    build_source=build_source,
    default_rate_per_s=5.0,
    signals=ApiSignals(is_rate_limited=_is_rate_limited, rate_limit_wait=_rate_limit_wait, message=_message,
                       quota=quota),
    # Outbound Messages (SOAP) are received on their own route; JSON relays use Standard Webhooks.
    webhook=WebhookSpec(StandardWebhooksSignature, parse_salesforce, delivery_header="webhook-id",
                        options_from_env=_outbound_options, options_from_connection=outbound_options_from_connection,
                        extra_routes=_mount_outbound_messaging),
    connection=CONNECTION,
    rules={"opportunity": [{"kind": "transition", "field": "StageName", "event": "stage_changed"}]},
    # its objects' field names, the ledger states' dictionary: never change them once a ledger holds data
    ledger_fields=(
        "AccountId", "Amount", "AnnualRevenue", "BillingCity", "BillingCountry", "CloseDate", "CreatedById",
        "CreatedDate", "Email", "FirstName", "Id", "Industry", "IsClosed", "IsDeleted", "IsWon",
        "LastModifiedById", "LastModifiedDate", "LastName", "Name", "NumberOfEmployees", "OwnerId", "Phone",
        "Probability", "StageName", "SystemModstamp", "Title", "Type", "Website", "attributes", "type", "url"
    ),
)
