"""One request budget per API account, shared by every worker process through Redis.

Algorithm: GCRA (generic cell rate algorithm), evaluated atomically by one Lua script
(`ratelimit.lua`). Why GCRA over a token bucket: its whole state is one number (the theoretical
arrival time, TAT), so the script does one HGET/HSET, needs no refill arithmetic, and the bound
is easy to prove. With rate r (interval T = 1/r) and burst b (tolerance tau = (b-1)T), a request
at server time t is granted iff t >= TAT - tau, and then TAT := max(TAT, t) + T.
Bound: TAT grows by >= T per grant and is >= t1 + T after the first grant t1 in a window, so the
m-th grant in a window satisfies t_m >= t1 + (m-1)T - tau; within a closed window of length L
that gives m <= b + floor(L*r). For one second: at most rate + burst grants, across all processes.

Priority lanes (webhook > incremental > reconcile > backfill > audit): a request that must wait leaves
a short-lived marker in its lane's sorted set; a lower lane is refused while a better lane has a
live marker, so a hammering backfill yields the next slot to an incremental request. Markers
expire on their own (wait + grace), so a crashed worker cannot block the account. This is strict
priority: a better lane that saturates the budget on its own does starve the lanes below it.
Keys: `apisync:ratelimit:<api>:<account>:state` and `...:waiting:<lane>` (single Redis node; a
Redis Cluster would need a hash tag so the script's keys share one slot).

A global pause (429 / Retry-After / quota exhausted) and a rate cap derived from the API's own
quota headers live in the same hash. All times come from Redis TIME, so workers on different
machines agree even when their clocks do not.
"""
from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from apisync.errors import RetriableError
from apisync.metrics import NULL_METRICS, Metrics, metric_name

# `audit` comes last: the self-audit only compares and must never delay a sync. It also paces itself
# to a share of the budget on top of this (see apisync.sync.audit_budget).
LANES: tuple[str, ...] = ("webhook", "incremental", "reconcile", "backfill", "audit")
_US = 1_000_000
log = logging.getLogger("apisync.http")


@dataclass(frozen=True, slots=True)
class RateLimitSpec:
    """The configured budget of one API account and how to react to the API's quota signals."""

    rate: float
    burst: int = 1
    min_rate: float = 0.05
    headroom: float = 0.2
    rolling_pause_s: float = 300.0
    rolling_cap_ttl_s: float = 60.0
    waiter_grace_s: float = 1.0
    max_sleep_s: float = 5.0

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got rate={self.rate} burst={self.burst}")


@dataclass(frozen=True, slots=True)
class QuotaSignal:
    """What the API said about its own quota: remaining of limit, resetting at an epoch or rolling."""

    remaining: int
    limit: int
    reset_at: float | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """One atomic answer from Redis: granted or not, how long to wait, and Redis's clock."""

    granted: bool
    wait_s: float
    server_time: float


@dataclass(frozen=True, slots=True)
class Grant:
    """A granted request: seconds spent waiting, Redis time of the first attempt and of the grant."""

    waited_s: float
    server_time: float
    asked_at: float


class RateLimitTimeout(RetriableError):
    """acquire() waited longer than its timeout."""


