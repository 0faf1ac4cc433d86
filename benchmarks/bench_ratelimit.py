"""The shared request budget: 3 worker processes on one account at 100 req/s (burst 5), for `seconds`.

Each worker asks `RedisRateLimiter.acquire_grant("backfill")` in a loop, as an ApiClient does before
every request, and records the Redis server time of each grant (the clock the GCRA bound is about).
Reported: the share of the budget used (grants / (rate x duration + burst)) and the most grants in
any closed 1-second window, which must stay at or below rate + burst.
"""

from __future__ import annotations

import subprocess
import time
import uuid

import orjson
from common import Row, Stack, python, worker_env

from devstack.grants import max_in_window

RATE, BURST, WORKERS = 100.0, 5, 3
WORKER = """
import sys, time, orjson, redis
from apisync.http.ratelimit import RateLimitSpec, RedisRateLimiter
url, account, rate, burst, start_at, duration = sys.argv[1:7]
spec = RateLimitSpec(rate=float(rate), burst=int(burst))
limiter = RedisRateLimiter(redis.Redis.from_url(url), "bench", account, spec)
start_at, end = float(start_at), float(start_at) + float(duration)
while time.time() < start_at:
    time.sleep(0.005)
grants = []
while time.time() < end:
    grants.append(limiter.acquire_grant("backfill").server_time)
print(orjson.dumps(grants).decode())
"""


def run(stack: Stack, seconds: float = 20.0) -> list[Row]:
    account = f"bench-{uuid.uuid4().hex[:6]}"
    start_at = time.time() + 3.0  # every worker imported and connected before the window opens
    args = [stack.redis_url, account, str(RATE), str(BURST), str(start_at), str(seconds)]
    procs = [subprocess.Popen([python(), "-c", WORKER, *args], stdout=subprocess.PIPE, env=worker_env(), text=True)
             for _ in range(WORKERS)]
    grants: list[float] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 60)
        if proc.returncode != 0:
            raise RuntimeError(f"a rate-limit worker failed with exit code {proc.returncode}")
        grants += orjson.loads(out)
    # The share counts the steady state: whole seconds inside the window, the initial burst aside.
    used = (len(grants) - BURST) / (RATE * seconds)
    peak = max_in_window(grants)
    return [
        Row(f"rate budget, {WORKERS} processes", f"100 req/s + burst {BURST}, {seconds:.0f} s",
            f"{used:.1%} of the budget used", f"{len(grants)} grants", ">= 90 %", used >= 0.90),
        Row(f"rate budget, {WORKERS} processes", "most grants in any 1 s window", f"{peak}",
            f"bound {RATE + BURST:.0f}", f"<= {RATE + BURST:.0f}", peak <= RATE + BURST),
    ]
