"""Metrics: the small interface the library reports progress through, and its two plain backends.

The library never imports Airflow: it calls a `Metrics` (incr / gauge / timing). Airflow tasks pass
an adapter over Airflow's own stats client (`apisync_airflow.metrics`), so metrics go wherever the
deployment configured Airflow's (StatsD or OpenTelemetry). Standalone processes (`python -m apisync
normalize`, the webhook receiver) use `metrics_from_env`: StatsD when APISYNC_STATSD_HOST (or Airflow's
AIRFLOW__METRICS__STATSD_ON/HOST/PORT) is set, else nothing.

Names follow Airflow's StatsD convention: dotted, identifiers inside the name (StatsD has no tags),
all starting with `apisync.`; the same identifiers also go as tags for backends that keep them
(OpenTelemetry, StatsD with InfluxDB tags). Every name is listed in the README's Metrics section.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any, Protocol

log = logging.getLogger("apisync.metrics")
PREFIX = "apisync"
_INVALID = re.compile(r"[^a-zA-Z0-9_-]")
DEFAULT_STATSD_PORT = 8125

Tags = Mapping[str, str]


class Metrics(Protocol):
    """Where the library reports counts, levels and durations; implementations must never raise."""

    def incr(self, name: str, count: int = 1, tags: Tags | None = None) -> None:
        """Add `count` to a counter."""

    def gauge(self, name: str, value: float, tags: Tags | None = None) -> None:
        """Set a level (lag, backlog)."""

    def timing(self, name: str, ms: float, tags: Tags | None = None) -> None:
        """Record one duration in milliseconds."""


class NullMetrics:
    """The default: reports nothing."""

    def incr(self, name: str, count: int = 1, tags: Tags | None = None) -> None:
        pass

    def gauge(self, name: str, value: float, tags: Tags | None = None) -> None:
        pass

    def timing(self, name: str, ms: float, tags: Tags | None = None) -> None:
        pass


NULL_METRICS: Metrics = NullMetrics()


def metric_name(*parts: str) -> str:
    """`apisync.<part>.<part>...`; characters StatsD cannot carry in one part (`.`, `/`, ...) become `_`."""
    return ".".join((PREFIX, *(_INVALID.sub("_", str(part)) for part in parts)))


class StatsdMetrics:
    """Metrics over a `statsd.StatsClient` (UDP, fire and forget: a lost packet never slows a sync)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def incr(self, name: str, count: int = 1, tags: Tags | None = None) -> None:
        self._safely(self._client.incr, name, count)

    def gauge(self, name: str, value: float, tags: Tags | None = None) -> None:
        self._safely(self._client.gauge, name, value)

    def timing(self, name: str, ms: float, tags: Tags | None = None) -> None:
        self._safely(self._client.timing, name, ms)

    @staticmethod
    def _safely(send: Any, name: str, value: float) -> None:
        try:
            send(name, value)
        except OSError as exc:  # e.g. no route: metrics must never fail the work they describe
            log.debug("metric %s not sent: %s", name, exc)


def _flag(value: str | None) -> bool:
    return str(value or "").strip().lower() in ("true", "1", "yes", "on")


def statsd_target(env: Mapping[str, str]) -> tuple[str, int, str | None] | None:
    """(host, port, prefix) from APISYNC_STATSD_* or, failing that, Airflow's [metrics] statsd_* settings."""
    host = env.get("APISYNC_STATSD_HOST", "").strip()
    if host:
        port = env.get("APISYNC_STATSD_PORT", "").strip() or DEFAULT_STATSD_PORT
        return host, int(port), env.get("APISYNC_STATSD_PREFIX", "").strip() or None
    if _flag(env.get("AIRFLOW__METRICS__STATSD_ON")):
        host = env.get("AIRFLOW__METRICS__STATSD_HOST", "").strip() or "localhost"
        port = env.get("AIRFLOW__METRICS__STATSD_PORT", "").strip() or DEFAULT_STATSD_PORT
        # Airflow's default prefix, so a standalone process reports under the same names as a task.
        return host, int(port), env.get("AIRFLOW__METRICS__STATSD_PREFIX", "airflow").strip() or None
    return None


def metrics_from_env(env: Mapping[str, str] | None = None) -> Metrics:
    """StatsD metrics when configured in the environment, else NULL_METRICS."""
    target = statsd_target(os.environ if env is None else env)
    if target is None:
        return NULL_METRICS
    import statsd

    host, port, prefix = target
    log.info("metrics: StatsD at %s:%d%s", host, port, f" (prefix {prefix})" if prefix else "")
    return StatsdMetrics(statsd.StatsClient(host, port, prefix=prefix))
