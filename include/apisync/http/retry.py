"""Retriable vs fatal, decided once per response, plus how long to wait before trying again.

This layer knows HTTP, not vendors: 429 is a rate limit, `Retry-After` is honoured, 5xx and
408/409/425 are retried, the rest is fatal. What one API adds (another status that means "rate
limited", a header that overrides the decision, a wait when it gives no Retry-After, its error body
shape, its quota headers) comes in as `ApiSignals`, declared in the API's spec (`apisync.apis.<api>`).
"""
from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from apisync.formats import http_date_s
from apisync.http.ratelimit import QuotaSignal

# 409: lock contention on an object; for idempotent GETs it is transient.
_RETRIABLE_4XX = frozenset({408, 409, 425})


class Outcome(enum.Enum):
    """What the client should do with a response."""

    OK = "ok"
    RETRY = "retry"
    RATE_LIMITED = "rate_limited"
    FATAL = "fatal"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The single classification of one response: outcome, a server-given wait, a reason."""

    outcome: Outcome
    reason: str
    wait_s: float | None = None


def _never(*_args) -> None:
    return None


@dataclass(frozen=True, slots=True)
class ApiSignals:
    """How one API's responses say more than HTTP does; every hook is optional.

    - `is_rate_limited(response, reason)`: a non-429 response that is a rate limit (e.g. a 403);
    - `rate_limit_wait(response, reason, now)`: seconds to wait when there is no Retry-After;
    - `should_retry(response)`: True/False overrides the status-based decision, None keeps it;
    - `message(body)`: the human message out of a decoded error body ("" if none);
    - `quota(headers)`: remaining request budget, fed to the shared rate limiter.
    """

    is_rate_limited: Callable[[httpx.Response, str], bool] = lambda _response, _reason: False
    rate_limit_wait: Callable[[httpx.Response, str, float], float | None] = _never
    should_retry: Callable[[httpx.Response], bool | None] = _never
    message: Callable[[object], str] = lambda body: str(body.get("message", "")) if isinstance(body, dict) else ""
    quota: Callable[[httpx.Headers], QuotaSignal | None] = _never


HTTP_SIGNALS = ApiSignals()


def classify(response: httpx.Response, now: float, signals: ApiSignals = HTTP_SIGNALS) -> Verdict:
    """Sort a response into ok / retry / rate-limited / fatal; `now` is the epoch used if no Date."""
    status = response.status_code
    if status < 300 or status == 304:
        return Verdict(Outcome.OK, "ok")
    reason = error_reason(response, signals)
    if status == 429 or signals.is_rate_limited(response, reason):
        wait = retry_after_s(response, now)
        return Verdict(Outcome.RATE_LIMITED, reason,
                       wait if wait is not None else signals.rate_limit_wait(response, reason, now))
    should_retry = signals.should_retry(response)
    if should_retry is False:
        return Verdict(Outcome.FATAL, reason)
    if should_retry or status >= 500 or status in _RETRIABLE_4XX:
        return Verdict(Outcome.RETRY, reason, retry_after_s(response, now))
    return Verdict(Outcome.FATAL, reason)


def retry_after_s(response: httpx.Response, now: float) -> float | None:
    """Parse Retry-After as delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    seconds = _float(value)
    if seconds is not None:
        return max(0.0, seconds)
    when = http_date_s(value)
    return None if when is None else max(0.0, when - server_now(response, now))


def server_now(response: httpx.Response, fallback: float) -> float:
    """The server's Date header as epoch seconds, so reset times are not skewed by our clock."""
    seconds = http_date_s(response.headers.get("date"))
    return fallback if seconds is None else seconds


def error_reason(response: httpx.Response, signals: ApiSignals = HTTP_SIGNALS) -> str:
    """One line from the error body (as the API's signals read it), else the status phrase."""
    try:
        body = response.json()
    except Exception:  # noqa: BLE001 - any undecodable body just falls back to the phrase
        body = None
    message = signals.message(body)
    phrase = response.reason_phrase or "error"
    return f"{phrase}: {message}" if message else phrase


def _float(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: sleep = U(0, min(cap, base * 2**attempt))."""

    base_s: float = 0.5
    cap_s: float = 30.0

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Delay before retry number `attempt` (0-based); full jitter spreads herds of workers."""
        return rng() * min(self.cap_s, self.base_s * (2**attempt))
