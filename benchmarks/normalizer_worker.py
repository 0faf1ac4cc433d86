"""One normalizer process for the benchmarks: runs until SIGTERM, one JSON line per batch on stdout.

    python benchmarks/normalizer_worker.py <bootstrap> <redis url> <namespace> <ledger prefix> <instance>

Each line: {"assigned": partitions owned, "consumed": total so far, "last": time.time() of the last
batch committed, "rss": peak RSS in bytes}. Fence on, events and secondary topics on: the production
normalizer (`open_normalizer`), only with topic names under the benchmark's namespace.
"""

from __future__ import annotations

import signal
import sys
import time

import orjson
import redis
from common import peak_rss

from apisync.normalizer import open_normalizer, tune_gc


def main(bootstrap: str, redis_url: str, namespace: str, ledger: str, instance: str) -> int:
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    tune_gc()  # as opened_normalizer() does for the CLI, the follow service and the Airflow task
    normalizer = open_normalizer("stripe", {"bootstrap.servers": bootstrap}, redis.Redis.from_url(redis_url),
                                 instance=instance, namespace=namespace, ledger_prefix=ledger, poll_timeout=0.2)
    consumed, last = 0, 0.0
    try:
        while not stopping:
            stats = normalizer.run(max_seconds=0.5, max_batches=1)
            if stats.consumed:
                consumed, last = consumed + stats.consumed, time.time()
            line = {"assigned": len(normalizer.assignment()), "consumed": consumed, "last": last,
                    "rss": peak_rss()}
            sys.stdout.write(orjson.dumps(line).decode() + "\n")
            sys.stdout.flush()
    finally:
        normalizer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
