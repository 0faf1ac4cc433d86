"""The normalizer: `<api>.changes` + `<api>.webhooks` → `<api>.records` / `<api>.events`, one writer per key.

Each batch is ONE Kafka transaction: consume (read_committed) → parse → version fence (Redis,
`apisync.fence`) → records, tombstones, events and dead letters, produced chunk by chunk as Redis
judges them, together with the consumed offsets (`send_offsets_to_transaction`) → commit. The
consumer group gives each partition one owner; the `range` assignor keeps partition N of both input
topics on the same member (both topics have the same partition count and murmur2 placement, so a key
lives on the same N in both). A static `group.instance.id` lets a restarted worker take its partitions
back at once, and reusing the transactional.id makes `init_transactions` abort whatever the dead
worker left open.

Re-fetches happen before the transaction opens (`apisync.refetch_plan`): the batch's webhooks are parsed
first, those that need the object from the API (thin webhooks, Stripe payloads in another API version)
are coalesced per record key into one read each (a list call of many ids where the API has one), and
the batch keeps only the prefix whose reads fit in `max_refetch_requests` (the budget's rate × 30 s);
the rest is sought back and read by the next poll. A key's fetched state is fenced at its last thin
message; its other thin messages are consumed with it. So neither the transaction nor the time between
two polls grows with a backlog of thin webhooks.

Ties: versions are whole seconds upstream, so two different contents can carry one version. The fence
answers "conflict" instead of letting arrival order decide; the normalizer re-fetches the object and
fences the server's current state as authoritative at that version (without a re-fetch client, arrival
order decides). Ties are only found while fencing, inside the transaction: up to `inline_tie_requests`
requests' worth are re-fetched there; more abort that transaction, are re-fetched outside it (the batch
cut before the first tie past the bound) and the batch is judged again with their states. A re-fetch the
API refuses (a fatal answer) dead-letters its messages; one that fails transiently is deferred: the
message is written back to its own input topic (same key, same partition) in the batch's transaction
with headers saying when it is due, and the batch commits past it, so nothing else waits for that
object; past the give-up time it is dead-lettered (`apisync.refetch_outcomes`). A deferred message read
before it is due is written back again unchanged (no request) when its batch has other work; a batch of
nothing but such messages waits for the first to be due, at most `DEFER_WAIT_S`, and is otherwise
sought back and read again, so a lone deferral neither spins nor holds other partitions for long.

Fence vs transaction: the fence is written before the commit and may be ahead of Kafka after a crash
or an abort; the ledger therefore tags each state with its source offset and batch attempt and rolls
back states from uncommitted attempts on re-delivery (see `apisync.fence`'s docstring). Every batch
passes the start position of each assigned partition so the script can tell committed from not.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import gc
import logging
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, TopicPartition

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
    LEDGER_PREFIX,
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
from apisync.kafka.connect import check_kafka
from apisync.kafka.producer import DeliveryError, Producer, TransactionError
from apisync.ledger import ensure_ledger, normalizer_group
from apisync.metrics import NULL_METRICS, Metrics, metric_name
from apisync.refetch_outcomes import (
    DeferPolicy,
    Deferral,
    GuardedRefetch,
    RefetchDeferred,
    RefetchRefused,
    merged,
    with_deferral,
)
from apisync.refetch_plan import DEFAULT_MAX_REQUESTS, Wanted, coalesced, cut, representative, request_bound
from apisync.rules import Rule
from apisync.webhooks.dispatch import parse_webhook

log = logging.getLogger("apisync.normalizer")

MAX_FAILED_BATCHES = 3
# Tie re-fetch requests made inside a transaction; more are made outside it (see the module docstring).
INLINE_TIE_REQUESTS = 2
# Judging rounds of one batch whose ties are re-fetched outside the transaction; a last round settles
# whatever ties are still unknown inline (only ties that appeared after the previous round, which a
# single owner per partition does not produce).
TIE_ROUNDS = 2
# Longest wait for a deferred message to be due when its batch holds nothing else; well below the consumer's
# max.poll.interval.ms (300 s), short enough that messages arriving meanwhile wait little.
DEFER_WAIT_S = 5.0
FENCE_CHUNK = 500  # observations per fence call: a batch is judged in several, pipelined
# Observations per transaction at most (~3.4 MB). Each batch pays fixed round trips (offsets, commit,
# flush); 5,000 halves them per observation against 2,000, though the benchmark cannot tell the two
# apart on two cores (README, Benchmarks).
DEFAULT_BATCH_SIZE = 5000
# Prefetch at most ~8 MiB queued and 8 MiB per fetch (librdkafka's defaults, 64 MiB and 50 MiB, let a
# normalizer's RSS grow with its backlog up to ~150 MiB); a batch of 5,000 observations is ~3.4 MB, so
# the queue still holds two batches. The connection's extra may override them.
FETCH_DEFAULTS = {"queued.max.messages.kbytes": 8192, "fetch.max.bytes": 8 * 1024 * 1024}


def known_collection(api: str, obs: Observation, collections: Collection[str] | None = None) -> bool:
    """Whether an observation belongs to one of `api`'s registered collections (else: dead letter);
    `collections`: the registry's answer, read once by a caller that asks per observation."""
    return obs.api == api and obs.collection in (registry.COLLECTIONS.get(api, ()) if collections is None
                                                 else collections)


