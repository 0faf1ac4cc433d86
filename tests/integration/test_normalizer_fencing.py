"""One writer per partition: a zombie normalizer is fenced, and both input topics are co-assigned."""

import time
import uuid

import orjson
import pytest
import redis
from confluent_kafka import Consumer, KafkaException
from sync_helpers import settled_read

from apisync.kafka.admin import admin_client, ensure
from apisync.kafka.normalizer_clients import consumer_config
from apisync.kafka.producer import Producer, TransactionError
from apisync.kafka.topics import Layout, TopicSpec, api_topics
from apisync.normalizer import open_normalizer
from apisync.registry import rule_event_types

pytestmark = pytest.mark.integration

BASE_MS = 1_795_704_812_000
PATIENCE_S = 180.0  # only a stuck run waits this long, however loaded the machine is


def namespace(kafka_config, partitions=3):
    ns = f"t{uuid.uuid4().hex[:8]}."
    specs = [TopicSpec(ns + s.name, s.partitions, s.replication_factor, s.config)
             for s in api_topics("stripe", Layout(partitions=partitions), rule_event_types("stripe"))]
    ensure(admin_client(kafka_config), specs)
    return ns


def test_a_zombie_with_a_batch_in_hand_is_fenced_and_its_fence_writes_roll_back(kafka_config, redis_url):
    ns, ledger = namespace(kafka_config), f"test:ledger:{uuid.uuid4().hex}"
    client = redis.Redis.from_url(redis_url)
    producer = Producer(kafka_config)
    for n in range(6):
        key = f"stripe.customer.cus_{n}"
        producer.produce(f"{ns}stripe.changes", key, {"key": key, "api": "stripe", "collection": "customer",
                                                      "id": f"cus_{n}", "version": BASE_MS, "source": "poll",
                                                      "data": {"id": f"cus_{n}"}})
    producer.flush()
    zombie = open_normalizer("stripe", kafka_config, client, namespace=ns, ledger_prefix=ledger)
    batch, deadline = [], time.monotonic() + PATIENCE_S
    while len(batch) < 6 and time.monotonic() < deadline:
        batch += [m for m in zombie._consumer.consume(10, 0.5) if m.error() is None]
    assert len(batch) == 6
    # a successor with the same identity starts while the zombie still holds its batch
    successor = open_normalizer("stripe", kafka_config, client, namespace=ns, ledger_prefix=ledger,
                                poll_timeout=0.5)
    try:
        with pytest.raises(TransactionError):
            zombie.process(batch)  # the fence advanced, but the transaction cannot commit
    finally:
        try:
            zombie.close()
        except KafkaException:
            pass  # a fenced static member may not leave cleanly
    consumed, deadline = 0, time.monotonic() + PATIENCE_S
    try:
        while consumed < 6 and time.monotonic() < deadline:
            consumed += successor.run(max_seconds=1.0).consumed
    finally:
        successor.close()
    events = [orjson.loads(m.value()) for m in settled_read(kafka_config, f"{ns}stripe.events")]
    assert sorted((e["key"], e["type"]) for e in events) == [(f"stripe.customer.cus_{n}", "created")
                                                            for n in range(6)]
    assert len(settled_read(kafka_config, f"{ns}stripe.records")) == 6


def test_range_assignment_keeps_partition_n_of_both_inputs_on_one_member(kafka_config):
    ns = namespace(kafka_config, partitions=4)
    members = [Consumer(consumer_config("stripe", kafka_config, str(i), ns)) for i in range(2)]
    try:
        for member in members:
            member.subscribe([f"{ns}stripe.changes", f"{ns}stripe.webhooks"])
        deadline = time.monotonic() + PATIENCE_S
        while time.monotonic() < deadline:
            for member in members:
                member.poll(0.2)
            owned = [{(tp.topic, tp.partition) for tp in m.assignment()} for m in members]
            if all(owned) and sum(len(o) for o in owned) == 8:
                break
        assert sum(len(o) for o in owned) == 8, f"group did not settle: {owned}"
        for mine in owned:
            changes = {p for t, p in mine if t.endswith(".changes")}
            webhooks = {p for t, p in mine if t.endswith(".webhooks")}
            assert changes == webhooks and changes
    finally:
        for member in members:
            member.close()
