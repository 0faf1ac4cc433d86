"""A batch's re-fetches, planned before its Kafka transaction opens: coalesced per record key, bounded.

A re-fetch waits for the account's shared budget (HubSpot 4 requests/s), so re-fetching inside the
transaction would make the time between two polls and inside the transaction grow with the backlog.
The normalizer therefore parses a batch first, groups the observations that need a re-fetch by record
key (several thin webhooks of one object → one read, whose current state stands for all of them),
and keeps only the prefix of the batch whose objects fit in `max_requests` requests (a list call reads
`per_call` objects); the rest of the batch is read again by the next poll. The bound comes from the
budget: `request_bound(rate) = rate × REFETCH_TARGET_S`, so a batch's re-fetches take about that long.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from apisync.events import Observation

# Seconds of the budget one batch's re-fetches may take: far below the producer's transaction.timeout.ms
# (60 s) and the consumer's max.poll.interval.ms (300 s), long enough to keep list calls full.
REFETCH_TARGET_S = 30.0
# Without a known budget: what HubSpot's default (4 requests/s) grants in REFETCH_TARGET_S.
DEFAULT_MAX_REQUESTS = 120


def request_bound(rate_per_s: float, target_s: float = REFETCH_TARGET_S) -> int:
    """Re-fetch requests one batch may make: what the budget grants in `target_s` (at least 1)."""
    return max(1, int(rate_per_s * target_s))


@dataclass(frozen=True, slots=True)
class Wanted:
    """One object to re-fetch and the batch positions (indexes) of the messages it stands for."""

    key: str
    indexes: tuple[int, ...]

    @property
    def last(self) -> int:
        """Where the object's current state is fenced: its last message in the batch."""
        return self.indexes[-1]


def coalesced(needs: Iterable[tuple[int, Observation]]) -> list[Wanted]:
    """The observations that need a re-fetch (batch index, observation), grouped per record key,
    in the order each key first appears."""
    groups: dict[str, list[int]] = {}
    for index, obs in needs:
        groups.setdefault(obs.key, []).append(index)
    return [Wanted(key, tuple(indexes)) for key, indexes in groups.items()]


def cut(wanted: Sequence[Wanted], collection_of: Callable[[Wanted], str], requests: Callable[[Iterable[int]], int],
        max_requests: int | None) -> int | None:
    """The batch index before which the batch must end so its objects fit in `max_requests` requests
    (`requests(objects per collection)`), or None if they all fit. The first object always fits, so a
    batch always makes progress."""
    if max_requests is None:
        return None
    counts: dict[str, int] = {}
    for position, item in enumerate(wanted):
        collection = collection_of(item)
        counts[collection] = counts.get(collection, 0) + 1
        if position and requests(counts.values()) > max_requests:
            return item.indexes[0]
    return None


def representative(observations: Sequence[Observation]) -> Observation:
    """The observation a key's re-fetch is asked for: the newest, so the result keeps the highest version."""
    return max(observations, key=lambda obs: obs.version)

