"""A batch prepared before its transaction opens: its webhooks parsed, its re-fetches made.

Re-fetches happen before the transaction opens (`apisync.refetch_plan`): the batch's webhooks are parsed
first, those that need the object from the API (thin webhooks, Stripe payloads in another API version)
are coalesced per record key into one read each (a list call of many ids where the API has one), and
the batch keeps only the prefix whose reads fit in `max_refetch_requests` (the budget's rate × 30 s);
the rest is sought back and read by the next poll. A key's fetched state is fenced at its last thin
message; its other thin messages are consumed with it. So neither the transaction nor the time between
two polls grows with a backlog of thin webhooks.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from apisync import registry
from apisync.events import Observation
from apisync.fence import Item
from apisync.normalizer.batch import _per_collection, _Prepared, _spans
from apisync.refetch_outcomes import Deferral, RefetchDeferred, RefetchRefused
from apisync.refetch_plan import Wanted, coalesced, cut, representative

log = logging.getLogger("apisync.normalizer")


class _BatchPreparation:
    """The Normalizer's work before a transaction (a part of `Normalizer`, whose `__init__` sets the state
    used here)."""

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
                    self._say_refetch_hint(msg, entry[0])
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

    def _say_refetch_hint(self, msg: Any, obs: Observation) -> None:
        """Once per run: a thin webhook whose re-fetch a setting would spare (`WebhookSpec.refetch_hint`)."""
        webhook = registry.spec_for(self.api).webhook
        if self._refetch_hint_said or webhook is None or webhook.refetch_hint is None:
            return
        hint = webhook.refetch_hint(msg.value(), self._webhook_options)
        if hint:
            self._refetch_hint_said = True
            log.warning("normalizer %s: %s", self.api, hint)
