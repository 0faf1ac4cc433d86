"""What a normalizer run did (`NormalizerStats`) and the metrics each batch reports."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from apisync.metrics import Metrics, metric_name
from apisync.normalizer.batch import _Batch


@dataclass(frozen=True, slots=True)
class NormalizerStats:
    """What one run did."""

    batches: int = 0
    consumed: int = 0
    records: int = 0
    events: int = 0
    dead_letters: int = 0
    aborted: int = 0
    deferred: int = 0  # messages written back to be re-fetched later (a re-fetch failed transiently)


class NormalizerMetrics:
    """After each committed batch: `apisync.normalizer.<api>.{batches,consumed,dlq}`, the batch's time
    (`.batch`, ms), and per collection `.<collection>.{records,events}` and `.<collection>.lag` (seconds
    from the oldest observation's synced_at to the commit). Aborted batches count only `.aborted`."""

    def __init__(self, metrics: Metrics, api: str, clock: Callable[[], float] = time.time) -> None:
        self._metrics, self._api, self._clock = metrics, api, clock

    def committed(self, batch: _Batch, consumed: int, ms: float) -> None:
        m, api, tags = self._metrics, self._api, {"api": self._api}
        m.incr(metric_name("normalizer", api, "batches"), 1, tags)
        m.incr(metric_name("normalizer", api, "consumed"), consumed, tags)
        m.timing(metric_name("normalizer", api, "batch"), round(ms, 1), tags)
        if batch.dead:
            m.incr(metric_name("normalizer", api, "dlq"), batch.dead, tags)
        now = self._clock()
        for collection, (records, events, oldest) in batch.tally.items():
            ctags = {"api": api, "collection": collection}
            m.incr(metric_name("normalizer", api, collection, "records"), records, ctags)
            if events:
                m.incr(metric_name("normalizer", api, collection, "events"), events, ctags)
            with contextlib.suppress(ValueError):
                lag = now - datetime.fromisoformat(oldest).timestamp()
                m.gauge(metric_name("normalizer", api, collection, "lag"), round(max(0.0, lag), 3), ctags)

    def aborted(self) -> None:
        self._metrics.incr(metric_name("normalizer", self._api, "aborted"), 1, {"api": self._api})


def _add(stats: NormalizerStats, batch: _Batch | None, consumed: int) -> NormalizerStats:
    if batch is None:
        return dataclasses.replace(stats, aborted=stats.aborted + 1)
    return NormalizerStats(stats.batches + 1, stats.consumed + consumed, stats.records + batch.records,
                           stats.events + batch.events, stats.dead_letters + batch.dead, stats.aborted,
                           stats.deferred + batch.deferred)
