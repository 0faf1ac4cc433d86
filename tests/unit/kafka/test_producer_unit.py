"""Producer behaviour with an injected client standing in for librdkafka (no broker)."""

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException

from apisync.kafka.producer import (
    DeliveryError,
    Outgoing,
    Producer,
    ProducerConfigError,
    TransactionError,
    producer_config,
    redacted,
)

BOOT = {"bootstrap.servers": "127.0.0.1:9092"}


class Delivered:
    def __init__(self, topic, key, value, headers):
        self._t, self._k, self._v, self._h = topic, key, value, headers

    def topic(self): return self._t
    def key(self): return self._k
    def value(self): return self._v
    def headers(self): return self._h
    def partition(self): return 0


class FakeClient:
    """Queues messages; flush() reports each as delivered unless its topic is in `reject`."""

    def __init__(self, conf):
        self.conf, self.queue, self.log, self.reject = conf, [], [], {}
        self.full_for = 0  # how many produce calls raise BufferError first

    # confluent-kafka's order: apisync passes value and key positionally
    def produce(self, topic, value=None, key=None, partition=-1, on_delivery=None, timestamp=0, headers=None):
        if self.full_for:
            self.full_for -= 1
            raise BufferError("Local: Queue full")
        self.queue.append((topic, key, value, headers, on_delivery))

    def poll(self, timeout=0):
        self.log.append(("poll", timeout))
        return 0

    def flush(self, timeout=None):
        for topic, key, value, headers, callback in self.queue:
            callback = callback or self.conf["on_delivery"]  # the client-wide delivery callback
            err = KafkaError(self.reject[topic], "Broker: Invalid record") if topic in self.reject else None
            callback(err, Delivered(topic, key, value, headers))
            if err is None:
                self.log.append(("delivered", topic, key, value, headers))
        self.queue = []
        return 0

    def init_transactions(self, timeout): self.log.append("init")
    def begin_transaction(self):
        self.log.append("begin")
        self.txn_start = len(self.log)
    def commit_transaction(self, timeout): self.log.append("commit")
    def abort_transaction(self, timeout):
        self.queue = []  # librdkafka purges what the aborted transaction had queued
        # what it had delivered stays in the log as aborted records, invisible to read_committed consumers
        self.log[self.txn_start:] = [("aborted", *e[1:]) if e[0] == "delivered" else e
                                     for e in self.log[self.txn_start:]]
        self.log.append("abort")

    def __len__(self): return len(self.queue)


def make(config=None, **kwargs):
    holder = {}

    def factory(conf):
        holder["client"] = FakeClient(conf)
        return holder["client"]
    producer = Producer({**BOOT, **(config or {})}, client_factory=factory, **kwargs)
    return producer, holder["client"]


def delivered(client):
    return [entry[1:] for entry in client.log if entry[0] == "delivered"]


def test_config_enforces_safety_and_keeps_caller_settings():
    conf = producer_config({**BOOT, "linger.ms": 5, "acks": "-1", "enable.idempotence": "true"})
    assert (conf["enable.idempotence"], conf["acks"], conf["partitioner"]) == ("true", "all", "murmur2_random")
    assert (conf["linger.ms"], conf["compression.type"]) == (5, "lz4")


def test_only_a_transactional_producer_skips_success_reports():
    # its commit fails if any message failed; the webhook receiver's plain producer needs every report
    assert producer_config({**BOOT, "transactional.id": "t"})["delivery.report.only.error"] is True
    assert "delivery.report.only.error" not in producer_config(BOOT)
    assert producer_config({**BOOT, "transactional.id": "t", "delivery.report.only.error": False})[
        "delivery.report.only.error"] is False


@pytest.mark.parametrize(("config", "message"), [
    ({}, "no 'bootstrap.servers'"),
    ({**BOOT, "acks": "1"}, "'acks' must be 'all'"),
    ({**BOOT, "enable.idempotence": False}, "'enable.idempotence'"),
    ({**BOOT, "partitioner": "consistent_random"}, "'partitioner' must be 'murmur2_random'"),
])
def test_unusable_configs_are_rejected(config, message):
    with pytest.raises(ProducerConfigError, match=message):
        producer_config(config)


def test_secrets_never_appear_in_errors_or_redacted_config():
    secret = {**BOOT, "sasl.password": "hunter2", "sasl.oauthbearer.client.secret": "s3cr3t", "acks": "0"}
    with pytest.raises(ProducerConfigError) as caught:
        producer_config(secret)
    assert "hunter2" not in str(caught.value) and "s3cr3t" not in str(caught.value)
    assert redacted(secret) == {**BOOT, "sasl.password": "***", "sasl.oauthbearer.client.secret": "***", "acks": "0"}


