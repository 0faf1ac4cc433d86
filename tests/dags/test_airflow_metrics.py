"""AirflowStatsMetrics: apisync's metrics through Airflow's own stats client, configured as Airflow is."""

from __future__ import annotations

import pytest
from airflow.sdk._shared.observability.metrics.base_stats_logger import NoStatsLogger
from airflow.sdk.observability.metrics import stats_utils
from airflow.sdk.observability.stats import Stats

from apisync_airflow.metrics import AirflowStatsMetrics
from devstack.statsd import StatsdListener


@pytest.fixture
def airflow_stats():
    """Leaves Airflow's stats client as it found it (a no-op)."""
    yield Stats
    Stats.initialize(factory=NoStatsLogger, export_legacy_names=False)


def test_metrics_go_to_the_statsd_server_airflow_is_configured_with(monkeypatch, airflow_stats):
    with StatsdListener() as sink:
        monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
        monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", sink.host)
        monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(sink.port))
        monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PREFIX", "airflow")
        # What the task runner does at start (airflow.sdk.execution_time.task_runner.main).
        airflow_stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=True)
        metrics = AirflowStatsMetrics()
        tags = {"job": "backfill", "api": "stripe", "collection": "customer"}
        metrics.incr("apisync.backfill.stripe.customer.records", 100, tags)
        metrics.incr("apisync.backfill.stripe.customer.records", 23, tags)
        metrics.gauge("apisync.backfill.stripe.customer.lag", 4.5, tags)
        metrics.timing("apisync.backfill.stripe.customer.rate_limit_wait", 250.0, tags)
        sink.drain()
    assert sink.counters() == {"airflow.apisync.backfill.stripe.customer.records": 123}
    assert sink.gauges() == {"airflow.apisync.backfill.stripe.customer.lag": 4.5}
    assert sink.timings() == {"airflow.apisync.backfill.stripe.customer.rate_limit_wait": [250.0]}


def test_tags_reach_backends_that_keep_them(airflow_stats):
    seen = []

    class Backend(NoStatsLogger):
        def incr(self, stat, count=1, rate=1, *, tags=None):
            seen.append(("incr", stat, count, tags))

        def gauge(self, stat, value, rate=1, delta=False, *, tags=None):
            seen.append(("gauge", stat, value, tags))

        def timing(self, stat, dt, *, tags=None):
            seen.append(("timing", stat, dt, tags))

    airflow_stats.initialize(factory=Backend, export_legacy_names=False)
    metrics = AirflowStatsMetrics()
    metrics.incr("apisync.normalizer.github.issue.records", 3, {"api": "github", "collection": "issue"})
    metrics.gauge("apisync.normalizer.github.issue.lag", 1.5, {"api": "github", "collection": "issue"})
    metrics.timing("apisync.normalizer.github.batch", 12.0, {"api": "github"})
    assert seen == [("incr", "apisync.normalizer.github.issue.records", 3, {"api": "github", "collection": "issue"}),
                    ("gauge", "apisync.normalizer.github.issue.lag", 1.5, {"api": "github", "collection": "issue"}),
                    ("timing", "apisync.normalizer.github.batch", 12.0, {"api": "github"})]


def test_with_metrics_off_nothing_happens_and_a_broken_backend_never_fails_the_task(airflow_stats):
    AirflowStatsMetrics().incr("apisync.x")  # the default NoStatsLogger

    class Broken:
        @staticmethod
        def incr(*args, **kwargs):
            raise ValueError("backend down")

        gauge = timing = incr

    metrics = AirflowStatsMetrics(Broken)
    metrics.incr("apisync.x", 1, {"api": "stripe"})
    metrics.gauge("apisync.x", 1.0)
    metrics.timing("apisync.x", 1.0)
