"""Sync cursors in the compacted topic `apisync.checkpoints`, committed atomically with the data they cover.

Key `<api>.<job>.<collection>`, value `{"cursor": {...}, "updated_at": iso, "pages": n, "done": bool}`.
A page's messages and its checkpoint go in ONE Kafka transaction, so a read_committed reader never sees
a checkpoint ahead of (or behind) its data. A tombstone resets the cursor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from apisync.errors import FatalError, RetriableError
from apisync.failpoints import failpoint
from apisync.kafka.producer import Outgoing, Producer, client_config
from apisync.kafka.reader import TopicReadError, read_topic
from apisync.kafka.topics import CHECKPOINTS_TOPIC

Clock = Callable[[], datetime]
READ_TIMEOUT_S = 30.0
# A page writer flushes at every commit, so waiting for more messages only delays the commit (linger.ms
# 20 made each page's transaction ~40 % slower). The caller's config may still set its own.
WRITER_DEFAULTS = {"linger.ms": 2}


class CheckpointError(RetriableError):
    """The checkpoint topic could not be read (the broker or the topic is away: a retry may find it)."""


class MalformedCheckpoint(FatalError):
    """A checkpoint is not a JSON object with a cursor: rereading it yields the same bytes, so only a
    person can decide (reset it and re-read the collection; the fence absorbs the duplicates)."""


def checkpoint_key(api: str, job: str, collection: str) -> str:
    """`<api>.<job>.<collection>`, e.g. `stripe.backfill.customer`."""
    for part in (api, job, collection):
        if not part or "." in part:
            raise ValueError(f"checkpoint key parts must be non-empty and dot-free, got {part!r}")
    return f"{api}.{job}.{collection}"


def transactional_id(key: str) -> str:
    """Stable per job+collection, so a restarted worker fences its zombie predecessor."""
    return f"apisync.{key}"


def utc_now() -> datetime:
    """The default clock."""
    return datetime.now(UTC)


def iso_utc(clock: Clock = utc_now) -> str:
    """The clock's time as ISO 8601 UTC with milliseconds, e.g. 2026-11-26T14:53:32.000Z."""
    return clock().astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def checkpoint_value(cursor: Mapping[str, Any], pages: int, done: bool = False, clock: Clock = utc_now) -> dict:
    """A checkpoint value stamped with the time it was written."""
    return {"cursor": dict(cursor), "updated_at": iso_utc(clock), "pages": pages, "done": done}


def fold(records: Iterable[tuple[str, bytes | None]]) -> dict[str, dict]:
    """Last value per key, in offset order; a tombstone removes the key. Only the last value is parsed:
    a malformed value that a later one replaced (compaction may not have removed it yet) is no error."""
    latest: dict[str, bytes] = {}
    for key, value in records:
        if value is None:
            latest.pop(key, None)
        else:
            latest[key] = value
    return {key: _parsed(key, value) for key, value in latest.items()}


def _parsed(key: str, value: bytes) -> dict:
    """One checkpoint value, or MalformedCheckpoint saying what is wrong and how to recover."""
    remedy = f"`python -m apisync cursor reset {key}` makes the next run re-read the collection"
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise MalformedCheckpoint(f"checkpoint {key!r} is not valid JSON; {remedy}") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("cursor"), dict):
        raise MalformedCheckpoint(f"checkpoint {key!r} has no cursor object; {remedy}")
    return parsed


class CheckpointStore:
    """Reads and resets cursors; writing goes through a PageWriter so it shares the page's transaction."""

    def __init__(self, config: Mapping[str, Any], topic: str = CHECKPOINTS_TOPIC,
                 timeout: float = READ_TIMEOUT_S) -> None:
        self._config = client_config(config)
        self._topic = topic
        self._timeout = timeout

    def load_all(self, prefix: str = "") -> dict[str, dict]:
        """Every current checkpoint (optionally only keys starting with prefix)."""
        state = fold(self._read_to_end())
        return {key: value for key, value in sorted(state.items()) if key.startswith(prefix)}

    def load(self, key: str) -> dict | None:
        """The committed checkpoint for key, or None if never written or reset."""
        return fold(rec for rec in self._read_to_end() if rec[0] == key).get(key)

    def reset(self, key: str) -> None:
        """Write a tombstone: the next run starts from scratch. Run it while the job is stopped."""
        # A plain idempotent producer: a tombstone needs no page to travel with.
        producer = Producer({k: v for k, v in self._config.items() if k != "transactional.id"})
        producer.produce(self._topic, key, None)
        producer.flush(self._timeout)

    def _read_to_end(self) -> list[tuple[str, bytes | None]]:
        try:
            messages = read_topic(self._config, self._topic, self._timeout)
        except TopicReadError as exc:
            raise CheckpointError(f"{exc} (does it exist? run `python -m apisync topics ensure`)") from None
        return [(msg.key().decode("utf-8"), msg.value()) for msg in messages]


class PageWriter:
    """Writes one page of messages and its checkpoint in a single transaction."""

    def __init__(self, producer: Producer, topic: str = CHECKPOINTS_TOPIC, clock: Clock = utc_now) -> None:
        if not producer.transactional_id:
            raise ValueError("PageWriter needs a transactional producer ('transactional.id' in its config)")
        self._producer = producer
        self._topic = topic
        self._clock = clock

    @classmethod
    def for_key(cls, config: Mapping[str, Any], key: str, **kwargs: Any) -> PageWriter:
        """A writer with its own producer whose transactional.id is derived from the checkpoint key."""
        conf = {**WRITER_DEFAULTS, **client_config(config), "transactional.id": transactional_id(key)}
        return cls(Producer(conf), **kwargs)

    @property
    def transactional_id(self) -> str:
        """The id that fences any older writer of the same job and collection."""
        return self._producer.transactional_id

    def write_page(self, messages: Iterable[Outgoing], checkpoint_key: str, checkpoint: Mapping[str, Any]) -> None:
        """begin, produce all messages, produce the checkpoint, commit; abort and raise on any error."""
        self.write_pages([messages], checkpoint_key, checkpoint)

    def write_pages(self, pages: Sequence[Iterable[Outgoing]], checkpoint_key: str,
                    checkpoint: Mapping[str, Any]) -> None:
        """Several consecutive pages and the checkpoint of the last one in ONE transaction (fewer commits
        when pages are ready faster than Kafka commits them). The failpoints still pass once per page,
        so `page.after_produce@N` is "page N produced, not committed" however pages are grouped."""
        if "cursor" not in checkpoint:
            raise ValueError("a checkpoint value needs a 'cursor'")
        if not pages:
            raise ValueError("write_pages needs at least one page")
        value = dict(checkpoint)
        value.setdefault("updated_at", iso_utc(self._clock))
        failpoint("page.before_produce")
        with self._producer.transaction():
            for index, messages in enumerate(pages):
                if index:
                    failpoint("page.before_produce")
                for message in messages:
                    self._producer.send(message)
                if index == len(pages) - 1:
                    self._producer.produce(self._topic, checkpoint_key, value)
                failpoint("page.after_produce")  # produced, not committed
        for _page in pages:
            failpoint("page.after_commit")

    def close(self) -> None:
        """Flush anything left (nothing, after a committed page)."""
        self._producer.close()
