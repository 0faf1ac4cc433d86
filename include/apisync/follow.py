"""`python -m apisync normalize <api> --follow`: the normalizer as a long-running service.

The batch mode's Normalizer, unchanged, run in intervals until a stop is asked for. The stop is a flag
(set by SIGTERM / SIGINT in the CLI) that the normalizer checks between batches: the transaction in
flight commits, or aborts and is read again by the next owner, never cut in half. Then the consumer
closes; as a static group member its partitions wait `session.timeout.ms` for the same instance, so a
restart takes them back at once and a stop loses nothing. One progress line per interval.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from apisync.kafka.config_loader import describe
from apisync.metrics import NULL_METRICS, Metrics
from apisync.normalizer import DEFAULT_BATCH_SIZE, NormalizerStats, opened_normalizer

log = logging.getLogger("apisync.normalizer")

DEFAULT_LOG_EVERY_S = 30.0


def add_stats(total: NormalizerStats, more: NormalizerStats) -> NormalizerStats:
    """The sum of two runs' counts."""
    return NormalizerStats(*(a + b for a, b in zip(_counts(total), _counts(more), strict=True)))


def _counts(stats: NormalizerStats) -> tuple[int, ...]:
    return (stats.batches, stats.consumed, stats.records, stats.events, stats.dead_letters, stats.aborted)


def progress_line(api: str, interval: NormalizerStats, seconds: float, total: NormalizerStats) -> str:
    """One log line: what the last interval did, then the totals since start."""
    return (f"normalizer {api}: last {seconds:.0f}s: {interval.consumed} consumed, {interval.records} records, "
            f"{interval.events} events, {interval.dead_letters} dead letters, {interval.aborted} aborted batches"
            f" | since start: {total.consumed} consumed, {total.records} records, {total.events} events, "
            f"{total.dead_letters} dead letters")


def follow(api: str, kafka_config: Mapping[str, Any], redis_url: str, stop: threading.Event, *,
           instance: str = "0", api_settings: Any = None, batch_size: int = DEFAULT_BATCH_SIZE,
           log_every_s: float = DEFAULT_LOG_EVERY_S, clock: Callable[[], float] = time.monotonic,
           metrics: Metrics = NULL_METRICS, heartbeat: Path | None = None) -> NormalizerStats:
    """Normalize `api` until `stop` is set; returns the totals.

    `heartbeat`: a file touched once per interval, for a container healthcheck (a stale file means the
    loop is stuck, e.g. waiting on a broker that stopped answering).
    """
    total = NormalizerStats()
    with opened_normalizer(api, kafka_config, redis_url, instance=instance, api_settings=api_settings,
                           batch_size=batch_size, metrics=metrics) as normalizer:
        log.info("normalizer %s: following %s.changes and %s.webhooks as instance %s on %s; SIGTERM or Ctrl-C "
                 "stops it", api, api, api, instance, describe(kafka_config))
        while not stop.is_set():
            if heartbeat is not None:
                heartbeat.touch()
            started = clock()
            interval = normalizer.run(max_seconds=log_every_s, should_stop=stop.is_set)
            total = add_stats(total, interval)
            log.info("%s", progress_line(api, interval, clock() - started, total))
        log.info("normalizer %s: stop requested; last transaction settled, closing the consumer", api)
    log.info("normalizer %s: stopped", api)
    return total


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT ask for a graceful stop; a second one ends the process at once."""
    def ask(signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise SystemExit(128 + signum)
        log.info("received %s: finishing the current batch, then stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, ask)
    signal.signal(signal.SIGINT, ask)
