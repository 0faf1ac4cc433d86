"""Baseline: the raw confluent-kafka producer (idempotent, acks=all, lz4, murmur2), ~600 B observations.

Every other throughput in the table is divided by this one, measured minutes apart on the same broker,
so a busy machine moves both sides. No transactions, no JSON work in the loop: the values are
serialized before the clock starts. This is what Kafka alone can take from one Python process.
"""

from __future__ import annotations

import time

from common import Row, Stack, change_messages, produce_raw

MESSAGES = 200_000


def run(stack: Stack, messages: int = MESSAGES) -> list[Row]:
    ns = stack.namespace()
    payload = list(change_messages(messages, seed=3))
    size = sum(len(v) for _k, v in payload) / len(payload)
    started = time.perf_counter()
    produce_raw(stack.kafka_config, f"{ns}stripe.changes", payload, flush_s=120)
    elapsed = time.perf_counter() - started
    stack.drop(ns)
    stack.baseline_msgs_s = messages / elapsed
    return [Row("raw producer (baseline)", f"{messages:,} msgs of {size:.0f} B", f"{stack.baseline_msgs_s:,.0f} msg/s",
                "1")]
