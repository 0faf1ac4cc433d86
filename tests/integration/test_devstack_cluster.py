"""The three-broker KRaft mode: acks=all writes survive losing a broker (replication factor 3, min ISR 2)."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from apisync.kafka.producer import Producer
from apisync.kafka.reader import read_topic
from devstack.kafka import KafkaCluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = KafkaCluster(tmp_path_factory.mktemp("cluster"), size=3, heap="384m").start(timeout=180)
    yield cluster
    cluster.stop()


def test_writes_survive_a_killed_broker(cluster):
    config = {"bootstrap.servers": cluster.bootstrap}
    admin = AdminClient(config)
    admin.create_topics([NewTopic("replicated", 3, 3, config={"min.insync.replicas": "2"})])["replicated"].result(60)
    before = Producer(config)
    for i in range(50):
        before.produce("replicated", f"key-{i}", {"n": i})
    before.flush()

    cluster.stop_node(2, kill=True)  # SIGKILL: no clean shutdown, no leadership hand-over
    after = Producer(config)
    for i in range(50, 100):
        after.produce("replicated", f"key-{i}", {"n": i})
    after.flush(timeout=120)  # raises if any message was not acknowledged by the in-sync replicas

    values = sorted(int(m.key().decode().split("-")[1]) for m in read_topic(config, "replicated", timeout=60))
    assert values == list(range(100))
    cluster.start_node(2)  # and the node comes back into the cluster
