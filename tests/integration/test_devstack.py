"""The local stack itself: a real KRaft broker that does transactions, and a real Redis."""

import time
import uuid

import pytest
import redis
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from devstack.errors import StackError
from devstack.process import ensure_port_free, free_port, port_open

pytestmark = pytest.mark.integration


def test_broker_commits_transactions_that_read_committed_consumers_see(kafka_config):
    topic = f"devstack-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(kafka_config)
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(timeout=30)
    producer = Producer({**kafka_config, "transactional.id": topic, "enable.idempotence": True})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"aborted", value=b"1")
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"committed", value=b"2")
    producer.commit_transaction(30)

    consumer = Consumer({**kafka_config, "group.id": topic, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed"})
    consumer.subscribe([topic])
    seen, deadline = [], time.monotonic() + 120  # generous: joining the group is slow on a loaded machine
    while not seen and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            seen.append(message.key())
    consumer.close()
    assert seen == [b"committed"]


def test_broker_rejects_writes_to_undeclared_topics(kafka_config):
    # auto.create.topics.enable=false: every topic must come from the declared contracts.
    metadata = AdminClient(kafka_config).list_topics(topic="never-declared", timeout=10)
    assert metadata.topics["never-declared"].error is not None


def test_redis_answers(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.set("devstack:probe", "ok")
    assert client.get("devstack:probe") == b"ok"


def test_taken_port_gets_a_one_line_error(kafka_bootstrap):
    port = int(kafka_bootstrap.rsplit(":", 1)[1])
    assert port_open(port)
    with pytest.raises(StackError, match=f"port {port} for Kafka is already in use"):
        ensure_port_free(port, "Kafka")
    ensure_port_free(free_port(), "Kafka")  # a free one passes
