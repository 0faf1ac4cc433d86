"""Retriable vs fatal, decided once per response, plus how long to wait before trying again.

Sources (checked against the providers' docs):
- GitHub: over the primary limit -> 403 or 429 with x-ratelimit-remaining: 0, wait until
  x-ratelimit-reset (epoch s); secondary limit -> 403/429 with a message, honor retry-after,
  else wait at least 60 s. A 403 without those signals is a permission error: fatal.
- Stripe: 429 on rate limits, no documented Retry-After; `Stripe-Should-Retry: true|false`
  overrides the status-based decision (Stripe's own clients do this). 409 is lock contention on
  an object; for our idempotent GETs it is transient, so it is retried.
- Salesforce: every response has `Sforce-Limit-Info: api-usage=used/allowed`; over the daily
  allowance -> 403 with errorCode REQUEST_LIMIT_EXCEEDED (rolling 24 h: no reset time given).
"""
from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from apisync.formats import http_date_s

GITHUB_SECONDARY_MIN_WAIT_S = 60.0
# Salesforce gives no reset time for its rolling daily limit; back off a good while.
SALESFORCE_LIMIT_WAIT_S = 300.0
_RETRIABLE_4XX = frozenset({408, 409, 425})
_RATE_LIMIT_WORDS = ("rate limit", "ratelimit", "request_limit_exceeded", "too many requests")


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


def classify(response: httpx.Response, now: float) -> Verdict:
    """Sort a response into ok / retry / rate-limited / fatal; `now` is the epoch used if no Date."""
    status = response.status_code
    if status < 300 or status == 304:
        return Verdict(Outcome.OK, "ok")
    reason = error_reason(response)
    should_retry = response.headers.get("stripe-should-retry")
    if _is_rate_limited(response, reason):
        return Verdict(Outcome.RATE_LIMITED, reason, rate_limit_wait(response, reason, now))
    if should_retry == "false":
        return Verdict(Outcome.FATAL, reason)
    if should_retry == "true" or status >= 500 or status in _RETRIABLE_4XX:
        return Verdict(Outcome.RETRY, reason, retry_after_s(response, now))
    return Verdict(Outcome.FATAL, reason)


def _is_rate_limited(response: httpx.Response, reason: str) -> bool:
    """429 always; 403 only with GitHub's quota signals or a rate-limit message."""
    if response.status_code == 429:
        return True
    if response.status_code != 403:
        return False
    headers = response.headers
    if headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers:
        return True
    return any(word in reason.lower() for word in _RATE_LIMIT_WORDS)


def rate_limit_wait(response: httpx.Response, reason: str, now: float) -> float | None:
    """Seconds the API asked us to wait, following each provider's documented order."""
    hinted = retry_after_s(response, now)
    if hinted is not None:
        return hinted
    headers = response.headers
    if headers.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in headers:
        reset = _float(headers["x-ratelimit-reset"])
        if reset is not None:
            return max(0.0, reset - server_now(response, now))
    lowered = reason.lower()
    if "request_limit_exceeded" in lowered:
        return SALESFORCE_LIMIT_WAIT_S
    if "secondary rate limit" in lowered:
        return GITHUB_SECONDARY_MIN_WAIT_S
    return None


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


def error_reason(response: httpx.Response) -> str:
    """One line from the error body (Stripe, GitHub, Salesforce shapes), else the status phrase."""
    try:
        body = response.json()
    except Exception:  # noqa: BLE001 - any undecodable body just falls back to the phrase
        body = None
    message = _message_from(body)
    phrase = response.reason_phrase or "error"
    return f"{phrase}: {message}" if message else phrase


def _message_from(body: object) -> str:
    """Pick the human message out of the three providers' error shapes."""
    if isinstance(body, list) and body and isinstance(body[0], dict):
        first = body[0]  # Salesforce: [{"message": ..., "errorCode": ...}]
        return " ".join(str(first.get(k, "")) for k in ("errorCode", "message")).strip()
    if not isinstance(body, dict):
        return ""
    if isinstance(body.get("error"), dict):
        err = body["error"]  # Stripe: {"error": {"type", "code", "message"}}
        return " ".join(str(err.get(k, "")) for k in ("code", "message") if err.get(k)).strip()
    return str(body.get("message", ""))  # GitHub: {"message", "documentation_url"}


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
