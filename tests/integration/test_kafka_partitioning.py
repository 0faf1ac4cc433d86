"""Guarantee 4: our producer puts every key on the partition Java's client would, and our murmur2 is Java's."""

import random
import subprocess
import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from apisync.kafka.partitioning import murmur2, partition_for
from apisync.kafka.producer import Producer
from devstack.kafka import libs_dir

pytestmark = pytest.mark.integration

PARTITIONS = 12
# Calls the real org.apache.kafka.common.utils.Utils from the broker's kafka-clients jar.
JAVA = """
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.apache.kafka.common.utils.Utils;

public class Murmur {
    public static void main(String[] args) throws Exception {
        int partitions = Integer.parseInt(args[1]);
        StringBuilder out = new StringBuilder();
        for (String line : Files.readAllLines(Path.of(args[0]), StandardCharsets.UTF_8)) {
            int hash = Utils.murmur2(line.getBytes(StandardCharsets.UTF_8));
            out.append(hash).append(' ').append(Utils.toPositive(hash) % partitions).append('\\n');
        }
        System.out.print(out);
    }
}
"""
ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:/ éüß€😀"


def random_keys(count: int, seed: int = 20261126) -> list[str]:
    rng = random.Random(seed)
    keys = dict.fromkeys(["", "stripe.subscription.sub_819abud719s"])
    while len(keys) < count:
        keys["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 48)))] = None
    return list(keys)


def java_murmur(keys: list[str], tmp_path) -> list[tuple[int, int]]:
    """(hash, partition) per key, computed by the Kafka Java client."""
    (tmp_path / "Murmur.java").write_text(JAVA)
    (tmp_path / "keys.txt").write_text("\n".join(keys) + "\n", encoding="utf-8")
    result = subprocess.run(
        ["java", "-Xmx128m", "-cp", f"{libs_dir()}/*", str(tmp_path / "Murmur.java"), str(tmp_path / "keys.txt"),
         str(PARTITIONS)], capture_output=True, text=True, timeout=120, check=True)
    rows = [tuple(map(int, line.split())) for line in result.stdout.splitlines()]
    assert len(rows) == len(keys)
    return rows


def test_producer_partitions_like_java_for_10000_keys(kafka_config, tmp_path):
    keys = random_keys(10_000)
    java = java_murmur(keys, tmp_path)
    topic = f"murmur.{uuid.uuid4().hex[:10]}"
    admin = AdminClient(kafka_config)  # kept referenced: a destroyed client cancels its futures
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(timeout=30)

    delivered: dict[int, int] = {}
    producer = Producer(kafka_config)
    for index, key in enumerate(keys):
        producer.produce(topic, key, {"i": index},
                         on_delivery=lambda msg, i=index: delivered.__setitem__(i, msg.partition()))
    producer.flush()

    assert len(delivered) == len(keys)
    wrong = [(k, delivered[i], part) for i, (k, (_, part)) in enumerate(zip(keys, java, strict=True))
             if delivered[i] != part]
    assert wrong == [], f"{len(wrong)} keys landed on another partition than Java picks, e.g. {wrong[:3]}"


def test_pure_python_murmur2_equals_java(tmp_path):
    keys = random_keys(2_000, seed=7)
    java = java_murmur(keys, tmp_path)
    ours = [(murmur2(k.encode("utf-8")), partition_for(k, PARTITIONS)) for k in keys]
    assert ours == java
