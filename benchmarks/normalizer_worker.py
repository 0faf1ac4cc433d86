"""One normalizer process for the benchmarks: runs until SIGTERM, one JSON line per batch on stdout.

    python benchmarks/normalizer_worker.py <bootstrap> <redis url> <namespace> <ledger prefix> <instance>

Each line: {"assigned": partitions owned, "consumed": total so far, "first": time.time() when the
call that brought the first observations began, "last": time.time() of the last batch committed, "rss":
peak RSS in bytes, "paused": bool}. Fence on, events and secondary topics on:
the production normalizer (`open_normalizer`), only with topic names under the benchmark's namespace.

A line "pause" on stdin stops fetching from the owned partitions (the benchmark loads a backlog
meanwhile), "resume" goes on: the normalizer is measured catching up with a backlog, the case where
its throughput matters, without the load generator's CPU in the measured window.
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
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
    commands: queue.SimpleQueue[str] = queue.SimpleQueue()
    threading.Thread(target=lambda: [commands.put(line.strip()) for line in sys.stdin], daemon=True).start()
    consumed, first, last, paused = 0, 0.0, 0.0, False
    try:
        while not stopping:
            while not commands.empty():
                paused = obey(normalizer, commands.get())
            began = time.time()
            stats = normalizer.run(max_seconds=0.1 if paused else 0.5, max_batches=1)
            if stats.consumed:
                consumed, first, last = consumed + stats.consumed, first or began, time.time()
            line = {"assigned": len(normalizer.assignment()), "consumed": consumed, "first": first, "last": last,
                    "rss": peak_rss(), "paused": paused}
            sys.stdout.write(orjson.dumps(line).decode() + "\n")
            sys.stdout.flush()
    finally:
        normalizer.close()
    return 0


def obey(normalizer, command: str) -> bool:
    """Pause or resume fetching; whether the worker is paused now. (The consumer is the normalizer's
    own: pausing is a benchmark's need, so it is not part of the Normalizer's API.)"""
    consumer = normalizer._consumer
    if command == "pause":
        consumer.pause(consumer.assignment())
        return True
    consumer.resume(consumer.assignment())
    return False


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
