"""apisync's Metrics over Airflow's own stats client, so task metrics go where Airflow's go.

Airflow's `[metrics]` section decides the backend (StatsD, Datadog or OpenTelemetry) and the prefix
(`airflow.` by default); with none enabled every call is a no-op. Names come from the library
(`apisync.<...>`), the tags go along for backends that keep them (OpenTelemetry, StatsD InfluxDB tags).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("apisync.airflow")


class AirflowStatsMetrics:
    """`apisync.metrics.Metrics` through `airflow.sdk.observability.stats.Stats`; never raises."""

    def __init__(self, stats: Any = None) -> None:
        if stats is None:
            from airflow.sdk.observability.stats import Stats as stats
        self._stats = stats

    def incr(self, name: str, count: int = 1, tags: Mapping[str, str] | None = None) -> None:
        self._safely(self._stats.incr, name, count, tags)

    def gauge(self, name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
        self._safely(self._stats.gauge, name, value, tags)

    def timing(self, name: str, ms: float, tags: Mapping[str, str] | None = None) -> None:
        self._safely(self._stats.timing, name, ms, tags)

    @staticmethod
    def _safely(send: Any, name: str, value: float, tags: Mapping[str, str] | None) -> None:
        try:
            send(name, value, tags=dict(tags) if tags else None)
        except Exception as exc:  # a metrics backend must never fail the sync it describes
            log.debug("metric %s not sent: %s", name, exc)
