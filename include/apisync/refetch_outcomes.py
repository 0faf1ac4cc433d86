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
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from apisync.events import Observation
from apisync.fence import SourcePosition
from apisync.http import FatalError, RetriableError

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
        # Failed batch attempts per message still waiting for its re-fetch; an entry leaves when the
        # message is settled or its partition is revoked, so at most one per aborted batch lingers.
        self._transient: dict[SourcePosition, int] = {}

    def __call__(self, obs: Observation, source: SourcePosition) -> Observation:
        """The object as the API has it now, for the message at `source`."""
        try:
            fresh = self._refetch(obs)
        except RetriableError as exc:
            raise self._transient_failure(source, exc) from None
        except FatalError as exc:
            if exc.status in CREDENTIAL_STATUSES:
                log.error("re-fetch: the API refuses the credential, so every re-fetch would fail; stopping: %s", exc)
                raise
            self._transient.pop(source, None)
            raise RefetchRefused(f"re-fetch refused: {exc}") from None
        self._transient.pop(source, None)
        return fresh

    def _transient_failure(self, source: SourcePosition, exc: RetriableError) -> Exception:
        failures = self._transient.get(source, 0) + 1
        if failures >= self._max_transient:
            self._transient.pop(source, None)
            return RefetchRefused(f"re-fetch failed transiently in {failures} batch attempts in a row: {exc}")
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