def test_values_are_serialized_and_bytes_pass_through():
    producer, client = make()
    producer.produce("t.a", "k1", {"b": [1, 2]}, headers={"h": "v"})
    producer.produce("t.a", b"k2", b"\xffraw")
    producer.send(Outgoing("t.a", "k3", None))
    producer.flush()
    assert delivered(client) == [("t.a", b"k1", orjson.dumps({"b": [1, 2]}), [("h", "v")]),
                                 ("t.a", b"k2", b"\xffraw", None), ("t.a", b"k3", None, None)]


def test_failed_deliveries_raise_once_at_flush_naming_topic_key_and_reason():
    producer, client = make()
    client.reject = {"t.bad": KafkaError.INVALID_RECORD}
    producer.produce("t.ok", "fine", {})
    producer.produce("t.bad", "k-1", {})
    producer.produce("t.bad", "k-2", {})
    with pytest.raises(DeliveryError, match=r"topic t.bad failed for key 'k-1': Broker: Invalid record \(and 1 more\)"):
        producer.flush()
    producer.flush()  # reported once, not again
    assert delivered(client) == [("t.ok", b"fine", b"{}", None)]


def test_full_queue_is_drained_by_polling_then_the_message_is_queued():
    producer, client = make()
    client.full_for = 3
    producer.produce("t.a", "k", {"n": 1})
    producer.flush()
    assert [entry for entry in client.log if entry[0] == "poll"][:3] == [("poll", 0.1)] * 3
    assert delivered(client) == [("t.a", b"k", b'{"n":1}', None)]


def test_a_reported_produce_that_may_not_wait_raises_buffer_error_at_once_on_a_full_queue():
    producer, client = make()
    reports = []
    client.full_for = 1
    with pytest.raises(BufferError):
        producer.produce_reported("t.a", "k", b"v", None, reports.append, wait_for_room=False)
    assert client.queue == [] and not [entry for entry in client.log if entry[0] == "poll"]
    producer.produce_reported("t.a", "k", b"v", None, reports.append, wait_for_room=False)
    producer.flush()
    assert reports == [None]


def test_encoded_messages_go_out_as_produce_sends_them_and_a_full_queue_is_waited_out():
    producer, client = make()
    producer.produce("t.a", "k1", b"v1", headers=[("h", b"1")])
    client.full_for = 2
    producer.send_encoded([("t.a", b"k2", b"v2", [("h", b"2")]), ("t.b", b"k2", None, None)])
    client.reject = {"t.b": KafkaError.INVALID_RECORD}
    with pytest.raises(DeliveryError, match="topic t.b failed for key 'k2'"):
        producer.flush()
    assert delivered(client) == [("t.a", b"k1", b"v1", [("h", b"1")]), ("t.a", b"k2", b"v2", [("h", b"2")])]
    assert [entry for entry in client.log if entry[0] == "poll"] == [("poll", 0.1)]  # the second try waited


def test_queue_full_for_too_long_is_an_error():
    ticks = iter(range(0, 1000, 10))
    producer, client = make(clock=lambda: next(ticks), queue_full_timeout=25)
    client.full_for = 100
    with pytest.raises(DeliveryError, match="queue stayed full for 25s"):
        producer.produce("t.a", "k", {})


def test_transaction_commits_after_checking_deliveries():
    producer, client = make({"transactional.id": "apisync.stripe.backfill.customer"})
    with producer.transaction():
        producer.produce("t.a", "k", {})
    assert [e for e in client.log if isinstance(e, str)] == ["init", "begin", "commit"]
    assert delivered(client) == [("t.a", b"k", b"{}", None)]


def test_transaction_aborts_on_error_in_block_and_on_failed_delivery():
    producer, client = make({"transactional.id": "tx"})
    with pytest.raises(RuntimeError, match="boom"), producer.transaction():
        producer.produce("t.a", "lost", {})
        raise RuntimeError("boom")
    client.reject = {"t.bad": KafkaError.INVALID_RECORD}
    with pytest.raises(DeliveryError, match="t.bad"), producer.transaction():
        producer.produce("t.bad", "k", {})
    assert [e for e in client.log if isinstance(e, str)] == ["init", "begin", "abort", "begin", "abort"]
    assert delivered(client) == []
    # an abort delivers what is in flight first (librdkafka#4849: an abort racing AddPartitionsToTxn is fatal)
    assert [e[1:3] for e in client.log if e[0] == "aborted"] == [("t.a", b"lost")]


def test_commit_failure_surfaces_as_transaction_error_and_aborts():
    producer, client = make({"transactional.id": "tx"})

    def fenced(timeout):
        raise KafkaException(KafkaError(KafkaError._FENCED, "This instance has been fenced", fatal=True))
    client.commit_transaction = fenced
    fenced_msg = r"'tx'.*fenced: another worker now owns this transactional.id"
    with pytest.raises(TransactionError, match=fenced_msg), producer.transaction():
        producer.produce("t.a", "k", {})
    assert [e for e in client.log if isinstance(e, str)] == ["init", "begin", "abort"]


def test_transaction_needs_a_transactional_id():
    producer, _ = make()
    with pytest.raises(ProducerConfigError, match="transactional.id"), producer.transaction():
        pass
