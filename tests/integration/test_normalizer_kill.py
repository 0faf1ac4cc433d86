"""SIGKILL the normalizer mid-batch (fence advanced, transaction open) and restart: nothing lost, nothing reordered."""

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
import redis
from sync_helpers import settled_read

from apisync.kafka.admin import admin_client, ensure
from apisync.kafka.producer import Producer, TransactionError
from apisync.kafka.topics import Layout, TopicSpec, api_topics
from apisync.normalizer import open_normalizer
from apisync.registry import rule_event_types

pytestmark = pytest.mark.integration

BASE_MS = 1_795_704_812_000
ROOT = Path(__file__).resolve().parents[2]
PATIENCE_S = 180.0  # only a stuck run waits this long, however loaded the machine is

# The worker: a real normalizer whose 2nd commit stalls after its records and events were produced
# into the open transaction (and the fence advanced), long enough to be killed there.
WORKER = """
import sys, time, orjson, redis
from apisync.normalizer import open_normalizer
cfg, url, ns, ledger, marker = orjson.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
worker = open_normalizer("stripe", cfg, redis.Redis.from_url(url), namespace=ns, ledger_prefix=ledger,
                         batch_size=15, poll_timeout=0.5)
send_offsets, calls = worker._producer.send_offsets_to_transaction, []
def stalled(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
        open(marker, "w").write("in the middle of batch 2")
        time.sleep(60)
    return send_offsets(*args, **kwargs)
worker._producer.send_offsets_to_transaction = stalled
worker.run(max_seconds=300)
"""


def test_sigkill_mid_batch_then_restart_loses_nothing(kafka_config, redis_url, tmp_path):
    client = redis.Redis.from_url(redis_url)
    ns, ledger = f"t{uuid.uuid4().hex[:8]}.", f"test:ledger:{uuid.uuid4().hex}"
    specs = [TopicSpec(ns + s.name, s.partitions, s.replication_factor, s.config)
             for s in api_topics("stripe", Layout(partitions=2), rule_event_types("stripe"))]
    ensure(admin_client(kafka_config), specs)
    truth, items = {}, []
    for n in range(10):
        for rev in range(6):
            key, version = f"stripe.customer.cus_{n}", BASE_MS + rev * 1000
            data = {"id": f"cus_{n}", "object": "customer", "rev": rev}
            truth[key] = (version, data)
            items.append((key, {"key": key, "api": "stripe", "collection": "customer", "id": f"cus_{n}",
                                "version": version, "source": "poll", "synced_at": "", "data": data}))
    random.Random(3).shuffle(items)
    producer = Producer(kafka_config)
    for key, value in items:
        producer.produce(f"{ns}stripe.changes", key, value)
    producer.flush()

    marker = tmp_path / "marker"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include")}
    worker = subprocess.Popen([sys.executable, "-c", WORKER, orjson.dumps(kafka_config), redis_url, ns, ledger,
                               str(marker)], env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + PATIENCE_S
        while not marker.exists() and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), "the worker never reached its second commit"
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    assert client.keys(f"{ledger}:*"), "the fence should have advanced before the kill"

    # restart: same transactional.id and group instance, so the open transaction is aborted
    normalizer = open_normalizer("stripe", kafka_config, client, namespace=ns, ledger_prefix=ledger,
                                 batch_size=15, poll_timeout=0.5)
    try:
        deadline = time.monotonic() + PATIENCE_S
        while _committed_position(normalizer) < len(items) and time.monotonic() < deadline:
            normalizer.run(max_seconds=1.0)
    finally:
        normalizer.close()

    history = defaultdict(list)
    for msg in settled_read(kafka_config, f"{ns}stripe.records"):
        history[msg.key().decode()].append(orjson.loads(msg.value()))
    assert {k: (h[-1]["version"], h[-1]["data"]) for k, h in history.items()} == truth
    for key, values in history.items():
        versions = [v["version"] for v in values]
        assert versions == sorted(versions), f"{key} went backwards after the restart: {versions}"
    events = [orjson.loads(m.value()) for m in settled_read(kafka_config, f"{ns}stripe.events")]
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids))
    assert sorted(e["key"] for e in events if e["type"] == "created") == sorted(truth)


def _committed_position(normalizer) -> int:
    """How many input messages the group has committed so far."""
    consumer = normalizer._consumer
    assigned = consumer.assignment()
    return sum(max(tp.offset, 0) for tp in consumer.committed(assigned, timeout=10)) if assigned else 0


def test_an_aborted_batch_is_re_read_in_process_and_emitted_once(kafka_config, redis_url):
    client = redis.Redis.from_url(redis_url)
    ns, ledger = f"t{uuid.uuid4().hex[:8]}.", f"test:ledger:{uuid.uuid4().hex}"
    specs = [TopicSpec(ns + s.name, s.partitions, s.replication_factor, s.config)
             for s in api_topics("stripe", Layout(partitions=2), rule_event_types("stripe"))]
    ensure(admin_client(kafka_config), specs)
    producer = Producer(kafka_config)
    for rev in range(4):
        key = "stripe.subscription.sub_x"
        producer.produce(f"{ns}stripe.changes", key, {
            "key": key, "api": "stripe", "collection": "subscription", "id": "sub_x", "version": BASE_MS + rev,
            "source": "poll", "data": {"id": "sub_x", "status": ["trialing", "active", "canceled", "active"][rev]}})
    producer.flush()
    normalizer = open_normalizer("stripe", kafka_config, client, namespace=ns, ledger_prefix=ledger,
                                 batch_size=2, poll_timeout=0.5)
    send_offsets, calls = normalizer._producer.send_offsets_to_transaction, []

    def fails_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second batch: records and events already sent into the transaction
            raise TransactionError("injected: coordinator went away")
        return send_offsets(*args, **kwargs)

    normalizer._producer.send_offsets_to_transaction = fails_once
    try:
        # How the 4 messages fall into batches depends on what each fetch returned: count across runs.
        consumed, deadline = normalizer.run(max_seconds=15, max_batches=2).consumed, time.monotonic() + PATIENCE_S
        while consumed < 4 and time.monotonic() < deadline:
            consumed += normalizer.run(max_seconds=2).consumed
    finally:
        normalizer.close()
    assert len(calls) >= 3  # batch 1, the failed batch 2, its retry
    events = [orjson.loads(m.value()) for m in settled_read(kafka_config, f"{ns}stripe.events")]
    assert [(e["type"], e["version"] - BASE_MS) for e in events] == [
        ("created", 0), ("updated", 1), ("status_changed", 1), ("updated", 2), ("status_changed", 2),
        ("updated", 3), ("status_changed", 3)]
    assert events[3]["changes"] == {"status": ["active", "canceled"]}
