"""The ledger's lifecycle: complete before anything is fenced, rebuilt from `<api>.records` when lost.

A Redis that restarted empty, was flushed or failed over to an empty replica makes every key look new:
stale versions would be accepted and `created` re-emitted. The fence refuses to answer without the
api's generation marker (see `apisync.fence`), and `ensure_ledger` puts the marker back: at once when
`<api>.records` has never held anything (a fresh start), else after a rebuild that streams the records
topic (flat memory, no deadline). One normalizer rebuilds while the others wait for the marker.

A partial loss (writes Kafka kept, an evicted key) makes the fence delete the marker itself, so it is
repaired the same way. A rebuild overwrites every key `<api>.records` holds and keeps the ledger's
other keys: a delete whose tombstone compaction has already removed (after the records topic's
`delete.retention.ms`) stays in the ledger, so a late stale observation cannot revive the record.
Only a delete both compacted away and lost by Redis itself is forgotten. It then writes, with the
marker, the offsets the normalizers' group had committed before it began: what it rebuilt covers them.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from apisync.events import Observation, observation_from_change
from apisync.failpoints import failpoint
from apisync.fence import LEDGER_PREFIX, VersionFence
from apisync.kafka.groups import normalizer_group
from apisync.kafka.reader import reader_config, stream_topic

log = logging.getLogger("apisync.ledger")

REBUILD_LOCK_TTL_S = 30  # renewed while the rebuild makes progress; a rebuilder that died frees it soon


def ensure_ledger(api: str, kafka_config: Mapping[str, Any], redis_client: Any, *, namespace: str = "",
                  ledger_prefix: str = LEDGER_PREFIX, sleep: Callable[[float], None] = time.sleep) -> str:
    """Make the ledger of `api` complete; returns "ok", "fresh" or "rebuilt"."""
    fence = VersionFence(redis_client, ledger_prefix)
    lock, token = f"{ledger_prefix}:~rebuild:{api}", uuid.uuid4().hex
    while not fence.has_generation(api):
        if not redis_client.set(lock, token, nx=True, ex=REBUILD_LOCK_TTL_S):
            sleep(1.0)  # another normalizer is rebuilding: wait for its marker
            continue
        try:
            if not _ever_written(kafka_config, f"{namespace}{api}.records"):
                judged = committed_offsets(kafka_config, normalizer_group(api, namespace), input_topics(api, namespace))
                fence.index_keys(api)  # states of attempts that never committed, if any
                fence.mark_generation(api, token, judged)
                return "fresh"
            log.warning("%s ledger: Redis has lost it, all or part; rebuilding from %s%s.records "
                        "before anything is accepted", api, namespace, api)
            count = rebuild_ledger(api, kafka_config, redis_client, namespace=namespace, ledger_prefix=ledger_prefix,
                                   lock=lock)
            log.warning("%s ledger: rebuilt %d keys", api, count)
            return "rebuilt"
        finally:
            if redis_client.get(lock) == token.encode():
                redis_client.delete(lock)
    return "ok"


def rebuild_ledger(api: str, kafka_config: Mapping[str, Any], redis_client: Any, *, namespace: str = "",
                   ledger_prefix: str = LEDGER_PREFIX, lock: str | None = None) -> int:
    """Rewrite the ledger of `api` from `<api>.records` read to its end, then mark it complete.

    Streams the topic (the newest message of a key overwrites the older: offset order per partition),
    so memory stays flat whatever the size. Run it with the normalizers stopped, or let
    `ensure_ledger` run it: the fence refuses everything until the marker is back.
    """
    fence = VersionFence(redis_client, ledger_prefix)
    fence.forget_generation(api)
    # Read before the topic: every batch committed by then has its records in what the stream reads.
    judged = committed_offsets(kafka_config, normalizer_group(api, namespace), input_topics(api, namespace))
    messages = stream_topic(kafka_config, f"{namespace}{api}.records")
    progress = _renewing(messages, redis_client, lock) if lock else messages
    count = fence.write_committed(_ledger_state(msg) for msg in progress if msg.key())
    fence.index_keys(api, progress=(lambda: redis_client.expire(lock, REBUILD_LOCK_TTL_S)) if lock else None)
    fence.mark_generation(api, uuid.uuid4().hex, judged)
    return count


def input_topics(api: str, namespace: str = "") -> list[str]:
    """The topics the normalizers of `api` judge."""
    return [f"{namespace}{api}.changes", f"{namespace}{api}.webhooks"]


def committed_offsets(kafka_config: Mapping[str, Any], group: str, topics: list[str]) -> dict[str, int]:
    """The offset `group` has committed per `topic:partition` of `topics` (0 where nothing is).

    Offsets of transactions still open are not waited for (read_uncommitted does not ask for stable
    offsets): a dead normalizer's open transaction is aborted only when its successor, which may be the
    one rebuilding, starts its producer. One that commits after this read leaves the ledger below Kafka,
    so the next batch finds it and rebuilds again (no batch is judged meanwhile: the fence refuses all)."""
    consumer = Consumer({**reader_config(kafka_config, "read_uncommitted"), "group.id": group})
    try:
        metadata = consumer.list_topics(timeout=30).topics
        wanted = [TopicPartition(topic, p) for topic in topics if topic in metadata
                  for p in sorted(metadata[topic].partitions)]
        if not wanted:
            return {}
        return {f"{tp.topic}:{tp.partition}": max(tp.offset, 0) for tp in _settled(consumer.committed, wanted)}
    finally:
        consumer.close()


def _renewing(messages: Iterator[Any], redis_client: Any, lock: str, every: int = 1000) -> Iterator[Any]:
    """Pass messages on, renewing the rebuild lock as long as the rebuild makes progress."""
    for count, msg in enumerate(messages):
        if count % every == 0:
            redis_client.expire(lock, REBUILD_LOCK_TTL_S)
        failpoint("ledger.rebuilding")  # a rebuild under way: the marker is not back yet
        yield msg


def _ledger_state(msg: Any) -> Observation:
    """A committed ledger state from one records message (a tombstone's version is in its header)."""
    if msg.value() is not None:
        return observation_from_change(msg.value())
    headers = dict(msg.headers() or [])
    version = int(headers.get("apisync-version", b"0"))
    api, collection, ident = msg.key().decode().split(".", 2)
    return Observation(api, collection, ident, version, "reconcile", "", None, deleted=True)


def _ever_written(kafka_config: Mapping[str, Any], topic: str) -> bool:
    """True when any partition of the topic has held a message (its high watermark is above zero)."""
    consumer = Consumer(reader_config(kafka_config))
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        return any(_high_watermark(consumer, TopicPartition(topic, p)) > 0 for p in partitions)
    finally:
        consumer.close()


# Answers of a partition whose leader is still being elected: a topic created a moment ago, a broker restart.
_LEADER_SETTLING = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                    KafkaError.UNKNOWN_TOPIC_OR_PART}
# Answers of a group whose coordinator is still being found or loaded: a new group, a broker restart.
_COORDINATOR_SETTLING = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
                         KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError._WAIT_COORD}


def _settled(committed: Callable[..., list[TopicPartition]], partitions: list[TopicPartition],
             patience_s: float = 30.0) -> list[TopicPartition]:
    """The group's committed offsets, asked again while its coordinator settles (within `patience_s`)."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return committed(partitions, timeout=10)
        except KafkaException as exc:
            error = exc.args[0]
            if not (error.retriable() or error.code() in _COORDINATOR_SETTLING) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _high_watermark(consumer: Consumer, tp: TopicPartition, patience_s: float = 30.0) -> int:
    """The partition's high watermark, asked again while its leadership settles (within `patience_s`)."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return consumer.get_watermark_offsets(tp, timeout=10)[1]
        except KafkaException as exc:
            error = exc.args[0]
            if not (error.retriable() or error.code() in _LEADER_SETTLING) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