def tune_gc() -> None:
    """Fewer, cheaper garbage collections for a normalizer process.

    A batch allocates tens of short-lived containers per observation: at Python's default gen-0
    threshold (700) a full collection, which walks every object imported at start-up, ran every
    ~1,500 observations, about a tenth of the normalizer's time. What start-up left behind is frozen
    out of collections, and gen 0 is collected every 50,000 allocations (the normalizer itself makes
    no reference cycles, so this only delays freeing the rare ones)."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


@dataclass(frozen=True, slots=True)
class NormalizerStats:
    """What one run did."""

    batches: int = 0
    consumed: int = 0
    records: int = 0
    events: int = 0
    dead_letters: int = 0
    aborted: int = 0
    deferred: int = 0  # messages written back to be re-fetched later (a re-fetch failed transiently)


@dataclass(slots=True)
class _Batch:
    """Working state of one batch attempt."""

    attempt: str
    positions: dict[str, int]
    consumed: int = 0  # messages this transaction commits (the batch may have been cut)
    out: list[tuple[str, bytes | None, bytes | None, list | None]] = field(default_factory=list)  # wire form
    dead: int = 0
    deferred: int = 0
    # per collection: [records, events, the oldest synced_at among its accepted observations]
    tally: dict[str, list] = field(default_factory=dict)

    def count(self, obs: Observation, events: int) -> None:
        entry = self.tally.setdefault(obs.collection, [0, 0, obs.synced_at])
        entry[0], entry[1], entry[2] = entry[0] + 1, entry[1] + events, min(entry[2], obs.synced_at)

    @property
    def records(self) -> int:
        return sum(entry[0] for entry in self.tally.values())

    @property
    def events(self) -> int:
        return sum(entry[1] for entry in self.tally.values())


@dataclass(slots=True)
class _Prepared:
    """A batch parsed and re-fetched before its transaction opens."""

    polled: Sequence[Any]  # every message polled; their first offsets are the partitions' start positions
    take: int  # the transaction consumes polled[:take]; the rest was sought back
    # per webhook (or deferred) message index: its item, a dead letter's reason, a deferral to write it back
    # with, or None (a later message of its key stands for it)
    ready: dict[int, Item | str | Deferral | None]
    requests: int = 0  # re-fetch requests made for this batch
    tie_states: dict[SourcePosition, Observation | RefetchRefused | RefetchDeferred] = field(default_factory=dict)
    final: bool = False  # the last judging round: unknown ties are settled inline

    @property
    def messages(self) -> Sequence[Any]:
        """What this transaction consumes."""
        return self.polled[:self.take]


class _NothingDue(Exception):  # noqa: N818 - a control-flow signal, not an error
    """A batch of deferred messages none of which is due yet: it was sought back, to be read again."""

    def __init__(self, partitions: Iterable[tuple[str, int]]) -> None:
        super().__init__("no deferred message of the batch is due yet")
        self.partitions = list(partitions)


class _TiesOutside(Exception):  # noqa: N818 - a control-flow signal, not an error
    """More ties than the transaction may re-fetch: abort it and re-fetch them outside."""

    def __init__(self, ties: list[Item]) -> None:
        super().__init__(f"{len(ties)} equal-version ties to re-fetch outside the transaction")
        self.ties = ties


class NormalizerMetrics:
    """After each committed batch: `apisync.normalizer.<api>.{batches,consumed,dlq}`, the batch's time
    (`.batch`, ms), and per collection `.<collection>.{records,events}` and `.<collection>.lag` (seconds
    from the oldest observation's synced_at to the commit). Aborted batches count only `.aborted`."""

    def __init__(self, metrics: Metrics, api: str, clock: Callable[[], float] = time.time) -> None:
        self._metrics, self._api, self._clock = metrics, api, clock

    def committed(self, batch: _Batch, consumed: int, ms: float) -> None:
        m, api, tags = self._metrics, self._api, {"api": self._api}
        m.incr(metric_name("normalizer", api, "batches"), 1, tags)
        m.incr(metric_name("normalizer", api, "consumed"), consumed, tags)
        m.timing(metric_name("normalizer", api, "batch"), round(ms, 1), tags)
        if batch.dead:
            m.incr(metric_name("normalizer", api, "dlq"), batch.dead, tags)
        now = self._clock()
        for collection, (records, events, oldest) in batch.tally.items():
            ctags = {"api": api, "collection": collection}
            m.incr(metric_name("normalizer", api, collection, "records"), records, ctags)
            if events:
                m.incr(metric_name("normalizer", api, collection, "events"), events, ctags)
            with contextlib.suppress(ValueError):
                lag = now - datetime.fromisoformat(oldest).timestamp()
                m.gauge(metric_name("normalizer", api, collection, "lag"), round(max(0.0, lag), 3), ctags)

    def aborted(self) -> None:
        self._metrics.incr(metric_name("normalizer", self._api, "aborted"), 1, {"api": self._api})


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


def _now_iso() -> str:
    return datetime.now(tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Normalizer:
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
        self._version_warned = False  # the Stripe version mismatch is said once per run
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
        all at once. When the stream cannot go on (a ledger state from an older apisync decides, or
        Redis lost the script), that transaction is aborted and the batch judged again as a whole; so
        it is when more ties turn up than the transaction may re-fetch (`_TiesOutside`)."""
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

    def _prepare(self, messages: Sequence[Any]) -> _Prepared:
        """Parse the batch's webhooks and make its re-fetches, before any transaction: coalesced per key,
        the batch cut where they would pass `max_refetch_requests` (the rest sought back)."""
        ready: dict[int, Item | str | Deferral | None] = {}
        self._hold_early(messages, ready)
        needs: list[tuple[int, Observation]] = []
        for index, msg in enumerate(messages):
            if index in ready or not msg.topic().endswith(".webhooks"):
                continue
            entry = ready[index] = self._parsed(msg)
            if isinstance(entry, tuple) and entry[0].thin:
                if self._refetch is None:
                    ready[index] = f"thin webhook for {entry[0].key} and no re-fetch client configured"
                else:
                    self._warn_version(msg, entry[0])
                    needs.append((index, entry[0]))
        prepared = _Prepared(messages, len(messages), ready)
        if needs:
            carried, self._carried = self._carried, {}
            reused, fetch = self._covered(messages, carried, needs)
            self._cut(prepared, coalesced(fetch), lambda item: ready[item.last][0].collection,
                      self._max_refetch_requests)
            self._reuse(prepared, carried, coalesced((i, obs) for i, obs in reused if i < prepared.take))
            fetched = self._refetch_thin(prepared, coalesced((i, obs) for i, obs in fetch if i < prepared.take))
            self._carry(prepared, needs, fetched, carried)
        return prepared

    def _hold_early(self, messages: Sequence[Any], ready: dict[int, Item | str | Deferral | None]) -> None:
        """Deferred messages not due yet are written back unchanged (no request) when the batch has other
        work; a batch of nothing else waits for the first to be due, at most DEFER_WAIT_S, and raises
        _NothingDue (sought back) if none is due by then."""
        early = self._not_due(messages)
        if early and len(early) == len(messages):
            first_due = min(deferral.not_before for deferral in early.values())
            self._sleep(max(0.0, min(first_due - self._wall_clock(), DEFER_WAIT_S)))
            early = self._not_due(messages)
            if len(early) == len(messages):
                at_end = [(t, p) for t, p in _spans(messages) if f"{t}:{p}" in self._at_end]
                self._seek_back(messages)
                raise _NothingDue(at_end)
        if early:
            log.debug("normalizer %s: %d deferred messages are not due yet; written back", self.api, len(early))
        ready.update(early)

    def _not_due(self, messages: Sequence[Any]) -> dict[int, Deferral]:
        """The batch's deferred messages whose not-before time is still ahead, by batch index."""
        now, early = self._wall_clock(), {}
        for index, msg in enumerate(messages):
            headers = msg.headers()
            deferral = Deferral.of(headers) if headers else None
            if deferral is not None and deferral.not_before > now:
                early[index] = deferral
        return early

    def _deferral(self, messages: Iterable[Any], failure: RefetchDeferred, key: str) -> Deferral | RefetchRefused:
        """The next deferral of an object's messages whose re-fetch failed transiently, or the dead
        letter that ends deferring (past the give-up time); one log line either way."""
        previous = merged(Deferral.of(msg.headers()) for msg in messages)
        outcome = self._defer.after(previous, str(failure), self._wall_clock())
        if isinstance(outcome, Deferral):
            log.warning("normalizer %s: %s deferred (%d), due in %.0f s: %s", self.api, key, outcome.count,
                        outcome.not_before - self._wall_clock(), failure)
        return outcome

    def _write_back(self, batch: _Batch, msg: Any, deferral: Deferral, key: str | None = None) -> None:
        """A deferred message back to its own topic with its deferral headers: the same key, so the same
        partition, in this batch's transaction (so it is neither lost nor doubled by a crash)."""
        batch.out.append((msg.topic(), msg.key() or (key.encode() if key else None), msg.value(),
                          with_deferral(msg.headers(), deferral)))
        batch.deferred += 1

    @staticmethod
    def _covered(messages: Sequence[Any], carried: Mapping[str, tuple[Observation, dict]],
                 needs: list[tuple[int, Observation]]) -> tuple[list, list]:
        """(needs a state fetched after their message was polled already answers, needs to fetch)."""
        reused, fetch = [], []
        for index, obs in needs:
            msg, kept = messages[index], carried.get(obs.key)
            covered = kept is not None and msg.offset() <= kept[1].get((msg.topic(), msg.partition()), -1)
            (reused if covered else fetch).append((index, obs))
        return reused, fetch

    def _reuse(self, prepared: _Prepared, carried: Mapping[str, tuple[Observation, dict]],
               wanted: Sequence[Wanted]) -> None:
        """Thin messages of a key fetched after they were polled: that state stands for them, no request."""
        ready = prepared.ready
        for item in wanted:
            state, newest = carried[item.key][0], max(ready[i][0].version for i in item.indexes)
            ready.update((i, None) for i in item.indexes[:-1])
            ready[item.last] = (dataclasses.replace(state, version=max(state.version, newest)), ready[item.last][1])

    def _carry(self, prepared: _Prepared, needs: list[tuple[int, Observation]],
               fetched: Mapping[str, Observation | Exception], carried: Mapping[str, tuple]) -> None:
        """Keep the states of keys with thin messages in the cut-off rest, with the polled ends they cover:
        the rest was polled before those reads, so the next batch needs no new read for it. At most one
        entry per key of the batch."""
        ends = {tp: last for tp, (_first, last) in _spans(prepared.polled).items()}
        for key in {obs.key for index, obs in needs if index >= prepared.take}:
            if isinstance(fetched.get(key), Observation):
                self._carried[key] = (fetched[key], ends)
            elif key in carried:
                self._carried[key] = carried[key]

    def _cut(self, prepared: _Prepared, wanted: Sequence[Wanted], collection_of: Callable[[Wanted], str],
             max_requests: int | None) -> None:
        """End the batch before the first object past the bound and seek the rest back to be polled again."""
        at = cut(wanted, collection_of, self._refetch.requests, max_requests)
        if at is None or at >= prepared.take:
            return
        log.info("normalizer %s: the batch's re-fetches need more than %d requests; committing %d of its %d "
                 "messages now, the rest next", self.api, max_requests, at, prepared.take)
        prepared.take = at
        self._seek_back(prepared.polled[at:])

    def _refetch_thin(self, prepared: _Prepared, wanted: Sequence[Wanted]) -> dict[str, Observation | Exception]:
        """One read per key; its current state stands for the key's thin messages, fenced at the last. A
        key whose read failed transiently is deferred: its newest message is written back for all of them."""
        ready = prepared.ready
        asks = [(representative([ready[i][0] for i in item.indexes]), [ready[i][1] for i in item.indexes])
                for item in wanted]
        prepared.requests += self._refetch.requests(_per_collection(obs for obs, _sources in asks))
        fetched = {}
        for item, outcome in zip(wanted, self._refetch.many(asks), strict=True):
            fetched[item.key] = outcome
            if isinstance(outcome, RefetchDeferred):
                outcome = self._deferral((prepared.messages[i] for i in item.indexes), outcome, item.key)
            if isinstance(outcome, RefetchRefused):
                ready.update((i, str(outcome)) for i in item.indexes)
                continue
            if isinstance(outcome, Deferral):
                newest = max(item.indexes, key=lambda i: ready[i][0].version)
                ready.update((i, None) for i in item.indexes)
                ready[newest] = outcome
                continue
            ready.update((i, None) for i in item.indexes[:-1])
            ready[item.last] = (outcome, ready[item.last][1])
        return fetched

    def _refetch_ties(self, prepared: _Prepared, ties: list[Item]) -> None:
        """Re-fetch ties outside the transaction, within what the batch's bound has left (cutting the
        batch before the first tie past it); the next round judges them with these states."""
        index_of = {SourcePosition(m.topic(), m.partition(), m.offset()): i for i, m in enumerate(prepared.messages)}
        ties = sorted(ties, key=lambda item: index_of[item[1]])
        items = {index_of[source]: (obs, source) for obs, source in ties}
        wanted = coalesced((index, obs) for index, (obs, _source) in items.items())
        left = None if self._max_refetch_requests is None else self._max_refetch_requests - prepared.requests
        self._cut(prepared, wanted, lambda item: items[item.last][0].collection, None if left is None else max(1, left))
        kept = [items[i] for i in sorted(items) if i < prepared.take]
        prepared.requests += self._fetch_ties(prepared, kept)

    def _fetch_ties(self, prepared: _Prepared, ties: Sequence[Item]) -> int:
        """Re-fetch ties, one read per key, into `prepared.tie_states`; the number of requests made."""
        by_key: dict[str, list[Item]] = {}
        for obs, source in ties:
            by_key.setdefault(obs.key, []).append((obs, source))
        asks = [(representative([obs for obs, _s in group]), [s for _obs, s in group]) for group in by_key.values()]
        for (_obs, sources), outcome in zip(asks, self._refetch.many(asks), strict=True):
            prepared.tie_states.update((source, outcome) for source in sources)
        return self._refetch.requests(_per_collection(obs for obs, _sources in asks))

    def _warn_version(self, msg: Any, obs: Observation) -> None:
        """Once per run: Stripe payloads rendered in another API version than the pinned one."""
        pinned = self._webhook_options.get("api_version")
        if self._version_warned or self.api != "stripe" or pinned is None:
            return
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
            event = orjson.loads(msg.value())
            version = event.get("api_version")
            if version not in (None, pinned) and isinstance((event.get("data") or {}).get("object"), dict):
                self._version_warned = True
                log.warning("normalizer stripe: webhook events arrive in API version %s but apisync pins %s, so "
                            "every such event's object is re-fetched (one request each); set the webhook "
                            "endpoint's API version to %s, or the connection extra `api_version` to %s if "
                            "apisync should read that version", version, pinned, pinned, version)

    def _seek_back(self, rest: Sequence[Any]) -> None:
        """Seek each partition of `rest` to its first message, to be polled again."""
        for (topic, partition), (first, _last) in _spans(rest).items():
            self._at_end.discard(f"{topic}:{partition}")
            self._consumer.seek(TopicPartition(topic, partition, first))

    def _settle_ties(self, batch: _Batch, ties: list[Item], prepared: _Prepared) -> None:
        """Equal version, different content: the server's current state decides (arrival order without a
        client); a tie whose object the API refuses is a dead letter. Ties re-fetched outside the
        transaction are settled with those states; more than `inline_tie_requests` unknown ones abort."""
        known = prepared.tie_states
        unknown = [item for item in ties if item[1] not in known]
        if unknown and self._refetch is not None:
            keys = {obs.key: obs for obs, _source in unknown}.values()
            if not prepared.final and self._refetch.requests(_per_collection(keys)) > self._inline_tie_requests:
                raise _TiesOutside(unknown)
            self._fetch_ties(prepared, unknown)  # a few requests, or ties that appeared in the last round
        settled, unsettled = [], []
        for obs, source in ties:
            state = known.get(source, obs)  # without a client, arrival order decides
            if isinstance(state, Exception):
                unsettled.append((obs, source, state))
            else:
                settled.append((dataclasses.replace(state, version=max(state.version, obs.version)), source))
        if unsettled:
            self._unsettled_ties(batch, unsettled, prepared)
        verdicts = self._fence.check_many(settled, batch.attempt, batch.positions, authoritative=True,
                                          epochs=self._epochs)
        for (obs, _source), verdict in zip(settled, verdicts, strict=True):
            self._emit(batch, obs, verdict)

    def _unsettled_ties(self, batch: _Batch, ties: Sequence[tuple[Observation, SourcePosition, Exception]],
                        prepared: _Prepared) -> None:
        """Ties the API refused are dead letters; those whose re-fetch failed transiently are deferred."""
        by_source = {SourcePosition(m.topic(), m.partition(), m.offset()): m for m in prepared.messages}
        for obs, source, failure in ties:
            msg = by_source[source]
            outcome = self._deferral([msg], failure, obs.key) if isinstance(failure, RefetchDeferred) else failure
            if isinstance(outcome, Deferral):
                self._write_back(batch, msg, outcome, obs.key)
            else:
                self._dead_letter(batch, msg, str(outcome))

    def _committed_offsets(self, spans: Mapping[tuple[str, int], tuple[int, int]]) -> dict[str, int]:
        """Kafka's committed offset of each partition of the batch: the broker's word once per assignment,
        then this owner's own commits (only the owner moves it, and a broker round trip per batch would
        wait for the previous commit's markers)."""
        unknown = [TopicPartition(t, p) for t, p in spans if f"{t}:{p}" not in self._kafka_committed]
        try:
            for tp in self._consumer.committed(unknown, timeout=10) if unknown else []:
                self._kafka_committed[f"{tp.topic}:{tp.partition}"] = max(tp.offset, 0)
        except KafkaException as exc:  # unknown, the ledger cannot be checked: read the batch again
            raise LedgerUnavailable(f"the committed offsets to check the ledger against: {exc}") from None
        return {f"{t}:{p}": self._kafka_committed[f"{t}:{p}"] for t, p in spans}

    def _on_assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._kafka_committed.pop(f"{tp.topic}:{tp.partition}", None)
            self._unconsumed_start.pop(f"{tp.topic}:{tp.partition}", None)
            self._at_end.discard(f"{tp.topic}:{tp.partition}")
        self._epochs.update(self._fence.claim(f"{tp.topic}:{tp.partition}" for tp in partitions))
        failpoint("normalizer.claimed")

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        self._carried.clear()  # an optimisation only: the next owner reads again
        for tp in partitions:
            self._epochs.pop(f"{tp.topic}:{tp.partition}", None)
            self._unconsumed_start.pop(f"{tp.topic}:{tp.partition}", None)
            self._at_end.discard(f"{tp.topic}:{tp.partition}")

    def assignment(self) -> list[TopicPartition]:
        """The partitions this worker owns now (empty until the group assigned some)."""
        return self._consumer.assignment()

    def close(self) -> None:
        """Close the consumer; as a static member its partitions wait session.timeout.ms for a restart."""
        self._consumer.close()

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

    def _positions(self, spans: Mapping[tuple[str, int], tuple[int, int]]) -> dict[str, int]:
        """Start position of every assigned partition for this batch (the committed offsets)."""
        positions: dict[str, int] = {}
        assigned = self._consumer.assignment()
        for tp in self._consumer.position(assigned) if assigned else []:
            positions[f"{tp.topic}:{tp.partition}"] = tp.offset
        unknown = [tp for tp in assigned if positions.get(f"{tp.topic}:{tp.partition}", -1) < 0]
        missing = [tp for tp in unknown if f"{tp.topic}:{tp.partition}" not in self._unconsumed_start]
        if missing:  # one broker round trip per assignment, not per batch
            for tp in self._consumer.committed(missing, timeout=10):
                # nothing committed yet: every ledger state from this partition is uncommitted
                start = max(tp.offset, 0) if tp.offset != OFFSET_INVALID else 0
                self._unconsumed_start[f"{tp.topic}:{tp.partition}"] = start
        for tp in unknown:
            positions[f"{tp.topic}:{tp.partition}"] = self._unconsumed_start[f"{tp.topic}:{tp.partition}"]
        for (topic, partition), (first, _last) in spans.items():
            # position() has already moved past this batch: its partitions start at their first message
            positions[f"{topic}:{partition}"] = first
        return positions

    def _rewind(self, messages: Sequence[Any]) -> None:
        """After a failed batch, seek each of its partitions back to the group's committed offset."""
        spans = _spans(messages)
        tps = [TopicPartition(t, p) for t, p in spans]
        self._at_end.difference_update(f"{t}:{p}" for t, p in spans)  # to be read again
        try:
            # the broker's word, not the batch start: a commit that failed ambiguously may have landed
            committed = {(tp.topic, tp.partition): tp.offset for tp in self._consumer.committed(tps, timeout=10)}
        except KafkaException:
            committed = {}
        for tp in tps:
            offset = committed.get((tp.topic, tp.partition), OFFSET_INVALID)
            if offset < 0:
                offset = spans[(tp.topic, tp.partition)][0]
            try:
                self._consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
            except KafkaException as exc:  # revoked meanwhile: its new owner starts from the committed offset
                log.info("normalizer %s: cannot rewind %s[%d]: %s", self.api, tp.topic, tp.partition, exc)


def _spans(messages: Sequence[Any]) -> dict[tuple[str, int], tuple[int, int]]:
    """(first offset, last offset) of each (topic, partition) in a batch, in one pass."""
    spans: dict[tuple[str, int], tuple[int, int]] = {}
    for m in messages:
        tp, offset = (m.topic(), m.partition()), m.offset()
        first, last = spans.get(tp, (offset, offset))
        spans[tp] = (min(first, offset), max(last, offset))
    return spans


def _per_collection(observations: Iterable[Observation]) -> list[int]:
    """How many of these observations each collection has."""
    counts: dict[str, int] = {}
    for obs in observations:
        counts[obs.collection] = counts.get(obs.collection, 0) + 1
    return list(counts.values())


def _judged_ends(spans: Mapping[tuple[str, int], tuple[int, int]]) -> dict[str, int]:
    """Per `topic:partition` of a batch, the offset after its last message (what its commit records)."""
    return {f"{t}:{p}": last + 1 for (t, p), (_first, last) in spans.items()}


def _next_offsets(spans: Mapping[tuple[str, int], tuple[int, int]]) -> list[TopicPartition]:
    """Offsets to commit: one past the last message of each partition."""
    return [TopicPartition(t, p, last + 1) for (t, p), (_first, last) in spans.items()]


def _add(stats: NormalizerStats, batch: _Batch | None, consumed: int) -> NormalizerStats:
    if batch is None:
        return dataclasses.replace(stats, aborted=stats.aborted + 1)
    return NormalizerStats(stats.batches + 1, stats.consumed + consumed, stats.records + batch.records,
                           stats.events + batch.events, stats.dead_letters + batch.dead, stats.aborted,
                           stats.deferred + batch.deferred)


class NormalizerSetupError(Exception):
    """The normalizer cannot start (e.g. its output topics do not exist)."""


def output_topics(api: str, rules: Mapping[str, Sequence[Rule]], namespace: str = "") -> list[str]:
    """Every topic the normalizer of one api may write to."""
    stem = f"{namespace}{api}"
    names = [f"{stem}.records", f"{stem}.events", f"{stem}.dlq"]
    for collection in registry.COLLECTIONS.get(api, ()):
        kinds = [*registry.BASE_EVENT_TYPES, *(r.event for r in rules.get(collection, ()))]
        names += [f"{stem}.{collection}"] + [f"{stem}.{collection}.{kind}" for kind in dict.fromkeys(kinds)]
    return names


def missing_topics(client: Any, names: Sequence[str], timeout: float = 30.0) -> list[str]:
    """Names absent from the cluster; a produce to one would fail every transaction."""
    existing = set(client.list_topics(timeout=timeout).topics)
    return [name for name in names if name not in existing]


def open_normalizer(api: str, kafka_config: Mapping[str, Any], redis_client: Any, *, instance: str = "0",
                    namespace: str = "", ledger_prefix: str = LEDGER_PREFIX,
                    refetch: Callable[[Observation], Observation] | None = None, **options: Any) -> Normalizer:
    """A Normalizer with its own consumer and transactional producer (init_transactions fences zombies)."""
    check_kafka(kafka_config)  # a refused login fails now, in one line
    consumer = Consumer(consumer_config(api, kafka_config, instance, namespace))
    missing = missing_topics(consumer, output_topics(api, registry.default_rules(api), namespace))
    if missing:
        consumer.close()
        raise NormalizerSetupError(f"normalizer {api}: topics missing: {', '.join(missing)}; "
                                   f"create them with `python -m apisync topics ensure` (rule event topics included)")
    def recover() -> str:
        return ensure_ledger(api, kafka_config, redis_client, namespace=namespace, ledger_prefix=ledger_prefix)

    recover()  # a ledger Redis lost is rebuilt before anything is fenced
    producer = Producer(producer_config(api, kafka_config, instance, namespace))
    return Normalizer(api, consumer, producer, VersionFence(redis_client, ledger_prefix), refetch=refetch,
                      namespace=namespace, recover_ledger=recover, **options)


def normalize(api: str, kafka_config: Mapping[str, Any], redis_url: str, max_seconds: float | None = None,
              instance: str = "0", api_settings: Any = None, batch_size: int = DEFAULT_BATCH_SIZE,
              until_idle: bool = False, metrics: Metrics = NULL_METRICS) -> NormalizerStats:
    """Entry point for `python -m apisync normalize <api> [--max-seconds N]` and the Airflow task.

    With `until_idle` it returns once every partition it owns is read to its end (an asset-triggered
    run), else after max_seconds (None: never). With `api_settings` (the API connection), thin webhooks
    and equal-version ties are re-fetched from the API on the webhook lane of the shared budget;
    without, thin webhooks dead-letter.
    """
    with opened_normalizer(api, kafka_config, redis_url, instance=instance, api_settings=api_settings,
                           batch_size=batch_size, metrics=metrics) as normalizer:
        return normalizer.run(max_seconds=max_seconds, stop_when_idle=until_idle)


@contextlib.contextmanager
def opened_normalizer(api: str, kafka_config: Mapping[str, Any], redis_url: str, *, instance: str = "0",
                      api_settings: Any = None, batch_size: int = DEFAULT_BATCH_SIZE,
                      metrics: Metrics = NULL_METRICS, **options: Any) -> Iterator[Normalizer]:
    """A ready Normalizer (re-fetch client included), closed on the way out; `options` go to
    `open_normalizer` (namespace, ledger_prefix, poll_timeout...)."""
    import redis

    tune_gc()  # every caller is a normalizer process (CLI, follow service, Airflow task)
    with contextlib.ExitStack() as stack:
        # the caller's options win (e.g. a test's smaller max_refetch_requests)
        options = {**refetch_options(api, kafka_config, redis_url, api_settings, stack, metrics), **options}
        normalizer = open_normalizer(api, kafka_config, redis.Redis.from_url(redis_url), instance=instance,
                                     batch_size=batch_size, metrics=metrics, **options)
        stack.callback(normalizer.close)
        yield normalizer


def refetch_options(api: str, kafka_config: Mapping[str, Any], redis_url: str, api_settings: Any,
                    stack: contextlib.ExitStack, metrics: Metrics = NULL_METRICS) -> dict[str, Any]:
    """`refetch` and `webhook_options` from the API's source, with a client on the webhook lane."""
    if api_settings is None:
        log.warning("normalizer %s: no API connection, so thin webhooks go to %s.dlq and equal-version ties "
                    "are decided by arrival order", api, api)
        return {}
    from apisync.registry import build_source, spec_for
    from apisync.settings import SyncSettings
    from apisync.sync.runner import api_client
    from apisync.webhooks.refetch import source_refetcher

    source = build_source(api_settings)
    client, _limiter = stack.enter_context(api_client(SyncSettings(kafka_config, redis_url, api_settings),
                                                      "webhook", source, metrics))
    rate = api_settings.rate_per_s or spec_for(api_settings.api).default_rate_per_s  # as api_client reads it
    return {"refetch": source_refetcher(source, client), "webhook_options": getattr(source, "webhook_options", None),
            "max_refetch_requests": request_bound(rate)}
