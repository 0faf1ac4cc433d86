"""Delete reconciliation: deletes that polling cannot see (GitHub issues, hard-deleted rows).

A complete listing of live ids is diffed against the ledger (what the records topic holds as live);
every candidate is confirmed by fetching it (the listing may simply have raced a create), and only
then does a delete observation go to `<api>.changes`, where the normalizer turns it into a `deleted`
event and a tombstone. A run that would delete more than `max_delete_share` of the collection (and more
than `min_deletes`, so a collection of 12 objects can still lose one) stops: that smells of a broken
listing or the wrong account, not of real deletes.

A part of the source the API refuses (one repository of several) is never swept: the objects that may
belong to it are left alone (`PartsUnavailable.may_hold`), and so is a candidate whose fetch finds its part
refused (`UnavailablePart`). The rest is reconciled, then the run fails with `IncompleteRun` naming them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import redis

from apisync.api_client import api_client
from apisync.errors import RetriableError
from apisync.failpoints import failpoint
from apisync.fence import VersionFence
from apisync.kafka.producer import Producer
from apisync.registry import build_source
from apisync.settings import SyncSettings
from apisync.sources import Source
from apisync.sources.base import ObservationFactory, PartsUnavailable, UnavailablePart, gone_reason
from apisync.sync.progress import Progress, ProgressTracker, RunSummary, incomplete
from apisync.sync.runner import change_message

log = logging.getLogger("apisync.sync")
GONE = "missing from the listing, and the API has no such object"


class TooManyDeletes(RetriableError):
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
        listed, unavailable = listing(source, client, collection)
        candidates, kept = split_candidates(sorted(set(known) - listed), unavailable)
        check_delete_cap(api, collection, len(candidates), len(known) - len(kept), max_delete_share, min_deletes)
        refused: list[str] = list(unavailable.lines) if unavailable else []
        confirmed = confirm_gone(source, client, collection, candidates, refused)
        failpoint("reconcile.confirmed")
        tracker.page(0, len(confirmed), {"listed": len(listed), "candidates": len(candidates)}, limiter.waited_s)
    examples = ", ".join(f"{object_id} ({reason})" for object_id, reason in list(confirmed.items())[:20])
    summary.note = f"{'would delete' if dry_run else 'deleted'}: {examples or 'nothing'}"
    if kept:
        summary.note += f"; left alone: {len(kept)} unlisted objects of parts the API refused"
    if confirmed and not dry_run:
        emit_deletes(settings, api, collection, {i: known[i] for i in confirmed}, confirmed)
    if refused:
        error = incomplete(summary, refused)
        log.error("%s", error)
        raise error
    return summary


def listing(source: Source, client: Any, collection: str) -> tuple[set[str], PartsUnavailable | None]:
    """Every live id the source lists, and which parts it could not list (None: it listed them all)."""
    listed: set[str] = set()
    try:
        for object_id in source.list_ids(client, collection):
            listed.add(object_id)
    except PartsUnavailable as unavailable:
        return listed, unavailable
    return listed, None


def split_candidates(candidates: list[str], unavailable: PartsUnavailable | None) -> tuple[list[str], list[str]]:
    """(candidates to confirm, candidates left alone because they may belong to a part never listed)."""
    if unavailable is None:
        return candidates, []
    kept = [object_id for object_id in candidates if unavailable.may_hold(object_id)]
    left = set(kept)
    return [object_id for object_id in candidates if object_id not in left], kept


def check_delete_cap(api: str, collection: str, candidates: int, known: int, max_delete_share: float,
                     min_deletes: int) -> None:
    """The breaker: raise TooManyDeletes when a run would delete more than the cap allows."""
    if candidates > max(min_deletes, max_delete_share * known):
        raise TooManyDeletes(f"{api} {collection}: {candidates} of {known} known objects are missing "
                             f"from the listing, more than the {max_delete_share:.0%} cap (and more than "
                             f"{min_deletes}); nothing deleted")


def confirm_gone(source: Source, client: Any, collection: str, candidates: list[str],
                 refused: list[str] | None = None) -> dict[str, str]:
    """The candidates the API confirms gone (the listing may have raced a create), with the reason why.

    With `refused`, a candidate whose part the API refuses is left alone and the refusal's line added
    there (once per part); without it, that refusal is raised.
    """
    reasons = {}
    for object_id in candidates:
        try:
            reasons[object_id] = gone_reason(source.fetch(client, collection, object_id), GONE)
        except UnavailablePart as unavailable:
            if refused is None:
                raise
            if str(unavailable) not in refused:
                refused.append(str(unavailable))
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
