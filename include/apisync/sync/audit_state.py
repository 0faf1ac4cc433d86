"""What Kafka holds for one collection, and what the ledger says, as the audit compares them with the API.

The records topic is the truth the audit checks (it is what consumers read); the ledger is the fence's
copy of it and is consulted per drifted key only, for two things:
- **in flight**: a ledger state whose batch was not committed when the audit began reading the topic
  belongs to work the normalizer is doing right now, so that key is left to it. A state is settled when
  its source offset is below the normalizer group's committed offset taken *before* the topic read
  (offsets are committed in the same transaction as the records), or when a rebuild wrote it.
- **realignment**: records removed behind the pipeline's back leave the ledger saying "live, this
  content", so the fence would find a repair "unchanged" and drop it. Such a key's ledger is set back to
  what the topic shows (compare-and-set, so a normalizer writing it meanwhile wins), after which the
  fence judges the repair against what consumers really have.

Storage format: the ledger stack and its committed-state entry are `apisync.fence`'s (see its
docstring); `VersionFence.entry` and `.unpack` are reused rather than copied so the two cannot drift apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Consumer, TopicPartition
from redis.exceptions import WatchError

from apisync.events import Observation
from apisync.fence import VersionFence
from apisync.kafka.groups import normalizer_group
from apisync.kafka.reader import reader_config, stream_topic

VERSION_HEADER = "apisync-version"


def digest(data: Mapping[str, Any] | None, fields: Iterable[str] | None = None) -> bytes:
    """A 16-byte fingerprint of canonical JSON, over `fields` only when given (a missing field reads None)."""
    if data is None:
        return b""
    shown = dict(data) if fields is None else {name: data.get(name) for name in fields}
    return hashlib.blake2b(orjson.dumps(shown, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class RecordState:
    """The newest message of one key on `<api>.records`: its version, and a fingerprint instead of the data."""

    version: int
    live: bool
    fingerprint: bytes = b""
    fields: tuple[str, ...] = ()  # the record's top-level fields: the API object is compared on these

    def matches(self, data: Mapping[str, Any] | None) -> bool:
        """True when the record is live and equal to `data` on the record's fields.

        Fields the record never had are ignored: a fetch of one object may carry more than a listing
        (Salesforce returns every field, GitHub's single pull request its mergeability).
        """
        return self.live and data is not None and digest(data, self.fields) == self.fingerprint


def read_records(kafka_config: Mapping[str, Any], api: str, collection: str) -> dict[str, RecordState]:
    """Object id → the newest record state of one collection, from `<api>.records` read to its end."""
    prefix = f"{api}.{collection}.".encode()
    shapes: dict[tuple[str, ...], tuple[str, ...]] = {}  # one tuple per distinct field set, shared
    view: dict[str, RecordState] = {}
    for msg in stream_topic(kafka_config, f"{api}.records"):
        key = msg.key()
        if key and key.startswith(prefix):
            view[key[len(prefix):].decode()] = _record_state(msg, shapes)
    return view


def _record_state(msg: Any, shapes: dict[tuple[str, ...], tuple[str, ...]]) -> RecordState:
    if msg.value() is None:
        return RecordState(int(dict(msg.headers() or []).get(VERSION_HEADER, b"0")), live=False)
    value = orjson.loads(msg.value())
    data = value.get("data") or {}
    fields = tuple(sorted(data))
    return RecordState(int(value["version"]), True, digest(data, fields), shapes.setdefault(fields, fields))


def record_values(kafka_config: Mapping[str, Any], api: str, keys: set[str]) -> dict[str, dict | None]:
    """The newest value of a few record keys (a second read, only when a live record must be realigned)."""
    wanted = {key.encode() for key in keys}
    values: dict[str, dict | None] = {}
    for msg in stream_topic(kafka_config, f"{api}.records"):
        if msg.key() in wanted:
            values[msg.key().decode()] = orjson.loads(msg.value()) if msg.value() is not None else None
    return values


def settled_offsets(kafka_config: Mapping[str, Any], api: str) -> dict[str, int]:
    """The normalizer group's committed offset per `topic:partition` of its inputs (the ledger's `t`)."""
    group = normalizer_group(api)
    consumer = Consumer({**reader_config(kafka_config), "group.id": group})  # never subscribes nor commits
    try:
        partitions = []
        for topic in (f"{api}.changes", f"{api}.webhooks"):
            metadata = consumer.list_topics(topic, timeout=30).topics[topic]
            partitions += [TopicPartition(topic, p) for p in metadata.partitions]
        committed = consumer.committed(partitions, timeout=30)
    finally:
        consumer.close()
    return {f"{tp.topic}:{tp.partition}": tp.offset for tp in committed if tp.offset >= 0}


@dataclass(frozen=True, slots=True)
class LedgerState:
    """The newest ledger state of one key, and whether its batch was committed before the audit began."""

    version: int
    live: bool
    data: dict | None
    settled: bool
    raw: bytes  # the whole stack as read, for compare-and-set

    def shows(self) -> tuple[bool, bytes]:
        """(live, fingerprint): what this state says consumers have."""
        return self.live, digest(self.data) if self.live else b""


class LedgerProbe:
    """Reads ledger states of drifted keys and sets them back to the topic's state when they disagree."""

    def __init__(self, redis_client: Any, fence: VersionFence, settled: Mapping[str, int]) -> None:
        self._redis, self._fence, self._settled = redis_client, fence, dict(settled)

    def state(self, record_key: str) -> LedgerState | None:
        """The newest state of a key, or None when the ledger does not know it."""
        raw = self._redis.get(self._fence.ledger_key(record_key))
        if raw is None:
            return None
        top = orjson.loads(raw)[-1]
        # tp "" = written by a rebuild (or a realignment): committed by construction
        settled = top["t"] == "" or int(top["o"]) < self._settled.get(top["t"], 0)
        data = self._fence.unpack(record_key, top["d"]) if top["x"] != 1 else None
        return LedgerState(int(top["v"]), top["x"] != 1, data, settled, raw)

    def complete(self, api: str) -> bool:
        """False while the ledger of `api` is lost or being rebuilt (a rebuild overwrites every key anyway)."""
        return self._fence.has_generation(api)

    def realign(self, record_key: str, seen: LedgerState | None, target: Observation) -> bool:
        """Replace the key's states by `target` as one committed state, unless it changed since `seen`."""
        ledger_key = self._fence.ledger_key(record_key)
        entry = self._fence.entry(target, tp="", offset=0, attempt="audit")  # tp "": never rolled back
        with self._redis.pipeline() as pipe:
            try:
                pipe.watch(ledger_key)
                if pipe.get(ledger_key) != (seen.raw if seen else None):
                    return False
                pipe.multi()
                pipe.set(ledger_key, orjson.dumps([entry]))
                # the key set must name every ledger key, or a later partial loss of this one goes unseen
                pipe.sadd(self._fence.keyset_key(target.api), record_key)
                pipe.execute()
            except WatchError:  # a normalizer wrote the key meanwhile: its state stands
                return False
        return True


def shown_by_record(record: RecordState | None) -> tuple[bool, bytes]:
    """(live, fingerprint) the records topic shows for a key; absent and tombstoned look the same."""
    return (True, record.fingerprint) if record and record.live else (False, b"")
