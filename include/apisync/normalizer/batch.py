"""One batch's working state, and the per-partition offset arithmetic over its messages."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import TopicPartition

from apisync.events import Observation
from apisync.fence import Item, SourcePosition
from apisync.refetch_outcomes import Deferral, RefetchDeferred, RefetchRefused


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
