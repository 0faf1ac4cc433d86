"""HTTP layer: httpx client with retries, token auth, paginators and the shared Redis rate limiter."""
from apisync.http.auth import BearerTokenAuth, redact
from apisync.http.client import ApiClient, JsonResponse
from apisync.http.errors import (
    ApiError,
    FatalError,
    MalformedResponseError,
    PaginationLoopError,
    RateLimitedError,
    RetriableError,
)
from apisync.http.oauth import OAuth2Auth, auth_for
from apisync.http.paginators import (
    HeaderLinkPaginator,
    NextRecordsUrlPaginator,
    Page,
    PageRequest,
    Paginator,
    StartingAfterPaginator,
    iterate_pages,
)
from apisync.http.ratelimit import LANES, QuotaSignal, RateLimitSpec, RedisRateLimiter
from apisync.http.retry import HTTP_SIGNALS, ApiSignals, Backoff, Outcome, Verdict, classify

__all__ = [
    "HTTP_SIGNALS", "LANES", "ApiClient", "ApiSignals",
    "ApiError", "Backoff", "BearerTokenAuth", "FatalError",
    "HeaderLinkPaginator", "JsonResponse", "MalformedResponseError", "OAuth2Auth", "Outcome", "Page", "PageRequest",
    "PaginationLoopError", "Paginator", "QuotaSignal", "RateLimitSpec", "RateLimitedError",
    "RedisRateLimiter", "RetriableError", "NextRecordsUrlPaginator", "StartingAfterPaginator",
    "Verdict", "auth_for", "classify", "iterate_pages", "redact",
]
