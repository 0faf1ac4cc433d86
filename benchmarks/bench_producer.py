"""Baseline: the raw confluent-kafka producer (idempotent, acks=all, lz4, murmur2), ~600 B observations.

Every other throughput in the table is divided by this one, measured minutes apart on the same broker,
so a busy machine moves both sides. No transactions, no JSON work in the loop: the values are
serialized before the clock starts. This is what Kafka alone can take from one Python process.
"""

from __future__ import annotations

import time

from common import Row, Stack, change_messages, produce_raw

MESSAGES = 200_000
REPEATS = 3  # the best run is kept (a shared machine only slows runs down), as for the normalizer


def run(stack: Stack, messages: int = MESSAGES) -> list[Row]:
    payload = list(change_messages(messages, seed=3))
    size = sum(len(v) for _k, v in payload) / len(payload)
    stack.baseline_msgs_s = max(messages / once(stack, payload) for _ in range(REPEATS))
    return [Row("raw producer (baseline)", f"{messages:,} msgs of {size:.0f} B, best of {REPEATS}",
                f"{stack.baseline_msgs_s:,.0f} msg/s", "1")]


def once(stack: Stack, payload: list[tuple[str, bytes]]) -> float:
    """Seconds to produce the payload into a fresh topic until every message is acknowledged."""
    ns = stack.namespace()
    started = time.perf_counter()
    produce_raw(stack.kafka_config, f"{ns}stripe.changes", payload, flush_s=120)
    elapsed = time.perf_counter() - started
    stack.drop(ns)
    return elapsed
