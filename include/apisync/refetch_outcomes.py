"""What the normalizer does when a re-fetch fails: a poison object is a dead letter, a hiccup a re-read.

A re-fetch (a thin webhook, a payload in another API version, an equal-version tie) asks the API for one
object. The HTTP edge (`apisync.http`) has already sorted its failure into fatal or retriable, after the
client's own retries:
- fatal (400, 403, 451...: the API will not give this object): the message is dead-lettered with the
  error as its reason and the partition moves on;
- retriable (5xx, timeout, 429, a malformed body): the batch is aborted and read again; the message
  that failed is counted, and after `MAX_TRANSIENT_REFETCHES` failed batch attempts in a row it is
  dead-lettered too, so no object holds its partition forever;
- 401: the credential itself is refused, every re-fetch would fail alike, so the error stops the
  normalizer (dead-lettering every webhook would be worse than waiting for a new key).

`GuardedRefetch.many` re-fetches several objects, each standing for the messages of one record key,
in list calls of `per_call` objects where the re-fetch function has `many` (see
`apisync.webhooks.refetch`); every message of an object shares its outcome. A list call the API
refuses as a whole is asked again object by object, so each object's own answer decides.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from apisync.events import Observation
from apisync.fence import SourcePosition
from apisync.http import FatalError, RetriableError

Wanted = Sequence[tuple[Observation, Sequence[SourcePosition]]]  # objects, each with its messages' positions

log = logging.getLogger("apisync.normalizer")

# Batch attempts in a row in which one message's re-fetch failed transiently before it is dead-lettered;
# each attempt is already the HTTP client's retries with backoff.
MAX_TRANSIENT_REFETCHES = 3
# Statuses that refuse the credential, not the object.
CREDENTIAL_STATUSES = frozenset({401})


class RefetchRefused(Exception):
    """The API will not give this object: dead-letter its message (str() is the one-line reason)."""


class RefetchPostponed(Exception):
    """A re-fetch failed transiently: abort the batch and read it again."""


class GuardedRefetch:
    """A re-fetch function whose failures are RefetchRefused or RefetchPostponed, counted per message."""

    def __init__(self, refetch: Callable[[Observation], Observation],
                 max_transient: int = MAX_TRANSIENT_REFETCHES) -> None:
        self._refetch, self._max_transient = refetch, max_transient
        self._many = getattr(refetch, "many", None)
        # objects one request re-fetches: a list call's size, else 1
        self.per_call = max(1, int(getattr(refetch, "per_call", 1))) if callable(self._many) else 1
        # Failed batch attempts per message still waiting for its re-fetch; an entry leaves when the
        # message is settled or its partition is revoked, so at most one per aborted batch lingers.
        self._transient: dict[SourcePosition, int] = {}

    def __call__(self, obs: Observation, source: SourcePosition) -> Observation:
        """The object as the API has it now, for the message at `source`."""
        try:
            fresh = self._refetch(obs)
        except RetriableError as exc:
            raise self._transient_failures([source], exc) from None
        except FatalError as exc:
            if exc.status in CREDENTIAL_STATUSES:
                log.error("re-fetch: the API refuses the credential, so every re-fetch would fail; stopping: %s", exc)
                raise
            self._transient.pop(source, None)
            raise RefetchRefused(f"re-fetch refused: {exc}") from None
        self._transient.pop(source, None)
        return fresh

    def requests(self, objects_per_collection: Iterable[int]) -> int:
        """How many requests re-fetch this many objects per collection."""
        return sum(-(-count // self.per_call) for count in objects_per_collection)

    def many(self, wanted: Wanted) -> list[Observation | RefetchRefused]:
        """Each object as the API has it now, for the messages at its sources; an object the API refuses
        (or that failed transiently too often) is a RefetchRefused in its slot, any other transient
        failure raises RefetchPostponed."""
        results: list[Observation | RefetchRefused | None] = [None] * len(wanted)
        for chunk in self._chunks(wanted):
            for index, outcome in zip(chunk, self._chunk([wanted[i] for i in chunk]), strict=True):
                results[index] = outcome
        return results  # type: ignore[return-value]

    def _chunks(self, wanted: Wanted) -> Iterable[list[int]]:
        """Indexes of `wanted` in list calls: one collection each, `per_call` at most."""
        by_collection: dict[str, list[int]] = {}
        for index, (obs, _sources) in enumerate(wanted):
            by_collection.setdefault(obs.collection, []).append(index)
        for indexes in by_collection.values():
            for start in range(0, len(indexes), self.per_call):
                yield indexes[start:start + self.per_call]

    def _chunk(self, wanted: Wanted) -> list[Observation | RefetchRefused]:
        """One request's objects (one object without a list call)."""
        observations = [obs for obs, _sources in wanted]
        try:
            fresh = self._many(observations) if len(wanted) > 1 else [self._refetch(observations[0])]
        except RetriableError as exc:
            failures = [self._transient_failures(sources, exc) for _obs, sources in wanted]
            postponed = next((f for f in failures if isinstance(f, RefetchPostponed)), None)
            if postponed is not None:
                raise postponed from None
            return failures  # type: ignore[return-value]
        except FatalError as exc:
            if exc.status in CREDENTIAL_STATUSES or len(wanted) == 1:
                return [self._refused(sources, exc) for _obs, sources in wanted]
            log.info("re-fetch: a list call was refused (%s); asking object by object", exc)
            return [outcome for item in wanted for outcome in self._chunk([item])]
        for _obs, sources in wanted:
            self._settled(sources)
        return fresh

    def _refused(self, sources: Sequence[SourcePosition], exc: FatalError) -> RefetchRefused:
        if exc.status in CREDENTIAL_STATUSES:
            log.error("re-fetch: the API refuses the credential, so every re-fetch would fail; stopping: %s", exc)
            raise exc
        self._settled(sources)
        return RefetchRefused(f"re-fetch refused: {exc}")

    def _settled(self, sources: Iterable[SourcePosition]) -> None:
        for source in sources:
            self._transient.pop(source, None)

    def _transient_failures(self, sources: Sequence[SourcePosition], exc: RetriableError) -> Exception:
        """One more failed attempt for the messages of one object: they share the count and the outcome."""
        failures = max(self._transient.get(source, 0) for source in sources) + 1
        if failures >= self._max_transient:
            self._settled(sources)
            return RefetchRefused(f"re-fetch failed transiently in {failures} batch attempts in a row: {exc}")
        for source in sources:
            self._transient[source] = failures
        return RefetchPostponed(f"re-fetch failed transiently ({failures}/{self._max_transient}): {exc}")

    def forget(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Drop the counts of messages in partitions this worker no longer owns."""
        gone = set(partitions)
        for source in [s for s in self._transient if (s.topic, s.partition) in gone]:
            del self._transient[source]

    def pending(self) -> int:
        """How many messages are waiting for a re-fetch that failed transiently."""
        return len(self._transient)
