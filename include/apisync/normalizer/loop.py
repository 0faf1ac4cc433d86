"""The batch loop: poll, prepare (`apisync.normalizer.prepare`), then one Kafka transaction per batch that
judges it against the version fence chunk by chunk, produces what each chunk yields and commits with the
consumed offsets; an aborted batch is sought back and read again.

Fence vs transaction: the fence is written before the commit and may be ahead of Kafka after a crash
or an abort; the ledger therefore tags each state with its source offset and batch attempt and rolls
back states from uncommitted attempts on re-delivery (see `apisync.fence`'s docstring). Every batch
passes the start position of each assigned partition so the script can tell committed from not.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import KafkaError

from apisync import registry
from apisync.events import (
    NotSynced,
    Observation,
    ObservationError,
    derive_events,
    observation_from_change,
    record_value,
)
from apisync.failpoints import failpoint
from apisync.fence import (
    FencedOut,
    Item,
    LedgerLost,
    LedgerUnavailable,
    Rejudge,
    SourcePosition,
    Verdict,
    VersionFence,
)
from apisync.http import RetriableError
from apisync.kafka.producer import DeliveryError, Producer, TransactionError
from apisync.metrics import NULL_METRICS, Metrics
from apisync.normalizer.batch import _Batch, _judged_ends, _next_offsets, _Prepared, _spans
from apisync.normalizer.deferrals import _Deferrals, _NothingDue
from apisync.normalizer.partitions import _Partitions
from apisync.normalizer.prepare import _BatchPreparation
from apisync.normalizer.stats import NormalizerMetrics, NormalizerStats, _add
from apisync.normalizer.ties import INLINE_TIE_REQUESTS, TIE_ROUNDS, _TieSettling, _TiesOutside
from apisync.refetch_outcomes import DeferPolicy, Deferral, GuardedRefetch
from apisync.refetch_plan import DEFAULT_MAX_REQUESTS
from apisync.rules import Rule
from apisync.webhooks.dispatch import parse_webhook

log = logging.getLogger("apisync.normalizer")

MAX_FAILED_BATCHES = 3
FENCE_CHUNK = 500  # observations per fence call: a batch is judged in several, pipelined
# Observations per transaction at most (~3.4 MB). Each batch pays fixed round trips (offsets, commit,
# flush); 5,000 halves them per observation against 2,000, though the benchmark cannot tell the two
# apart on two cores (README, Benchmarks).
DEFAULT_BATCH_SIZE = 5000


def known_collection(api: str, obs: Observation, collections: Collection[str] | None = None) -> bool:
    """Whether an observation belongs to one of `api`'s registered collections (else: dead letter);
    `collections`: the registry's answer, read once by a caller that asks per observation."""
    return obs.api == api and obs.collection in (registry.COLLECTIONS.get(api, ()) if collections is None
                                                 else collections)


