"""The library's metrics: names, the StatsD backend from the environment, and what each component reports."""

from __future__ import annotations

import pytest

from apisync.metrics import NULL_METRICS, StatsdMetrics, metric_name, metrics_from_env, statsd_target
from apisync.normalizer import NormalizerMetrics
from apisync.normalizer.batch import _Batch
from apisync.sync.progress import RunSummary
from apisync.sync.runner import PageMetrics
from devstack.statsd import StatsdListener


class RecordingMetrics:
    """Every call as (kind, name, value, tags)."""

    def __init__(self):
        self.calls: list[tuple[str, str, float, dict | None]] = []

    def incr(self, name, count=1, tags=None):
        self.calls.append(("incr", name, count, tags))

    def gauge(self, name, value, tags=None):
        self.calls.append(("gauge", name, value, tags))

    def timing(self, name, ms, tags=None):
        self.calls.append(("timing", name, ms, tags))

    def named(self, name):
        return [(kind, value) for kind, n, value, _tags in self.calls if n == name]


def test_metric_names_are_dotted_and_safe_for_statsd():
    assert metric_name("backfill", "stripe", "customer", "records") == "apisync.backfill.stripe.customer.records"
    # a dot or a colon inside one part would split or break the StatsD line
    assert metric_name("x", "a.b/c:d|e") == "apisync.x.a_b_c_d_e"


@pytest.mark.parametrize("env, target", [
    ({}, None),
    ({"APISYNC_STATSD_HOST": "127.0.0.1"}, ("127.0.0.1", 8125, None)),
    ({"APISYNC_STATSD_HOST": "stats", "APISYNC_STATSD_PORT": "9125", "APISYNC_STATSD_PREFIX": "prod"},
     ("stats", 9125, "prod")),
    ({"AIRFLOW__METRICS__STATSD_HOST": "stats"}, None),  # Airflow's own switch is off
    ({"AIRFLOW__METRICS__STATSD_ON": "True", "AIRFLOW__METRICS__STATSD_HOST": "stats",
      "AIRFLOW__METRICS__STATSD_PORT": "9125"}, ("stats", 9125, "airflow")),  # the same names as Airflow's tasks
    ({"AIRFLOW__METRICS__STATSD_ON": "true", "AIRFLOW__METRICS__STATSD_PREFIX": "af"}, ("localhost", 8125, "af")),
    ({"APISYNC_STATSD_HOST": "mine", "AIRFLOW__METRICS__STATSD_ON": "True"}, ("mine", 8125, None)),
])
def test_statsd_target_from_the_environment(env, target):
    assert statsd_target(env) == target


def test_without_statsd_settings_nothing_is_sent():
    assert metrics_from_env({}) is NULL_METRICS


def test_statsd_metrics_reach_a_statsd_server():
    with StatsdListener() as sink:
        metrics = metrics_from_env({"APISYNC_STATSD_HOST": sink.host, "APISYNC_STATSD_PORT": str(sink.port)})
        metrics.incr("apisync.normalizer.stripe.consumed", 7, {"api": "stripe"})
        metrics.gauge("apisync.normalizer.stripe.customer.lag", 2.5)
        metrics.timing("apisync.ratelimit.stripe.backfill.wait", 40.0)
        sink.drain()
        assert sink.counters() == {"apisync.normalizer.stripe.consumed": 7}
        assert sink.gauges() == {"apisync.normalizer.stripe.customer.lag": 2.5}
        assert sink.timings() == {"apisync.ratelimit.stripe.backfill.wait": [40.0]}


def test_a_failing_statsd_send_never_fails_the_caller():
    class Broken:
        def incr(self, *args):
            raise OSError("network unreachable")

        gauge = timing = incr

    metrics = StatsdMetrics(Broken())
    metrics.incr("a")
    metrics.gauge("a", 1)
    metrics.timing("a", 1)


def test_page_metrics_count_pages_records_deletes_and_the_wait_since_the_previous_page():
    metrics = RecordingMetrics()
    pages = PageMetrics(metrics, RunSummary("github", "issue", "incremental"))
    pages.page(records=100, deletes=0, waited_s=0.25, lag_s=30.0)
    pages.page(records=40, deletes=2, waited_s=1.0, lag_s=None)
    stem = "apisync.incremental.github.issue"
    assert metrics.named(f"{stem}.pages") == [("incr", 1), ("incr", 1)]
    assert metrics.named(f"{stem}.records") == [("incr", 100), ("incr", 40)]
    assert metrics.named(f"{stem}.deletes") == [("incr", 2)]
    assert metrics.named(f"{stem}.rate_limit_wait") == [("timing", 250.0), ("timing", 750.0)]
    assert metrics.named(f"{stem}.lag") == [("gauge", 30.0)]
    assert metrics.calls[0][3] == {"job": "incremental", "api": "github", "collection": "issue"}


def test_normalizer_metrics_per_committed_batch():
    from apisync.events import Observation

    def obs(collection, synced_at):
        return Observation("stripe", collection, "x", 1, "backfill", synced_at, {})

    batch = _Batch("a1", {}, dead=1)
    batch.count(obs("customer", "2026-11-29T10:00:05.000Z"), 2)
    batch.count(obs("customer", "2026-11-29T10:00:01.000Z"), 1)
    batch.count(obs("invoice", "2026-11-29T10:00:09.000Z"), 0)
    metrics = RecordingMetrics()
    now = 1_795_946_410.0  # 2026-11-29T10:00:10Z
    NormalizerMetrics(metrics, "stripe", clock=lambda: now).committed(batch, consumed=4, ms=12.5)
    assert metrics.named("apisync.normalizer.stripe.consumed") == [("incr", 4)]
    assert metrics.named("apisync.normalizer.stripe.batches") == [("incr", 1)]
    assert metrics.named("apisync.normalizer.stripe.dlq") == [("incr", 1)]
    assert metrics.named("apisync.normalizer.stripe.batch") == [("timing", 12.5)]
    assert metrics.named("apisync.normalizer.stripe.customer.records") == [("incr", 2)]
    assert metrics.named("apisync.normalizer.stripe.customer.events") == [("incr", 3)]
    assert metrics.named("apisync.normalizer.stripe.customer.lag") == [("gauge", 9.0)]  # the oldest observation
    assert metrics.named("apisync.normalizer.stripe.invoice.records") == [("incr", 1)]
    assert metrics.named("apisync.normalizer.stripe.invoice.events") == []

