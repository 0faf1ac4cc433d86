"""Deferred re-fetches: a message whose re-fetch failed transiently goes back to its own input topic.

The message is written back (same key, same partition) in the batch's transaction with headers saying
when it is due, and the batch commits past it, so nothing else waits for that object; past the give-up
time it is dead-lettered (`apisync.refetch_outcomes`). A deferred message read before it is due is
written back again unchanged (no request) when its batch has other work; a batch of nothing but such
messages waits for the first to be due, at most `DEFER_WAIT_S`, and is otherwise sought back and read
again, so a lone deferral neither spins nor holds other partitions for long.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from apisync.fence import Item
from apisync.normalizer.batch import _Batch, _spans
from apisync.refetch_outcomes import Deferral, RefetchDeferred, RefetchRefused, merged, with_deferral

log = logging.getLogger("apisync.normalizer")

# Longest wait for a deferred message to be due when its batch holds nothing else; well below the consumer's
# max.poll.interval.ms (300 s), short enough that messages arriving meanwhile wait little.
DEFER_WAIT_S = 5.0


class _NothingDue(Exception):  # noqa: N818 - a control-flow signal, not an error
    """A batch of deferred messages none of which is due yet: it was sought back, to be read again."""

    def __init__(self, partitions: Iterable[tuple[str, int]]) -> None:
        super().__init__("no deferred message of the batch is due yet")
        self.partitions = list(partitions)


class _Deferrals:
    """The Normalizer's deferrals (a part of `Normalizer`, whose `__init__` sets the state used here)."""

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
