"""Re-fetch objects through their source: thin webhooks, payloads in another API version, equal-version ties.

`source_refetcher(source, client)` returns a `SourceRefetcher`: `refetch(observation)` gives the
observation with the server's current data, and `refetch.many(observations)` the same for several
objects of one collection in one list call where the API has one (`Source.refetch_many`: HubSpot's
batch read, Salesforce's `WHERE Id IN`), `per_call` of them at most; without one (Stripe) `per_call` is
1 and `many` reads them one by one. It asks the API's own source, so what apisync knows about fetching
stays in the source module. The client should be built with `lane="webhook"`: re-fetches take the
highest-priority share of the API's rate limit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from apisync.events import Observation
from apisync.sources.base import Gone, gone_reason

Refetch = Callable[[Observation], Observation]


def refreshed(obs: Observation, fresh: Observation | Gone | None) -> Observation:
    """`obs` with the server's answer: its data at the higher of the two versions (a Stripe object carries
    no stamp of its own, so its listing version may be a hair older than the event that named it), or a
    delete at the observed version if the API no longer has the object, whatever the payload said."""
    reason = gone_reason(fresh, "the API has no such object any more")
    if reason is not None:
        return dataclasses.replace(obs, data=None, deleted=True, thin=False, reason=obs.reason or reason)
    return dataclasses.replace(obs, data=fresh.data, version=max(obs.version, fresh.version),
                               deleted=False, thin=False)


class SourceRefetcher:
    """Re-fetch over a Source and its ApiClient: one object, or several of one collection per request."""

    def __init__(self, source: Any, client: Any) -> None:
        self._source, self._client = source, client
        self._has_many = callable(getattr(source, "refetch_many", None))
        self.per_call = int(getattr(source, "refetch_batch_size", 1)) if self._has_many else 1

    def __call__(self, obs: Observation) -> Observation:
        """The object as the API has it now."""
        return refreshed(obs, self._source.fetch(self._client, obs.collection, obs.id))

    def many(self, observations: Sequence[Observation]) -> list[Observation]:
        """Several objects of one collection (at most `per_call`), in one request where the API allows."""
        if not self._has_many or len(observations) == 1:
            return [self(obs) for obs in observations]
        collection = observations[0].collection
        if any(obs.collection != collection for obs in observations) or len(observations) > self.per_call:
            raise ValueError(f"many() takes at most {self.per_call} objects of one collection")
        fresh = self._source.refetch_many(self._client, collection, [obs.id for obs in observations])
        return [refreshed(obs, fresh.get(str(obs.id))) for obs in observations]


def source_refetcher(source: Any, client: Any) -> SourceRefetcher:
    """A refetch function over a Source and its ApiClient (see `SourceRefetcher`)."""
    return SourceRefetcher(source, client)