def _now_iso() -> str:
    return datetime.now(tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Normalizer(_BatchPreparation, _TieSettling, _Deferrals, _Partitions):
    """Consume observations of one api and write records and events, exactly once per transition."""

    def __init__(self, api: str, consumer: Any, producer: Producer, fence: VersionFence, *,
                 rules: Mapping[str, Sequence[Rule]] | None = None,
                 refetch: Callable[[Observation], Observation] | None = None,
                 max_refetch_requests: int | None = DEFAULT_MAX_REQUESTS,
                 inline_tie_requests: int = INLINE_TIE_REQUESTS,
                 batch_size: int = DEFAULT_BATCH_SIZE, poll_timeout: float = 1.0, namespace: str = "",
                 webhook_options: Mapping[str, Any] | None = None,
                 recover_ledger: Callable[[], Any] | None = None,
                 defer_policy: DeferPolicy | None = None, wall_clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, metrics: Metrics = NULL_METRICS) -> None:
        self.api = api
        self._metrics = NormalizerMetrics(metrics, api)
        self._ns = f"{namespace}{api}"  # topic name stem; a namespace isolates test runs
        self._consumer, self._producer, self._fence = consumer, producer, fence
        self._rules = registry.default_rules(api) if rules is None else dict(rules)
        self._refetch = None if refetch is None else GuardedRefetch(refetch)
        self._max_refetch_requests = None if max_refetch_requests is None else max(1, max_refetch_requests)
        self._inline_tie_requests = inline_tie_requests
        # deferrals of transient re-fetch failures; their due times travel with the messages, so wall-clock
        self._defer = DeferPolicy.from_env() if defer_policy is None else defer_policy
        self._wall_clock, self._sleep = wall_clock, sleep
        self._refetch_hint_said = False  # the spec's refetch hint is said once per run
        # Re-fetched states of keys whose thin messages a cut left for the next batch, with the polled
        # end offsets per partition they are newer than (see `_carry`).
        self._carried: dict[str, tuple[Observation, dict[tuple[str, int], int]]] = {}
        self._batch_size, self._poll_timeout = batch_size, poll_timeout
        self._clock = clock
        self._webhook_options = dict(webhook_options or {})  # e.g. Stripe's pinned api_version
        self._recover_ledger = recover_ledger
        self._epochs: dict[str, int] = {}  # owner epoch per assigned `topic:partition` (fences zombies)
        self._kafka_committed: dict[str, int] = {}  # per assigned `topic:partition`, as this owner knows it
        # Committed offset of assigned partitions this worker has not consumed from yet; only this
        # owner can move it (a predecessor's pending transaction is settled before committed() answers).
        self._unconsumed_start: dict[str, int] = {}
        self._topics: dict[str, tuple[str, str, str, str]] = {}  # per collection, see _topics_of
        self._collections = frozenset(registry.COLLECTIONS.get(api, ()))  # the registry, read once
        self._at_end: set[str] = set()  # `topic:partition` read to its end since its last message
        self._failures = 0  # batches aborted in a row, across run() calls (a follower calls run() per interval)
        self._consumer.subscribe([f"{self._ns}.changes", f"{self._ns}.webhooks"],
                                 on_assign=self._on_assign, on_revoke=self._on_revoke)

    def run(self, max_seconds: float | None = None, max_batches: int | None = None,
            stop_when_idle: bool = False, should_stop: Callable[[], bool] | None = None) -> NormalizerStats:
        """Process batches until max_seconds / max_batches, `should_stop()` (checked between batches, so a
        transaction is never cut short), or with stop_when_idle until every assigned partition is read to its end."""
        stats = NormalizerStats()
        deadline = None if max_seconds is None else self._clock() + max_seconds
        while (deadline is None or self._clock() < deadline) and (max_batches is None or stats.batches < max_batches):
            if should_stop is not None and should_stop():
                break
            messages = self._received(self._next_messages())
            if not messages:
                if stop_when_idle and self.caught_up():
                    break
                continue
            started = self._clock()
            try:
                batch = self.process(messages)
                self._metrics.committed(batch, batch.consumed, (self._clock() - started) * 1000)
                stats = _add(stats, batch, batch.consumed)
                self._failures = 0
            except _NothingDue as held:
                # only deferrals not yet due: those partitions count as read to their end
                self._at_end.update(f"{t}:{p}" for t, p in held.partitions)
                if stop_when_idle and self.caught_up():
                    break
            except (TransactionError, DeliveryError, RetriableError, FencedOut, LedgerLost, LedgerUnavailable) as exc:
                if isinstance(exc, LedgerLost) and self._recover_ledger is not None:
                    log.warning("normalizer %s: %s; rebuilding it before going on", self.api, exc)
                    self._recover_ledger()
                    self._epochs = self._fence.claim(self._epochs)  # the owner epochs went with the data
                self._failures += 1
                stats = self._aborted(stats, messages, exc)
                if self._failures >= MAX_FAILED_BATCHES:
                    raise
        return stats

    def _aborted(self, stats: NormalizerStats, messages: Sequence[Any], why: Exception) -> NormalizerStats:
        """Count an aborted batch and seek back to read it again."""
        self._metrics.aborted()
        log.warning("normalizer %s: batch aborted (%s); re-reading it", self.api, why)
        self._rewind(messages)
        return _add(stats, None, 0)

    def _received(self, messages: list[Any]) -> list[Any]:
        """The usable messages; end-of-partition notices mark their partition caught up, other errors are logged."""
        usable = []
        for msg in messages:
            err = msg.error()
            if err is None:
                usable.append(msg)
                self._at_end.discard(f"{msg.topic()}:{msg.partition()}")
            elif err.code() == KafkaError._PARTITION_EOF:
                self._at_end.add(f"{msg.topic()}:{msg.partition()}")
            else:
                log.warning("normalizer %s: consumer error: %s", self.api, err.str())
        return usable

    def caught_up(self) -> bool:
        """Whether this worker owns partitions and has read every one of them to its end."""
        assigned = self._consumer.assignment()
        return bool(assigned) and all(f"{tp.topic}:{tp.partition}" in self._at_end for tp in assigned)

    def _next_messages(self) -> list[Any]:
        """Up to batch_size messages: what is fetched already, else the first to arrive within
        poll_timeout plus whatever came with it (a plain consume(n, timeout) would hold a lone
        webhook until the timeout; under load the prefetch queue fills whole batches at once)."""
        messages = self._consumer.consume(self._batch_size, 0) or self._consumer.consume(1, self._poll_timeout)
        # End-of-partition notices take slots too: top up to batch_size messages from what is fetched.
        while messages and (short := self._batch_size - sum(m.error() is None for m in messages)) > 0:
            more = self._consumer.consume(short, 0)
            if not more:
                break
            messages += more
        return messages

    def process(self, messages: Sequence[Any]) -> _Batch:
        """One transaction: re-fetch (before it opens), fence, derive, produce, send offsets, commit.

        The batch is parsed and its re-fetches made first (`_prepare`), possibly cutting it; then the
        transaction is open while the batch is judged: the batch goes to the fence in chunks
        (`VersionFence.stream_chunks`), and each chunk's messages are produced as soon as Redis judged
        it, so Redis judges a chunk, the broker takes the one before and Python parses the one after,
        all at once. When the stream cannot go on (Redis lost the script), that transaction is
        aborted and the batch judged again as a whole; so it is when more ties turn up than the
        transaction may re-fetch (`_TiesOutside`)."""
        failpoint("normalizer.consumed")
        prepared = self._prepare(messages)
        for judging_round in range(1, TIE_ROUNDS + 1):
            prepared.final = judging_round == TIE_ROUNDS
            try:
                return self._judge(prepared)
            except _TiesOutside as outside:
                log.info("normalizer %s: %s; judging the batch again", self.api, outside)
                self._refetch_ties(prepared, outside.ties)
        raise AssertionError("the final round settles its ties inline")  # pragma: no cover

    def _judge(self, prepared: _Prepared) -> _Batch:
        try:
            return self._transact(prepared, streamed=True)
        except Rejudge as why:
            log.info("normalizer %s: %s; judging the batch again as a whole", self.api, why)
            return self._transact(prepared, streamed=False)

    def _transact(self, prepared: _Prepared, streamed: bool) -> _Batch:
        messages = prepared.messages
        spans = _spans(messages)
        batch = _Batch(uuid.uuid4().hex[:12], self._positions(_spans(prepared.polled)), len(messages))
        self._fence.expect_committed(self._committed_offsets(spans))  # a ledger below them lost writes
        chunks = (self._observe_all(batch, prepared, start) for start in range(0, len(messages), FENCE_CHUNK))
        with self._producer.transaction():
            ties = []
            for pending, verdicts in self._judged(batch, chunks, streamed):
                for item, verdict in zip(pending, verdicts, strict=True):
                    if verdict.status == "conflict":
                        ties.append(item)
                    self._emit(batch, item[0], verdict)
                self._send(batch)
            if ties:
                self._settle_ties(batch, ties, prepared)
            self._send(batch)  # the ties' messages, and dead letters after the last judged chunk
            self._fence.mark_judged(self.api, _judged_ends(spans), self._epochs)
            failpoint("normalizer.fenced")  # the ledger has moved; Kafka holds the messages, uncommitted
            self._producer.send_offsets_to_transaction(_next_offsets(spans),
                                                       self._consumer.consumer_group_metadata())
            failpoint("normalizer.produced")  # produced with the offsets, not committed
        self._kafka_committed.update(_judged_ends(spans))
        failpoint("normalizer.committed")
        return batch

    def _judged(self, batch: _Batch, chunks: Iterator[list[Item]], streamed: bool,
                ) -> Iterable[tuple[Sequence[Item], list[Verdict]]]:
        """The chunks with their verdicts: streamed as Redis answers, or all at once (`batch.attempt`
        becomes the attempt the states were written under)."""
        if streamed:
            return self._fence.stream_chunks(chunks, batch.attempt, batch.positions, epochs=self._epochs)
        batch.attempt, judged = self._fence.check_chunks(chunks, batch.attempt, batch.positions, epochs=self._epochs)
        return judged

    def _send(self, batch: _Batch) -> None:
        """Queue what the batch emitted since the last call in its transaction."""
        self._producer.send_encoded(batch.out)
        batch.out.clear()

    def _observe_all(self, batch: _Batch, prepared: _Prepared, start: int) -> list[Item]:
        """The usable observations of FENCE_CHUNK messages from `start`, with where they were read; the
        rest dead-letter. Webhooks were parsed (and re-fetched) by `_prepare`; changes are parsed here."""
        pending, ready = [], prepared.ready
        for index, msg in enumerate(prepared.messages[start:start + FENCE_CHUNK], start):
            entry = ready[index] if index in ready else self._parsed(msg)
            if isinstance(entry, tuple):
                pending.append(entry)
            elif isinstance(entry, Deferral):
                self._write_back(batch, msg, entry)
            elif entry is not None:
                self._dead_letter(batch, msg, entry)
        return pending

    def _parsed(self, msg: Any) -> Item | str | None:
        """A message's observation and position, why it is a dead letter, or None if it names nothing synced."""
        source = SourcePosition(msg.topic(), msg.partition(), msg.offset())
        try:
            return self._observe(msg), source
        except NotSynced as exc:  # valid input about nothing synced: consumed without a record
            log.debug("normalizer %s: %s", self.api, exc)
            return None
        except Exception as exc:  # anything unusable is a dead letter, never a crash loop
            return str(exc) or type(exc).__name__

    def _observe(self, msg: Any) -> Observation:
        """Message → validated observation (a thin one is re-fetched by `_prepare`)."""
        if msg.value() is None:
            raise ObservationError("empty message value")
        if msg.topic().endswith(".webhooks"):
            headers = {k: v.decode("utf-8", "replace") for k, v in (msg.headers() or []) if v is not None}
            obs = parse_webhook(self.api, msg.value(), headers, _now_iso(), **self._webhook_options)
        else:
            obs = observation_from_change(msg.value())
        if not known_collection(self.api, obs, self._collections):
            raise ObservationError(f"observation {obs.key} is not a known {self.api} collection")
        return obs

    def _emit(self, batch: _Batch, obs: Observation, verdict: Verdict) -> None:
        """Record (or tombstone) and events for an accepted observation; nothing otherwise."""
        if not verdict.accepted:
            return
        records, secondary, events, event_stem = self._topics_of(obs.collection)
        key, headers, out = obs.key.encode(), [("apisync-version", str(obs.version).encode())], batch.out
        # Serialized once for both topics and, as a Fragment, inside every event; its data is the canonical
        # JSON (keys sorted) the fence already made, so the object itself is not serialized again.
        value = None if obs.deleted else orjson.dumps(record_value(obs, orjson.Fragment(obs.canonical_json())))
        out.append((records, key, value, headers))
        out.append((secondary, key, value, headers))
        record = None if value is None else orjson.Fragment(value)
        derived = derive_events(obs, verdict.previous, self._rules.get(obs.collection, ()), record)
        for event in derived:
            payload = orjson.dumps(event)
            out.append((events, key, payload, None))
            out.append((f"{event_stem}{event['type']}", key, payload, None))
        batch.count(obs, len(derived))

    def _topics_of(self, collection: str) -> tuple[str, str, str, str]:
        """(records, `<api>.<collection>`, events, `<api>.<collection>.` prefix of rule/event topics)."""
        if collection not in self._topics:
            ns = self._ns
            self._topics[collection] = (f"{ns}.records", f"{ns}.{collection}", f"{ns}.events", f"{ns}.{collection}.")
        return self._topics[collection]

    def _dead_letter(self, batch: _Batch, msg: Any, reason: str) -> None:
        value = {"reason": reason, "topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(),
                 "value": base64.b64encode(msg.value() or b"").decode()}
        batch.out.append((f"{self._ns}.dlq", msg.key(), orjson.dumps(value), None))
        batch.dead += 1
        log.warning("normalizer %s: dead letter %s[%d]@%d: %s", self.api, msg.topic(), msg.partition(),
                    msg.offset(), reason)
