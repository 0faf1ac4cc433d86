"""Re-fetch one object through its source: thin webhooks, and ties at equal versions.

`source_refetcher(source, client)` returns `refetch(observation) -> observation with the server's
current data`. It asks the API's own `Source.fetch`, so what apisync knows about fetching one object
stays in the source module. The client should be built with `lane="webhook"`: re-fetches take the
highest-priority share of the API's rate limit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from apisync.events import Observation
from apisync.sources.base import gone_reason

Refetch = Callable[[Observation], Observation]


def source_refetcher(source: Any, client: Any) -> Refetch:
    """A refetch function over a Source and its ApiClient.

    The result keeps the higher of the two versions (a Stripe object carries no stamp of its own, so
    its listing version may be a hair older than the event that named it). An object the API no longer
    has becomes a delete observation at the observed version: it is gone, whatever the payload said.
    """

    def refetch(obs: Observation) -> Observation:
        fresh = source.fetch(client, obs.collection, obs.id)
        reason = gone_reason(fresh, "the API has no such object any more")
        if reason is not None:
            return dataclasses.replace(obs, data=None, deleted=True, thin=False, reason=obs.reason or reason)
        return dataclasses.replace(obs, data=fresh.data, version=max(obs.version, fresh.version),
                                   deleted=False, thin=False)

    return refetch
