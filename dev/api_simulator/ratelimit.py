"""Per-token rate limits the way each API enforces and reports them."""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Verdict:
    """Outcome of one request against the limits: over which limit, if any, and the headers to send."""

    limited: str | None
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: int | None = None


@dataclass(slots=True)
class _Window:
    start: float = 0.0
    used: int = 0
    recent: deque = field(default_factory=deque)


class RateLimiter:
    """Stripe: requests per second; GitHub: per hour + secondary per minute; Salesforce: per rolling day;
    HubSpot: per rolling 10 seconds, and search per second on top."""

    def __init__(self, now: Callable[[], float], limits: Callable[[], dict[str, Any]]) -> None:
        self._now = now
        self._limits = limits
        self._windows: dict[tuple[str, str], _Window] = {}

    def reset(self) -> None:
        """Forget all counters."""
        self._windows.clear()

    def check(self, api: str, token: str, path: str = "") -> Verdict:
        """Count one request for `token` and say whether it is over a limit (`path`: HubSpot's search)."""
        window = self._windows.setdefault((api, token), _Window())
        conf = self._limits().get(api) or {}
        if api == "hubspot":
            search = self._windows.setdefault((api, token + "\0search"), _Window()) if path.endswith("/search") \
                else None
            return self._hubspot(window, search, conf, self._now())
        return getattr(self, f"_{api}")(window, conf, self._now())

    def refund(self, api: str, token: str) -> None:
        """Undo the count of the last request (GitHub: a 304 does not count)."""
        window = self._windows.get((api, token))
        if window and window.used > 0:
            window.used -= 1

    def injected(self, api: str, limit: str, retry_after_s: int) -> Verdict:
        """The verdict of an injected `rate_limited` fault, with the headers the real limit sends."""
        now = self._now()
        if api == "stripe":
            return Verdict("rate", {"Stripe-Should-Retry": "true"})
        if api == "github":
            headers = self._github_headers(5000, 5000 if limit == "primary" else 1, int(now) + retry_after_s)
            return Verdict(limit, headers, retry_after_s)
        if api == "hubspot":
            return Verdict(limit, self._hubspot_headers(100, 0))
        return Verdict("daily", {"Sforce-Limit-Info": "api-usage=100000/100000"})

    def _stripe(self, w: _Window, conf: dict, now: float) -> Verdict:
        limit = conf.get("per_second") or 0
        if not limit:
            return Verdict(None)
        while w.recent and w.recent[0] <= now - 1.0:
            w.recent.popleft()
        if len(w.recent) >= limit:
            # Stripe documents no Retry-After on 429; its clients read Stripe-Should-Retry.
            return Verdict("rate", {"Stripe-Should-Retry": "true"})
        w.recent.append(now)
        return Verdict(None)

    def _github(self, w: _Window, conf: dict, now: float) -> Verdict:
        limit = conf.get("per_hour") or 0
        if w.start == 0.0 or now >= w.start + 3600:
            w.start, w.used = now, 0
        reset = int(w.start + 3600)
        secondary = conf.get("secondary_per_minute") or 0
        while w.recent and w.recent[0] <= now - 60:
            w.recent.popleft()
        if secondary and len(w.recent) >= secondary:
            retry = max(1, int(w.recent[0] + 60 - now) + 1)
            return Verdict("secondary", self._github_headers(limit, w.used, reset), retry)
        if limit and w.used >= limit:
            return Verdict("primary", self._github_headers(limit, w.used, reset), max(1, int(reset - now)))
        w.used += 1
        w.recent.append(now)
        return Verdict(None, self._github_headers(limit, w.used, reset))

    @staticmethod
    def _github_headers(limit: int, used: int, reset: int) -> dict[str, str]:
        shown = limit or 5000
        return {"x-ratelimit-limit": str(shown), "x-ratelimit-remaining": str(max(shown - used, 0)),
                "x-ratelimit-used": str(used), "x-ratelimit-reset": str(reset), "x-ratelimit-resource": "core"}

    def _salesforce(self, w: _Window, conf: dict, now: float) -> Verdict:
        limit = conf.get("per_day") or 0
        while w.recent and w.recent[0] <= now - 86400:
            w.recent.popleft()
        shown = limit or 100000
        if limit and len(w.recent) >= limit:
            return Verdict("daily", {"Sforce-Limit-Info": f"api-usage={len(w.recent)}/{shown}"})
        w.recent.append(now)
        return Verdict(None, {"Sforce-Limit-Info": f"api-usage={len(w.recent)}/{shown}"})

    def _hubspot(self, w: _Window, search: _Window | None, conf: dict, now: float) -> Verdict:
        # docs ("API usage guidelines and limits"): a rolling 10-second burst limit per private app, headers
        # X-HubSpot-RateLimit-Max / -Remaining / -Interval-Milliseconds; the CRM search endpoints have their
        # own per-second limit (5 per second per account, "Search the CRM", Limitations) and answer 429
        # with policyName SECONDLY when over it.
        limit = conf.get("per_10_seconds") or 0
        while w.recent and w.recent[0] <= now - 10.0:
            w.recent.popleft()
        shown = limit or 100
        if search is not None:
            per_second = conf.get("search_per_second") or 0
            while search.recent and search.recent[0] <= now - 1.0:
                search.recent.popleft()
            if per_second and len(search.recent) >= per_second:
                return Verdict("secondly", self._hubspot_headers(shown, shown - len(w.recent)))
        if limit and len(w.recent) >= limit:
            return Verdict("ten_secondly", self._hubspot_headers(shown, 0))
        w.recent.append(now)
        if search is not None:
            search.recent.append(now)
        return Verdict(None, self._hubspot_headers(shown, shown - len(w.recent)))

    @staticmethod
    def _hubspot_headers(limit: int, remaining: int) -> dict[str, str]:
        return {"X-HubSpot-RateLimit-Max": str(limit), "X-HubSpot-RateLimit-Remaining": str(max(remaining, 0)),
                "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}
