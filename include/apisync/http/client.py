"""ApiClient: one pooled httpx.Client per API with shared rate limiting and bounded retries."""
from __future__ import annotations

import functools
import logging
import random
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode

import httpx
import orjson

from apisync.formats import shorten
from apisync.http.auth import redact, scrub_logs
from apisync.http.errors import (
    ApiError,
    FatalError,
    MalformedResponseError,
    RateLimitedError,
    RetriableError,
)
from apisync.http.ratelimit import QuotaSignal, RateLimitTimeout
from apisync.http.retry import HTTP_SIGNALS, ApiSignals, Backoff, Outcome, Verdict, classify

log = logging.getLogger("apisync.http")
_SECRET_PARAM_WORDS = ("key", "token", "secret", "password", "signature", "sig", "auth")
_LOG_WAIT_FROM_S = 0.05
DEFAULT_BACKOFF = Backoff()


class RateLimiter(Protocol):
    """What the client needs from a shared budget (RedisRateLimiter implements it)."""

    def acquire(self, lane: str = ..., timeout: float | None = ...) -> float: ...
    def pause(self, seconds: float, reason: str = ...) -> object: ...
    def observe(self, signal: QuotaSignal) -> None: ...


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default certificate verification (certifi, or SSL_CERT_FILE / SSL_CERT_DIR), made once per
    process: every httpx.Client would load the CA bundle again, ~30 ms, and a sync run opens three."""
    return httpx.create_ssl_context()


@dataclass(frozen=True, slots=True)
class JsonResponse:
    """A successful response and its decoded JSON body (None for 304 Not Modified)."""

    data: Any
    response: httpx.Response


class ApiClient:
    """GET (and read-only POST queries) with retries (5xx, timeouts, 429, rate-limit 403), shared rate
    limit, quota feedback."""

    def __init__(
        self,
        api: str,
        base_url: str,
        auth: httpx.Auth | None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        max_retries: int = 5,
        rate_limiter: RateLimiter | None = None,
        lane: str = "incremental",
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        headers: Mapping[str, str] | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        rng: Callable[[], float] = random.random,
        max_wait_s: float = 900.0,
        signals: ApiSignals = HTTP_SIGNALS,
    ) -> None:
        self.api, self.lane, self.max_retries, self._signals = api, lane, max_retries, signals
        self._limiter, self._sleep, self._clock = rate_limiter, sleep, clock
        self._backoff, self._rng, self._max_wait_s = backoff, rng, max_wait_s
        self._secrets = tuple(getattr(auth, "secrets", ()))
        scrub_logs(self._secrets)
        # APIs may redirect any request (e.g. a renamed resource answers 301); httpx drops the
        # Authorization header when a redirect leaves the origin.
        self._http = httpx.Client(
            base_url=base_url, auth=auth, transport=transport, timeout=timeout, headers=headers,
            follow_redirects=True, verify=tls_context(),
        )

    def get(self, path_or_url: str, params: Mapping[str, Any] | None = None,
            headers: Mapping[str, str] | None = None) -> httpx.Response:
        """GET with retries; returns the first successful (2xx or 304) response."""
        return self._request(path_or_url, params, headers, decode=False).response

    def get_json(self, path_or_url: str, params: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None) -> JsonResponse:
        """GET and decode JSON; a malformed body is retried like a 5xx, then MalformedResponseError."""
        return self._request(path_or_url, params, headers, decode=True)

    def post_json(self, path_or_url: str, body: Any, headers: Mapping[str, str] | None = None) -> JsonResponse:
        """POST a JSON body and decode the answer; only for read-only queries (e.g. a search endpoint),
        because it is retried exactly like a GET."""
        return self._request(path_or_url, None, headers, decode=True, method="POST", body=body)

    def json(self, response: httpx.Response) -> Any:
        """Decode one response body; raises MalformedResponseError (retriable) naming the endpoint."""
        try:
            return orjson.loads(response.content)
        except (orjson.JSONDecodeError, httpx.ResponseNotRead) as exc:
            raise self._error(MalformedResponseError, response.request, response.status_code,
                              f"body is not valid JSON ({_decode_problem(exc, response)})") from None

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _request(self, target, params, headers, *, decode: bool, method: str = "GET",
                 body: Any = None) -> JsonResponse:
        content = None if body is None else orjson.dumps(body)
        if content is not None:
            headers = {"Content-Type": "application/json", **(headers or {})}
        request = self._http.build_request(method, target, params=params, headers=headers, content=content)
        attempt = 0
        while True:
            try:
                return self._attempt(request, decode)
            except _Retry as retry:
                wait = self._plan_wait(retry, attempt)
                if attempt >= self.max_retries:
                    raise retry.error from None
                attempt += 1
                log.warning("%s %s %s: %s; retry %d/%d in %.2fs", self.api, method, retry.error.endpoint,
                            _status_text(retry.error), attempt, self.max_retries, wait)
                if not retry.rate_limited or self._limiter is None:
                    self._sleep(wait)  # with a limiter, acquire() itself waits out the shared pause

    def _attempt(self, request: httpx.Request, decode: bool) -> JsonResponse:
        """Send once; return on success, raise FatalError, or raise _Retry with a wait hint."""
        self._take_token(request)
        try:
            response = self._http.send(request)
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise _Retry(self._error(RetriableError, request, None, _transport_reason(exc))) from None
        self._feed_limiter(response)
        verdict = classify(response, self._clock(), self._signals)
        if verdict.outcome is Outcome.OK:
            return self._success(response, decode)
        if verdict.outcome is Outcome.FATAL:
            raise self._error(FatalError, request, response.status_code, verdict.reason)
        cls = RateLimitedError if verdict.outcome is Outcome.RATE_LIMITED else RetriableError
        raise _Retry(self._error(cls, request, response.status_code, verdict.reason), verdict)

    def _success(self, response: httpx.Response, decode: bool) -> JsonResponse:
        if not decode or response.status_code == 304:
            return JsonResponse(None, response)
        try:
            return JsonResponse(self.json(response), response)
        except MalformedResponseError as exc:
            raise _Retry(exc) from None

    def _plan_wait(self, retry: _Retry, attempt: int) -> float:
        """Seconds to wait (API hint, else backoff); a rate limit pauses every worker right away."""
        verdict, error = retry.verdict, retry.error
        hinted = verdict.wait_s if verdict else None
        wait = hinted if hinted is not None else self._backoff.delay(attempt, self._rng)
        if retry.rate_limited and self._limiter is not None:
            self._limiter.pause(wait, reason=f"{self.api} HTTP {error.status}")
        if wait > self._max_wait_s:
            raise type(error)(error.api, error.method, error.endpoint, error.status,
                              f"{error.reason}; API asks to wait {wait:.0f}s, more than "
                              f"{self._max_wait_s:.0f}s", params=error.params) from None
        return wait

    def _take_token(self, request: httpx.Request) -> None:
        """Wait for the shared budget, but never longer than max_wait_s (then retry the task later)."""
        if self._limiter is None:
            return
        try:
            waited = self._limiter.acquire(self.lane, timeout=self._max_wait_s)
        except RateLimitTimeout as exc:
            raise self._error(RateLimitedError, request, None, f"shared rate limit: {exc}") from None
        if waited >= _LOG_WAIT_FROM_S:
            log.info("%s rate limiter: waited %.2fs (lane %s)", self.api, waited, self.lane)

    def _feed_limiter(self, response: httpx.Response) -> None:
        if self._limiter is None:
            return
        signal = self._signals.quota(response.headers)
        if signal is not None:
            self._limiter.observe(signal)

    def _error(self, cls: type[ApiError], request: httpx.Request, status: int | None,
               reason: str) -> ApiError:
        """Build an error naming endpoint and (scrubbed) params, never a secret."""
        query = _safe_query(request.url.query.decode("ascii", "replace"))
        return cls(self.api, request.method, request.url.path, status,
                   redact(reason, self._secrets), params=redact(query, self._secrets))


class _Retry(Exception):
    """Internal: this attempt failed in a way worth repeating."""

    def __init__(self, error: ApiError, verdict: Verdict | None = None) -> None:
        super().__init__(str(error))
        self.error, self.verdict = error, verdict
        self.rate_limited = verdict is not None and verdict.outcome is Outcome.RATE_LIMITED


def _safe_query(query: str, max_len: int = 200) -> str:
    """Query string with secret-looking parameters masked, short enough for one line."""
    pairs = [
        (k, "***" if any(word in k.lower() for word in _SECRET_PARAM_WORDS) else v)
        for k, v in parse_qsl(query, keep_blank_values=True)
    ]
    return shorten(urlencode(pairs, safe="[]:,"), max_len)


def _transport_reason(exc: Exception) -> str:
    detail = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _decode_problem(exc: Exception, response: httpx.Response) -> str:
    size = len(response.content) if not isinstance(exc, httpx.ResponseNotRead) else 0
    return f"{size} bytes, {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _status_text(error: ApiError) -> str:
    return f"HTTP {error.status}: {error.reason}" if error.status else error.reason
