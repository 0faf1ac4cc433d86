"""RedisRateLimiter's blocking loop with an injected clock and sleep (the Lua runs in integration)."""
from __future__ import annotations

import pytest

from apisync.http import RateLimitSpec, RedisRateLimiter
from apisync.http.ratelimit import RateLimitTimeout


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.sleeps: list[float] = []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


class ScriptedRedis:
    """register_script() returns canned {granted, wait_us, now_us} answers and records the calls."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls: list[tuple[list[str], list]] = []

    def register_script(self, source):
        assert "redis.call('TIME')" in source

        def run(keys, args):
            self.calls.append((keys, args))
            return self.answers.pop(0)
        return run


def limiter(answers, spec=None):
    spec = spec or RateLimitSpec(rate=20, burst=2, max_sleep_s=5.0)
    clock = FakeClock()
    redis = ScriptedRedis(answers)
    return RedisRateLimiter(redis, "github", "acme", spec, sleep=clock.sleep, clock=lambda: clock.now), \
        clock, redis


def test_acquire_sleeps_what_redis_says_and_reports_the_wait():
    rl, clock, redis = limiter([[0, 250_000, 1], [0, 50_000, 2], [1, 0, 3_000_000]])
    grant = rl.acquire_grant("backfill")
    assert clock.sleeps == [0.25, 0.05]
    assert grant.waited_s == pytest.approx(0.3) and grant.server_time == 3.0
    assert grant.asked_at == pytest.approx(1e-6)  # Redis time of the first attempt
    keys, args = redis.calls[0]
    assert keys[0] == "apisync:ratelimit:github:acme:state"
    assert keys[1:] == [f"apisync:ratelimit:github:acme:waiting:{lane}"
                        for lane in ("webhook", "incremental", "reconcile", "backfill", "audit")]
    assert args[:2] == ["acquire", 4]
    assert redis.calls[0][1][2] == redis.calls[2][1][2]  # one waiter id for the whole acquire


def test_long_pauses_are_slept_in_bounded_slices():
    rl, clock, _ = limiter([[0, 12_000_000, 1], [0, 7_000_000, 2], [0, 2_000_000, 3], [1, 0, 4]])
    assert rl.acquire("incremental") == pytest.approx(12.0)
    assert clock.sleeps == [5.0, 5.0, 2.0]


def test_timeout_raises_instead_of_waiting_forever():
    rl, clock, _ = limiter([[0, 30_000_000, 1]])
    with pytest.raises(RateLimitTimeout, match="incremental request not granted within 10s"):
        rl.acquire("incremental", timeout=10)
    assert clock.sleeps == []


def test_unknown_lane_and_bad_spec_are_rejected():
    rl, _, _ = limiter([])
    with pytest.raises(ValueError, match="unknown rate-limit lane 'urgent'"):
        rl.acquire("urgent")
    with pytest.raises(ValueError):
        RateLimitSpec(rate=0)


def test_the_rate_limiter_reports_grants_waits_and_pauses():
    calls = []

    class Metrics:
        def incr(self, name, count=1, tags=None):
            calls.append((name, "incr", count))

        def timing(self, name, ms, tags=None):
            calls.append((name, "timing", ms))

    metrics, clock = Metrics(), [0.0]

    def sleep(seconds):
        clock[0] += seconds

    redis = ScriptedRedis([[1, 0, 1], [0, 250_000, 2], [1, 0, 3], [0, 3_000_000, 4]])
    limiter = RedisRateLimiter(redis, "stripe", "acct", RateLimitSpec(rate=10), sleep=sleep,
                               clock=lambda: clock[0], metrics=metrics)

    def sent(name):
        return [(kind, value) for n, kind, value in calls if n == f"apisync.ratelimit.stripe.{name}"]

    limiter.acquire("backfill")  # at once
    limiter.acquire("backfill")  # after 250 ms
    limiter.pause(3, "429")
    assert sent("backfill.granted") == [("incr", 1), ("incr", 1)]
    assert sent("backfill.waits") == [("incr", 1)]
    assert sent("backfill.wait") == [("timing", 250.0)]
    assert sent("pauses") == [("incr", 1)]
    assert sent("pause") == [("timing", 3000.0)]
