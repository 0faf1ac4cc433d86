"""Equal-version ties, settled by the server's current state.

Ties: versions are whole seconds upstream, so two different contents can carry one version. The fence
answers "conflict" instead of letting arrival order decide; the normalizer re-fetches the object and
fences the server's current state as authoritative at that version (without a re-fetch client, arrival
order decides). Ties are only found while fencing, inside the transaction: up to `inline_tie_requests`
requests' worth are re-fetched there; more abort that transaction, are re-fetched outside it (the batch
cut before the first tie past the bound) and the batch is judged again with their states.

A tie whose re-fetch the API refuses (a fatal answer) dead-letters its messages; one whose re-fetch fails
transiently is deferred (`apisync.normalizer.deferrals`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from apisync.events import Observation
from apisync.fence import Item, SourcePosition
from apisync.normalizer.batch import _Batch, _per_collection, _Prepared
from apisync.refetch_outcomes import Deferral, RefetchDeferred
from apisync.refetch_plan import coalesced, representative

# Tie re-fetch requests made inside a transaction; more are made outside it (see the module docstring).
INLINE_TIE_REQUESTS = 2
# Judging rounds of one batch whose ties are re-fetched outside the transaction; a last round settles
# whatever ties are still unknown inline (only ties that appeared after the previous round, which a
# single owner per partition does not produce).
TIE_ROUNDS = 2


class _TiesOutside(Exception):  # noqa: N818 - a control-flow signal, not an error
    """More ties than the transaction may re-fetch: abort it and re-fetch them outside."""

    def __init__(self, ties: list[Item]) -> None:
        super().__init__(f"{len(ties)} equal-version ties to re-fetch outside the transaction")
        self.ties = ties


class _TieSettling:
    """The Normalizer's tie settling (a part of `Normalizer`, whose `__init__` sets the state used here)."""

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
