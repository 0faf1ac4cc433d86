"""Delete reconciliation: deletes that polling cannot see (GitHub issues, hard-deleted rows).

A complete listing of live ids is diffed against the ledger (what the records topic holds as live);
every candidate is confirmed by fetching it (the listing may simply have raced a create), and only
then does a delete observation go to `<api>.changes`, where the normalizer turns it into a `deleted`
event and a tombstone. A run that would delete more than `max_delete_share` of the collection (and more
than `min_deletes`, so a collection of 12 objects can still lose one) stops: that smells of a broken
listing or the wrong account, not of real deletes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import redis

from apisync.apis import build_source
from apisync.failpoints import failpoint
from apisync.fence import VersionFence
from apisync.kafka.producer import Producer
from apisync.settings import SyncSettings
from apisync.sources import Source
from apisync.sources.base import ObservationFactory, gone_reason
from apisync.sync.progress import Progress, ProgressTracker, RunSummary
from apisync.sync.runner import api_client, change_message

GONE = "missing from the listing, and the API has no such object"


class TooManyDeletes(RuntimeError):
    """The diff would delete more than the configured share of a collection."""


def ledger_live_ids(fence: VersionFence, client: redis.Redis, api: str, collection: str) -> dict[str, int]:
    """Ids the ledger holds as live, with their versions."""
    live = {}
    prefix = fence.ledger_key(f"{api}.{collection}.")
    for raw_key in client.scan_iter(match=f"{prefix}*", count=1000):
        key = raw_key.decode()
        state = fence.current(key[len(fence.ledger_key("")):])
        if state and not state["deleted"]:
            live[key[len(prefix):]] = state["version"]
    return live


def run_reconcile(settings: SyncSettings, collection: str, *, dry_run: bool = True, max_delete_share: float = 0.05,
                  min_deletes: int = 3, on_progress: Callable[[Progress], None] | None = None,
                  source: Source | None = None) -> RunSummary:
    """Find, confirm and (unless dry_run) emit deletes for one collection."""
    api = settings.api.api
    source = source or build_source(settings.api)
    redis_client = redis.Redis.from_url(settings.redis_url)
    known = ledger_live_ids(VersionFence(redis_client), redis_client, api, collection)
    summary = RunSummary(api, collection, "reconcile")
    tracker = ProgressTracker(summary, on_progress)
    with api_client(settings, "reconcile") as (client, limiter):
        listed = set(source.list_ids(client, collection))
        candidates = sorted(set(known) - listed)
        check_delete_cap(api, collection, len(candidates), len(known), max_delete_share, min_deletes)
        confirmed = confirm_gone(source, client, collection, candidates)
        failpoint("reconcile.confirmed")
        tracker.page(0, len(confirmed), {"listed": len(listed), "candidates": len(candidates)}, limiter.waited_s)
    examples = ", ".join(f"{object_id} ({reason})" for object_id, reason in list(confirmed.items())[:20])
    summary.note = f"{'would delete' if dry_run else 'deleted'}: {examples or 'nothing'}"
    if confirmed and not dry_run:
        emit_deletes(settings, api, collection, {i: known[i] for i in confirmed}, confirmed)
    return summary


def check_delete_cap(api: str, collection: str, candidates: int, known: int, max_delete_share: float,
                     min_deletes: int) -> None:
    """The breaker: raise TooManyDeletes when a run would delete more than the cap allows."""
    if candidates > max(min_deletes, max_delete_share * known):
        raise TooManyDeletes(f"{api} {collection}: {candidates} of {known} known objects are missing "
                             f"from the listing, more than the {max_delete_share:.0%} cap (and more than "
                             f"{min_deletes}); nothing deleted")


def confirm_gone(source: Source, client: Any, collection: str, candidates: list[str]) -> dict[str, str]:
    """The candidates the API confirms gone (the listing may have raced a create), with the reason why."""
    reasons = {object_id: gone_reason(source.fetch(client, collection, object_id), GONE)
               for object_id in candidates}
    return {object_id: reason for object_id, reason in reasons.items() if reason is not None}


def emit_deletes(settings: SyncSettings, api: str, collection: str, versions: dict[str, int],
                 reasons: Mapping[str, str] | None = None, origin: str = "reconcile") -> None:
    """Delete observations to `<api>.changes`, each 1 ms after the last version Kafka knows."""
    # Version = last known + 1 ms: the delete happened after everything the ledger has seen.
    factory = ObservationFactory(api)
    producer = Producer(settings.kafka)
    try:
        for object_id, version in versions.items():
            obs = factory.make(collection, object_id, version + 1, None, source=origin, deleted=True,
                               reason=(reasons or {}).get(object_id, GONE))
            producer.send(change_message(obs))
        failpoint("reconcile.sent")  # queued, maybe not yet acknowledged
        producer.flush()
    finally:
        producer.close()
