"""murmur2 against values computed by Java's org.apache.kafka.common.utils.Utils (kafka-clients 4.1.1)."""

import pytest

from apisync.kafka.partitioning import murmur2, partition_for, to_positive

# (key, Utils.murmur2(key.getBytes(UTF_8)), Utils.toPositive(hash) % 12), printed by the real Java client.
JAVA_VECTORS = [
    ("", 275646681, 9),
    ("21", -973932308, 0),
    ("foobar", -790332482, 6),
    ("a-little-bit-long-string", -985981536, 8),
    ("a-little-bit-longer-string", -1486304829, 11),
    ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971, 5),
    ("abc", 479470107, 3),
    ("a", -1563381124, 4),
    ("ab", 316155434, 2),
    ("stripe.subscription.sub_819abud719s", 1478450176, 4),
    ("ünïcødé", 2147241326, 2),
]


@pytest.mark.parametrize(("key", "java_hash", "java_partition"), JAVA_VECTORS)
def test_matches_java(key, java_hash, java_partition):
    assert murmur2(key.encode("utf-8")) == java_hash
    assert partition_for(key, 12) == java_partition
    assert partition_for(key.encode("utf-8"), 12) == java_partition


def test_to_positive_clears_only_the_sign_bit():
    assert to_positive(-2147483648) == 0  # abs() would overflow in Java; masking does not
    assert to_positive(-1) == 0x7FFFFFFF
    assert to_positive(5) == 5


@pytest.mark.parametrize("partitions", [0, -3])
def test_rejects_non_positive_partition_count(partitions):
    with pytest.raises(ValueError, match="partition count"):
        partition_for("k", partitions)
