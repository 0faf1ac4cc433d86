"""The normalizer's Kafka clients: its consumer-group member and its transactional producer, one pair per api
and instance (see `apisync.normalizer` for why the group is static and the assignor `range`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apisync.kafka.groups import normalizer_group

# Prefetch at most ~8 MiB queued and 8 MiB per fetch (librdkafka's defaults, 64 MiB and 50 MiB, let a
# normalizer's RSS grow with its backlog up to ~150 MiB); a batch of 5,000 observations is ~3.4 MB, so
# the queue still holds two batches. The connection's extra may override them.
FETCH_DEFAULTS = {"queued.max.messages.kbytes": 8192, "fetch.max.bytes": 8 * 1024 * 1024}


def consumer_config(api: str, kafka_config: Mapping[str, Any], instance: str = "0",
                    namespace: str = "") -> dict[str, Any]:
    """Consumer settings for the normalizer group of one api."""
    base = {k: v for k, v in kafka_config.items() if not k.startswith(("transactional.", "acks", "enable.idem",
                                                                        "linger", "compression", "partitioner"))}
    return {**FETCH_DEFAULTS, **base, "group.id": normalizer_group(api, namespace),
            "group.instance.id": f"{namespace}normalizer-{api}-{instance}",
            "enable.auto.commit": False, "isolation.level": "read_committed", "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "range", "session.timeout.ms": 10000,
            # end-of-partition notices tell "caught up" from "nothing fetched yet" (run until idle)
            "enable.partition.eof": True}


def producer_config(api: str, kafka_config: Mapping[str, Any], instance: str = "0",
                    namespace: str = "") -> dict[str, Any]:
    """Transactional producer settings; the id is stable per api and instance so a zombie is fenced."""
    return {**kafka_config, "transactional.id": f"{namespace}apisync.normalizer.{api}.{instance}"}
