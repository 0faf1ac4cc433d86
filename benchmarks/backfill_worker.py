"""One backfill of `customer` in its own process, for the memory benchmark; prints one JSON line.

    python benchmarks/backfill_worker.py <bootstrap> <redis url> <stripe url>

The line: {"records": n, "seconds": s, "rss": peak RSS in bytes}. The production path: the Stripe
source, the HTTP client behind the shared rate limiter (unlimited here), the prefetch and the
transactional page writer into `stripe.changes`.
"""

from __future__ import annotations

import sys
import time
import uuid

import orjson
from common import peak_rss

from apisync.settings import ApiSettings, SyncSettings
from apisync.sync import run_backfill


def main(bootstrap: str, redis_url: str, stripe_url: str) -> int:
    api = ApiSettings("stripe", stripe_url, "sk_test_apisync", {"account": f"mem-{uuid.uuid4().hex[:6]}"},
                      rate_per_s=1_000_000.0, burst=1000)
    started = time.perf_counter()
    summary = run_backfill(SyncSettings({"bootstrap.servers": bootstrap}, redis_url, api), "customer", restart=True)
    line = {"records": summary.records, "seconds": time.perf_counter() - started,
            "rss": peak_rss()}
    print(orjson.dumps(line).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
