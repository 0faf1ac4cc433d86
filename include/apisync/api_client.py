"""The account's ApiClient, behind the account's shared Redis budget: what sync runs and the normalizer's
re-fetches call an API with (its auth, the source's headers, the API's response signals)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from apisync.http import ApiClient, RateLimitSpec, RedisRateLimiter, auth_for
from apisync.metrics import NULL_METRICS, Metrics
from apisync.registry import spec_for
from apisync.settings import SyncSettings
from apisync.sources import Source


def account_client(settings: SyncSettings, lane: str, limiter: Any, source: Source | None = None) -> ApiClient:
    """The account's ApiClient: its auth, the source's headers and its API's response signals."""
    api = settings.api
    auth = auth_for(api.api, api.token, api.oauth, base_url=api.base_url, redis_url=settings.redis_url)
    return ApiClient(api.api, api.base_url, auth, rate_limiter=limiter,
                     lane=lane, headers=getattr(source, "headers", None), signals=spec_for(api.api).signals)


class MeteredLimiter:
    """Passes through to the shared limiter and adds up the time this run waited on it."""

    def __init__(self, inner: RedisRateLimiter) -> None:
        self.inner, self.waited_s = inner, 0.0

    def acquire(self, lane: str = "incremental", timeout: float | None = None) -> float:
        waited = self.inner.acquire(lane, timeout)
        self.waited_s += waited
        return waited

    def pause(self, seconds: float, reason: str = "") -> Any:
        return self.inner.pause(seconds, reason)

    def observe(self, signal) -> None:
        self.inner.observe(signal)


@contextmanager
def api_client(settings: SyncSettings, lane: str, source: Source | None = None,
               metrics: Metrics = NULL_METRICS) -> Iterator[tuple[ApiClient, MeteredLimiter]]:
    """An ApiClient for the account, behind the account's shared Redis budget, with the source's headers."""
    api = settings.api
    rate = api.rate_per_s or spec_for(api.api).default_rate_per_s
    limiter = MeteredLimiter(RedisRateLimiter(redis.Redis.from_url(settings.redis_url), api.api, api.account,
                                              RateLimitSpec(rate=rate, burst=api.burst), metrics=metrics))
    client = account_client(settings, lane, limiter, source)
    try:
        yield client, limiter
    finally:
        client.close()
