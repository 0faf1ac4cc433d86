"""The producer on a real broker: payloads arrive intact, failures surface at flush, transactions are atomic."""

import uuid

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from sync_helpers import settled_read

from apisync.kafka.partitioning import partition_for
from apisync.kafka.producer import DeliveryError, Producer, TransactionError
from apisync.kafka.reader import read_topic

pytestmark = pytest.mark.integration


@pytest.fixture
def make_topic(kafka_config):
    admin = AdminClient(kafka_config)

    def make(partitions=3, **config):
        name = f"producer.{uuid.uuid4().hex[:10]}"
        admin.create_topics([NewTopic(name, partitions, 1, config=config)])[name].result(timeout=30)
        return name
    return make


def test_values_keys_and_headers_arrive_as_sent(kafka_config, make_topic):
    topic = make_topic(partitions=6)
    producer = Producer(kafka_config)
    producer.produce(topic, "stripe.customer.cus_1", {"id": "cus_1", "n": 1}, headers={"source": "poll"})
    producer.produce(topic, b"stripe.customer.cus_2", b"\x00raw bytes", headers=[("sig", b"\x01\x02")])
    producer.produce(topic, "stripe.customer.cus_3", None)
    producer.flush()

    got = {m.key().decode(): (m.value(), m.headers(), m.partition()) for m in settled_read(kafka_config, topic)}
    assert got == {
        "stripe.customer.cus_1": (orjson.dumps({"id": "cus_1", "n": 1}), [("source", b"poll")],
                                  partition_for("stripe.customer.cus_1", 6)),
        "stripe.customer.cus_2": (b"\x00raw bytes", [("sig", b"\x01\x02")], partition_for("stripe.customer.cus_2", 6)),
        "stripe.customer.cus_3": (None, None, partition_for("stripe.customer.cus_3", 6)),
    }


def test_broker_rejection_raises_at_flush_with_topic_key_and_reason_but_no_secret(kafka_config, make_topic):
    topic = make_topic(partitions=1, **{"cleanup.policy": "compact"})
    # A secret in the config must never reach an error message (the setting is unused on PLAINTEXT).
    producer = Producer({**kafka_config, "sasl.password": "hunter2-secret"})
    producer.produce(topic, "ok.key", {"fine": True})
    # Flushed apart: the broker rejects a whole batch, and a shared one would fail the good key too.
    producer.flush()
    producer.produce(topic, None, {"compacted topics reject": "null keys"})

    with pytest.raises(DeliveryError) as caught:
        producer.flush()

    message = str(caught.value)
    assert message.startswith(f"delivery to topic {topic} failed for key 'None': ")
    assert "hunter2" not in message and "hunter2" not in repr(producer)
    producer.flush()  # the failure was reported once; nothing is left over
    assert [m.key() for m in read_topic(kafka_config, topic)] == [b"ok.key"]


def test_transaction_commits_all_or_nothing(kafka_config, make_topic):
    topic = make_topic()
    producer = Producer({**kafka_config, "transactional.id": f"test.{topic}"})
    with producer.transaction():
        producer.produce(topic, "a", {"page": 1})
        producer.produce(topic, "b", {"page": 1})
    with pytest.raises(RuntimeError, match="mid-page"), producer.transaction():
        producer.produce(topic, "c", {"page": 2})
        producer.flush()  # delivered to the log, yet must stay invisible
        raise RuntimeError("crash mid-page")
    with producer.transaction():
        producer.produce(topic, "d", {"page": 3})

    seen = sorted((m.key(), orjson.loads(m.value())["page"]) for m in settled_read(kafka_config, topic))
    assert seen == [(b"a", 1), (b"b", 1), (b"d", 3)]
    uncommitted = {m.key() for m in read_topic(kafka_config, topic, isolation="read_uncommitted")}
    assert b"c" in uncommitted  # proves the aborted message really reached the broker


def test_second_worker_with_same_transactional_id_fences_the_zombie(kafka_config, make_topic):
    topic = make_topic()
    zombie = Producer({**kafka_config, "transactional.id": f"test.{topic}"})
    Producer({**kafka_config, "transactional.id": f"test.{topic}"})  # the restarted worker

    with pytest.raises(TransactionError, match="fenced"), zombie.transaction():
        zombie.produce(topic, "late", {"from": "zombie"})

    assert settled_read(kafka_config, topic) == []


def test_consumed_offsets_commit_with_the_transaction_or_not_at_all(kafka_config, make_topic):
    source, sink = make_topic(partitions=1), make_topic(partitions=1)
    seed = Producer(kafka_config)
    for n in range(4):
        seed.produce(source, f"k{n}", {"n": n})
    seed.flush()
    group = f"group.{source}"
    consumer = Consumer({**kafka_config, "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    consumer.assign([TopicPartition(source, 0, 0)])
    batch = [consumer.poll(10) for _ in range(2)]
    assert [m.key() for m in batch] == [b"k0", b"k1"]
    writer = Producer({**kafka_config, "transactional.id": f"test.{sink}"})

    def copy(messages):
        for m in messages:
            writer.produce(sink, m.key(), m.value())
        writer.send_offsets_to_transaction([TopicPartition(source, 0, messages[-1].offset() + 1)],
                                           consumer.consumer_group_metadata())

    with pytest.raises(RuntimeError), writer.transaction():
        copy(batch)
        raise RuntimeError("crash before commit")
    assert consumer.committed([TopicPartition(source, 0)], timeout=10)[0].offset < 0  # nothing committed
    with writer.transaction():
        copy(batch)

    assert consumer.committed([TopicPartition(source, 0)], timeout=10)[0].offset == 2
    assert [m.key() for m in settled_read(kafka_config, sink)] == [b"k0", b"k1"]
    consumer.close()