class RedisRateLimiter:
    """Blocking acquire per lane, pause and quota feedback, all against one shared Redis budget."""

    def __init__(
        self,
        redis_client,
        api: str,
        account: str,
        spec: RateLimitSpec,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics = NULL_METRICS,
    ) -> None:
        self.api, self.account, self.spec = api, account, spec
        self._metrics = metrics
        self.prefix = f"apisync:ratelimit:{api}:{account}"
        self._keys = [f"{self.prefix}:state", *(f"{self.prefix}:waiting:{lane}" for lane in LANES)]
        self._script = redis_client.register_script(_script_source())
        self._sleep, self._clock = sleep, clock

    def acquire(self, lane: str = "incremental", timeout: float | None = None) -> float:
        """Block until the shared budget grants one request in `lane`; return seconds waited."""
        return self.acquire_grant(lane, timeout).waited_s

    def acquire_grant(self, lane: str = "incremental", timeout: float | None = None) -> Grant:
        """Like acquire(), but also report the Redis server time of the grant."""
        rank, waiter = _rank(lane), uuid.uuid4().hex
        start, asked_at = self._clock(), None
        while True:
            decision = self._call("acquire", rank, waiter, self.spec.rate, self.spec.burst,
                                  round(self.spec.waiter_grace_s * _US))
            waited = self._clock() - start
            asked_at = decision.server_time if asked_at is None else asked_at
            if decision.granted:
                self._granted(lane, waited)
                return Grant(waited, decision.server_time, asked_at)
            if timeout is not None and waited + decision.wait_s > timeout:
                raise RateLimitTimeout(
                    f"{self.api}/{self.account} rate limiter: {lane} request not granted within {timeout:g}s"
                )
            self._sleep(min(decision.wait_s, self.spec.max_sleep_s))

    def try_acquire(self, lane: str = "incremental") -> Decision:
        """One non-blocking attempt (for callers that schedule their own retries)."""
        return self._call("acquire", _rank(lane), uuid.uuid4().hex, self.spec.rate,
                          self.spec.burst, round(self.spec.waiter_grace_s * _US))

    def pause(self, seconds: float, reason: str = "") -> Decision:
        """Stop every worker of this account for `seconds` (never shortens a longer pause).

        Returns Redis's time now and the remaining pause, so callers know the exact window.
        """
        decision = self._call("pause", max(0, round(seconds * _US)))
        tags = {"api": self.api, "account": self.account}
        self._metrics.incr(metric_name("ratelimit", self.api, "pauses"), 1, tags)
        self._metrics.timing(metric_name("ratelimit", self.api, "pause"), round(decision.wait_s * 1000, 1), tags)
        log.warning("%s rate limit: account %s paused %.1fs%s", self.api, self.account,
                    decision.wait_s, f" ({reason})" if reason else "")
        return decision

    def observe(self, signal: QuotaSignal) -> None:
        """Feed the API's remaining-quota headers so the budget slows before the API says stop."""
        reset_us = -1 if signal.reset_at is None else round(signal.reset_at * _US)
        spec = self.spec
        decision = self._call("observe", signal.remaining, signal.limit, reset_us, spec.rate,
                              spec.min_rate, spec.headroom, round(spec.rolling_pause_s * _US),
                              round(spec.rolling_cap_ttl_s * _US))
        if not decision.granted:
            log.warning("%s quota exhausted (%d/%d left): account %s paused %.1fs", self.api,
                        signal.remaining, signal.limit, self.account, decision.wait_s)

    def _granted(self, lane: str, waited: float) -> None:
        """`apisync.ratelimit.<api>.<lane>.granted`; and `.waits` + `.wait` (ms) when it had to wait."""
        tags = {"api": self.api, "account": self.account, "lane": lane}
        self._metrics.incr(metric_name("ratelimit", self.api, lane, "granted"), 1, tags)
        if waited > 0.0005:
            self._metrics.incr(metric_name("ratelimit", self.api, lane, "waits"), 1, tags)
            self._metrics.timing(metric_name("ratelimit", self.api, lane, "wait"), round(waited * 1000, 1), tags)

    def reset(self, redis_client) -> None:
        """Forget all state of this account (operators and tests)."""
        redis_client.delete(*self._keys)

    def _call(self, op: str, *args) -> Decision:
        granted, wait_us, now_us = self._script(keys=self._keys, args=[op, *args])
        return Decision(bool(int(granted)), int(wait_us) / _US, int(now_us) / _US)


def _rank(lane: str) -> int:
    """1-based priority of a lane; unknown lanes are a programming error."""
    try:
        return LANES.index(lane) + 1
    except ValueError:
        raise ValueError(f"unknown rate-limit lane {lane!r}; expected one of {', '.join(LANES)}") from None


def _script_source() -> str:
    return resources.files(__package__).joinpath("ratelimit.lua").read_text(encoding="utf-8")
