"""Metrics end to end: a real backfill and the normalizer CLI report to a StatsD server (a UDP socket here),
and every count equals what actually landed in Kafka."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from sync_helpers import changes, settings_for, settled_read

from apisync.metrics import metrics_from_env
from apisync.sync import run_backfill
from devstack.statsd import StatsdListener

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ("customer", "invoice")


def test_backfill_and_normalizer_metrics_equal_what_kafka_holds(clean_slate, kafka_config, redis_url, simulator_url):
    clean_slate(seed=23, objects=120)
    with StatsdListener() as sink:
        statsd_env = {"APISYNC_STATSD_HOST": sink.host, "APISYNC_STATSD_PORT": str(sink.port)}
        # A small budget (5 requests/s, burst 1) so the run waits on the rate limiter and reports it.
        settings = settings_for("stripe", kafka_config, redis_url, simulator_url, rate=5)
        settings = type(settings)(settings.kafka, settings.redis_url,
                                  type(settings.api)(**{**_fields(settings.api), "burst": 1}))
        summaries = {c: run_backfill(settings, c, metrics=metrics_from_env(statsd_env)) for c in COLLECTIONS}
        observed = Counter(o["collection"] for o in changes(kafka_config, "stripe"))
        _produce_garbage(kafka_config)  # one dead letter for the normalizer to count
        out = _normalize_cli(kafka_config, redis_url, statsd_env)
        sink.drain()
        counters, gauges, timings = sink.counters(), sink.gauges(), sink.timings()

    records = Counter(orjson.loads(m.value())["collection"] for m in settled_read(kafka_config, "stripe.records"))
    events = Counter(orjson.loads(m.value())["record"]["collection"]
                     for m in settled_read(kafka_config, "stripe.events"))
    for c in COLLECTIONS:
        stem = f"apisync.backfill.stripe.{c}"
        assert counters[f"{stem}.records"] == summaries[c].records == observed[c] > 0
        assert counters[f"{stem}.pages"] == summaries[c].pages
        assert gauges[f"{stem}.lag"] >= 0
        waited_ms = sum(timings[f"{stem}.rate_limit_wait"])
        assert waited_ms == pytest.approx(summaries[c].rate_limit_wait_s * 1000, abs=1)
        assert counters[f"apisync.normalizer.stripe.{c}.records"] == records[c] == observed[c]
        assert counters[f"apisync.normalizer.stripe.{c}.events"] == events[c] > 0
        assert 0 <= gauges[f"apisync.normalizer.stripe.{c}.lag"] < 600
    assert counters["apisync.ratelimit.stripe.backfill.waits"] > 0
    assert sum(timings["apisync.ratelimit.stripe.backfill.wait"]) > 0
    assert counters["apisync.ratelimit.stripe.backfill.granted"] >= sum(s.pages for s in summaries.values())
    assert counters["apisync.normalizer.stripe.consumed"] == sum(observed.values()) + 1
    assert counters["apisync.normalizer.stripe.dlq"] == 1
    assert len(settled_read(kafka_config, "stripe.dlq")) == 1
    assert counters["apisync.normalizer.stripe.batches"] >= 1
    assert f"consumed={sum(observed.values()) + 1}" in out  # the CLI's own summary agrees


def _fields(api) -> dict:
    return {name: getattr(api, name) for name in api.__slots__}


def _produce_garbage(kafka_config: dict) -> None:
    producer = Producer(kafka_config)
    producer.produce("stripe.changes", key=b"stripe.customer.cus_garbage", value=b"not json")
    assert producer.flush(30) == 0


def _normalize_cli(kafka_config: dict, redis_url: str, statsd_env: dict) -> str:
    """`python -m apisync normalize stripe --until-idle` (an asset-triggered run), configured like a deployment:
    env only. Until idle, not for a fixed time: a loaded machine may need long to start and join the group."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APISYNC_", "AIRFLOW__METRICS__"))}
    env.update(PYTHONPATH=str(ROOT / "include"), APISYNC_KAFKA_BOOTSTRAP=kafka_config["bootstrap.servers"],
               APISYNC_REDIS_URL=redis_url, **statsd_env)
    done = subprocess.run([sys.executable, "-m", "apisync", "normalize", "stripe", "--until-idle"],
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
