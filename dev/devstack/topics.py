"""Message counts per topic, for the demo's closing report."""

from confluent_kafka import Consumer, TopicPartition


def message_counts(bootstrap: str) -> dict[str, int]:
    """End offset minus start offset of every non-internal topic (compaction may make it an upper bound)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "devstack-counts", "enable.auto.commit": False})
    try:
        counts = {}
        for name, meta in sorted(consumer.list_topics(timeout=10).topics.items()):
            if name.startswith("__"):
                continue
            total = 0
            for partition in meta.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=10)
                total += high - low
            counts[name] = total
        return counts
    finally:
        consumer.close()
