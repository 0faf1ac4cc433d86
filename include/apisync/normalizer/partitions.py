"""The assigned partitions: their start positions and committed offsets, owner epochs, seeking back."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import OFFSET_INVALID, KafkaException, TopicPartition

from apisync.failpoints import failpoint
from apisync.fence import LedgerUnavailable
from apisync.normalizer.batch import _spans

log = logging.getLogger("apisync.normalizer")


class _Partitions:
    """The Normalizer's partition bookkeeping (a part of `Normalizer`, whose `__init__` sets the state used
    here); the consumer calls `_on_assign` and `_on_revoke` on a rebalance."""

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

    def _seek_back(self, rest: Sequence[Any]) -> None:
        """Seek each partition of `rest` to its first message, to be polled again."""
        for (topic, partition), (first, _last) in _spans(rest).items():
            self._at_end.discard(f"{topic}:{partition}")
            self._consumer.seek(TopicPartition(topic, partition, first))
