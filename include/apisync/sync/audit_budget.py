"""The audit's request budget: the lowest lane of the account's shared limiter, and never more than a share.

Lanes alone cannot cap the audit: the lowest lane only yields to waiting requests of the others, so on a
quiet account it would take the whole budget. Every audit request therefore takes two grants, in this
order: one from a second GCRA budget in Redis (`<account>~audit`, rate = share × the account's rate,
burst 1), shared by every audit worker of the account, then one from the account's own budget on the
`audit` lane. The first paces the audit, the second keeps it behind every sync. Both are the same Lua
script on Redis TIME (apisync.http.ratelimit), so no worker clock is trusted.

Bound, for one audit worker: its requests are sequential, so the k-th account grant falls between the
k-th and the (k+1)-th pacing grant; any window of L seconds then holds at most 2 + floor(L × share ×
rate) audit grants from the account's budget (the pacing budget's own bound, 1 + floor(L × r), plus the
one grant whose pacing grant fell just before the window).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from apisync.api_client import MeteredLimiter, account_client
from apisync.http import ApiClient, RateLimitSpec, RedisRateLimiter
from apisync.registry import spec_for
from apisync.settings import SyncSettings

AUDIT_LANE = "audit"


class ShareCappedLimiter:
    """Acquire from a pacing budget (the share), then from the account's shared budget on a lane."""

    def __init__(self, shared: RedisRateLimiter, pacing: RedisRateLimiter) -> None:
        self.shared, self.pacing = shared, pacing
        self.grants = 0  # requests this audit took from the account's budget

    def acquire(self, lane: str = AUDIT_LANE, timeout: float | None = None) -> float:
        paced = self.pacing.acquire(AUDIT_LANE, timeout)
        remaining = None if timeout is None else max(0.0, timeout - paced)
        waited = paced + self.shared.acquire(lane, remaining)
        self.grants += 1
        return waited

    def pause(self, seconds: float, reason: str = "") -> Any:
        return self.shared.pause(seconds, reason)  # a 429 stops the whole account, not only the audit

    def observe(self, signal: Any) -> None:
        self.shared.observe(signal)


def share_limiter(redis_client: Any, settings: SyncSettings, share: float) -> ShareCappedLimiter:
    """The account's shared limiter behind a pacing budget of `share` × its rate."""
    if not 0 < share <= 1:
        raise ValueError(f"budget share must be in (0, 1], got {share}")
    api = settings.api
    rate = api.rate_per_s or spec_for(api.api).default_rate_per_s
    shared = RedisRateLimiter(redis_client, api.api, api.account, RateLimitSpec(rate=rate, burst=api.burst))
    pacing = RedisRateLimiter(redis_client, api.api, f"{api.account}~audit",
                              RateLimitSpec(rate=rate * share, burst=1))
    return ShareCappedLimiter(shared, pacing)


@contextmanager
def audit_client(settings: SyncSettings, share: float,
                 source: Any = None) -> Iterator[tuple[ApiClient, MeteredLimiter]]:
    """An ApiClient on the audit lane, paced to `share` of the account's budget, with the source's headers."""
    limiter = MeteredLimiter(share_limiter(redis.Redis.from_url(settings.redis_url), settings, share))
    client = account_client(settings, AUDIT_LANE, limiter, source)
    try:
        yield client, limiter
    finally:
        client.close()
