"""Parse the quota headers each API sends into QuotaSignal for the shared rate limiter."""
from __future__ import annotations

import re

import httpx

from apisync.http.ratelimit import QuotaSignal

_SFORCE_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")


def quota_signal(response: httpx.Response) -> QuotaSignal | None:
    """GitHub x-ratelimit-* or Salesforce Sforce-Limit-Info as one signal; None if absent."""
    return github_quota(response.headers) or salesforce_quota(response.headers)


def github_quota(headers: httpx.Headers) -> QuotaSignal | None:
    """x-ratelimit-remaining / limit / reset (epoch seconds), as GitHub documents them."""
    try:
        remaining = int(headers["x-ratelimit-remaining"])
        limit = int(headers["x-ratelimit-limit"])
        reset = float(headers["x-ratelimit-reset"])
    except (KeyError, ValueError):
        return None
    return QuotaSignal(remaining=remaining, limit=limit, reset_at=reset)


def salesforce_quota(headers: httpx.Headers) -> QuotaSignal | None:
    """`Sforce-Limit-Info: api-usage=used/allowed` (rolling 24 h, so no reset time)."""
    match = _SFORCE_USAGE.search(headers.get("sforce-limit-info", ""))
    if not match:
        return None
    used, allowed = int(match.group(1)), int(match.group(2))
    return QuotaSignal(remaining=allowed - used, limit=allowed, reset_at=None)
