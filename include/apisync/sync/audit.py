"""Self-audit: is Kafka still equal to the API? Compares one collection's records with the API's objects.

A full audit walks the API's listing (the backfill's walk, on the lowest rate-limit lane, paced to a share
of the account's budget: `audit_budget`); a sampled one fetches N random known ids one by one. Every
object is compared with the newest message of its key on `<api>.records`, read to its end after the
normalizer's committed offsets were noted (`audit_state`):

- **missing**: live in the API, absent or tombstoned in Kafka;
- **stale**: the record's content differs from the object's (on the record's fields). A newer API
  version with equal content is not drift (a Stripe version is only the listing's clock);
- **zombie**: live in Kafka, gone from the API. Zombies go through reconcile's breaker
  (`max_delete_share`, `min_deletes`) and, in a full audit, its confirmation by fetching.

Keys the normalizer touched while the audit looked are counted `in_flight`, not drift: its own work
decides them. A tombstoned record found live again is re-fetched before it counts (the listing may
have raced a delete).

Repair writes observations with source `audit` to `<api>.changes`, so each record is fixed through the
version fence and gets its events: an `updated` event whose `changes` name what drifted, `created` for
a missing record, `deleted` and a tombstone for a zombie. A silent change that kept its version stamp
reaches the fence at an equal version with other content: a "conflict", which the normalizer settles by
re-fetching the object (the server decides). Where the ledger disagrees with the topic (records removed
behind the pipeline's back), the key's ledger is first set back to the topic's state, so the fence
does not drop the repair as unchanged; a repair then never carries a version below the ledger's.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from apisync.events import Observation
from apisync.fence import VersionFence
from apisync.kafka.producer import Producer
from apisync.registry import build_source
from apisync.settings import SyncSettings
from apisync.sources import Source
from apisync.sync.audit_budget import audit_client
from apisync.sync.audit_state import (
    LedgerProbe,
    LedgerState,
    RecordState,
    read_records,
    record_values,
    settled_offsets,
    shown_by_record,
)
from apisync.sync.progress import Progress, ProgressTracker, RunSummary
from apisync.sync.reconcile import TooManyDeletes, check_delete_cap, confirm_gone, emit_deletes
from apisync.sync.runner import change_message

log = logging.getLogger("apisync.audit")
KINDS = ("missing", "stale", "zombie")
MAX_EXAMPLES = 20


def drift_kind(record: RecordState | None, obs: Observation | None) -> str | None:
    """How Kafka's record of an object differs from the API's: missing, stale, zombie, or None (equal)."""
    if obs is None or obs.deleted:
        return "zombie" if record is not None and record.live else None
    if record is None or not record.live:
        return "missing"
    return None if record.matches(obs.data) else "stale"


@dataclass(frozen=True, slots=True)
class Finding:
    """One drifted key: what the API has now (None: gone), and what Kafka and the ledger hold."""

    kind: str
    object_id: str
    api_object: Observation | None
    record: RecordState | None
    ledger: LedgerState | None = None


@dataclass(slots=True)
class AuditSummary:
    """One audit of one collection: counts and example keys (never payloads); small enough for an XCom."""

    api: str
    collection: str
    mode: str  # "full" (the listing) or "sample:<N>"
    job: str = "audit"
    audited: int = 0
    missing: int = 0
    stale: int = 0
    zombie: int = 0
    in_flight: int = 0
    breaker_tripped: bool = False  # too many zombies: reported, none deleted
    repaired: int = 0
    deletes: int = 0
    examples: dict[str, list[str]] = field(default_factory=lambda: {kind: [] for kind in KINDS})
    requests: int = 0
    pages: int = 0
    seconds: float = 0.0
    rate_limit_wait_s: float = 0.0
    note: str = ""

    @property
    def drift(self) -> int:
        """Objects whose record is missing, stale or a zombie."""
        return self.missing + self.stale + self.zombie

    @property
    def drift_share(self) -> float:
        """Drift as a share of the objects audited."""
        return self.drift / self.audited if self.audited else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "drift": self.drift, "drift_share": round(self.drift_share, 4)}

    def lines(self) -> list[str]:
        """The report: one line of counts, then one line of example keys per kind that has any."""
        head = (f"{self.api} {self.collection} audit ({self.mode}): {self.audited} audited, {self.drift} drifted "
                f"({self.drift_share:.1%}): {self.missing} missing, {self.stale} stale, {self.zombie} zombie; "
                f"{self.in_flight} in flight; {self.repaired} repaired, {self.deletes} deleted; "
                f"{self.requests} requests, {self.seconds:.1f}s")
        examples = [f"  {kind}: {', '.join(keys)}" for kind, keys in self.examples.items() if keys]
        return [head + (f"; {self.note}" if self.note else ""), *examples]


@dataclass(frozen=True, slots=True)
class AuditOptions:
    """How one audit runs: sample size (None = the whole listing), repair, budget share, delete breaker."""

    sample: int | None = None
    repair: bool = False
    budget_share: float = 0.1
    max_delete_share: float = 0.05
    min_deletes: int = 3

    def __post_init__(self) -> None:
        if (self.sample is not None and self.sample < 1) or not 0 < self.budget_share <= 1 \
                or not 0 <= self.max_delete_share <= 1:
            raise ValueError(f"audit needs a sample of at least 1, a budget share in (0, 1] and a max delete share "
                             f"in [0, 1]; got {self.sample}, {self.budget_share}, {self.max_delete_share}")


def run_audit(settings: SyncSettings, collection: str, options: AuditOptions = AuditOptions(), *,
              on_progress: Callable[[Progress], None] | None = None, source: Source | None = None,
              rng: random.Random | None = None) -> AuditSummary:
    """Compare one collection's records with the API; report drift and, with `options.repair`, fix it."""
    api = settings.api.api
    source = source or build_source(settings.api)
    if collection not in source.collections:
        raise ValueError(f"{api} has no collection {collection!r}; known: {', '.join(source.collections)}")
    summary = AuditSummary(api, collection, "full" if options.sample is None else f"sample:{options.sample}")
    started = time.monotonic()
    progress = RunSummary(api, collection, "audit")
    tracker = ProgressTracker(progress, on_progress)
    redis_client = redis.Redis.from_url(settings.redis_url)
    probe = LedgerProbe(redis_client, VersionFence(redis_client), settled_offsets(settings.kafka, api))
    records = read_records(settings.kafka, api, collection)  # after the offsets: see audit_state
    with audit_client(settings, options.budget_share, source) as (client, limiter):
        if options.sample is None:
            findings, summary.audited = _walk_listing(source, client, collection, records, tracker, limiter)
        else:
            findings, summary.audited = _fetch_sample(source, client, collection, records, options.sample,
                                                      rng or random.Random(), tracker, limiter)
        findings = _confirm(source, client, collection, findings, records, options, summary)
        summary.requests = limiter.inner.grants
    findings = _outside_flight(findings, probe, api, collection, summary)
    _count(findings, summary, api, collection)
    if options.repair and findings:
        _repair(settings, collection, findings, probe, summary)
    summary.pages, summary.seconds = progress.pages, round(time.monotonic() - started, 1)
    summary.rate_limit_wait_s = round(limiter.waited_s, 1)
    return summary  # the caller shows summary.lines() (task log, CLI)


def _walk_listing(source: Source, client: Any, collection: str, records: dict[str, RecordState],
                  tracker: ProgressTracker, limiter: Any) -> tuple[list[Finding], int]:
    """The API's listing against the records: drifted live objects, and records the listing lacks."""
    listed: dict[str, Observation] = {}
    drifted: dict[str, Finding] = {}
    for batch in source.backfill(client, collection, None, None):
        for obs in batch.observations:
            seen = listed.get(obs.id)
            if seen is not None and seen.version > obs.version:
                continue  # a walk can show an object twice; the newest sighting counts
            listed[obs.id] = obs
            kind = drift_kind(records.get(obs.id), obs)
            drifted.pop(obs.id, None)
            if kind is not None:
                drifted[obs.id] = Finding(kind, obs.id, None if kind == "zombie" else obs, records.get(obs.id))
        tracker.page(len(batch.observations), 0, {"listed": len(listed)}, limiter.waited_s)
    unlisted = [oid for oid, record in records.items() if record.live and oid not in listed]
    zombies = [Finding("zombie", oid, None, records[oid]) for oid in sorted(unlisted)]
    audited = len({oid for oid, obs in listed.items() if not obs.deleted} | {o for o, r in records.items() if r.live})
    return list(drifted.values()) + zombies, audited


def _fetch_sample(source: Source, client: Any, collection: str, records: dict[str, RecordState], size: int,
                  rng: random.Random, tracker: ProgressTracker, limiter: Any) -> tuple[list[Finding], int]:
    """N random known keys (live or tombstoned), each fetched now."""
    chosen = rng.sample(sorted(records), min(size, len(records)))
    findings = []
    for object_id in chosen:
        fresh = _fetch(source, client, collection, object_id)
        kind = drift_kind(records[object_id], fresh)
        if kind is not None:
            findings.append(Finding(kind, object_id, fresh, records[object_id]))
        tracker.page(1, 0, {"drifted": len(findings)}, limiter.waited_s)
    return findings, len(chosen)


def _confirm(source: Source, client: Any, collection: str, findings: list[Finding],
             records: dict[str, RecordState], options: AuditOptions, summary: AuditSummary) -> list[Finding]:
    """Zombies through reconcile's breaker and confirmation; in a full audit, tombstones seen live re-fetched."""
    zombies = [f for f in findings if f.kind == "zombie"]
    others = [f for f in findings if f.kind != "zombie"]
    if options.sample is None:
        others = [f for f in others if not _revived(f)] + _refetched(
            source, client, collection, [f for f in others if _revived(f)])
    live = sum(1 for r in records.values() if r.live)
    known = live if options.sample is None else min(live, options.sample)
    try:
        check_delete_cap(summary.api, collection, len(zombies), known, options.max_delete_share, options.min_deletes)
    except TooManyDeletes as exc:
        summary.breaker_tripped, summary.note = True, f"zombies not deleted: {exc}"
        log.warning("%s", exc)
        return others + zombies
    if options.sample is None:  # a sampled zombie was fetched just now; a listed one is confirmed like reconcile
        gone = set(confirm_gone(source, client, collection, [f.object_id for f in zombies]))
        zombies = [f for f in zombies if f.object_id in gone]
    return others + zombies


def _fetch(source: Source, client: Any, collection: str, object_id: str) -> Observation | None:
    """The object now, or None when the API says it is gone (whatever the reason)."""
    fresh = source.fetch(client, collection, object_id)
    return fresh if isinstance(fresh, Observation) else None


def _revived(finding: Finding) -> bool:
    """A tombstoned record whose object the listing shows live: it counts only once a fetch agrees."""
    return finding.kind == "missing" and finding.record is not None


def _refetched(source: Source, client: Any, collection: str, findings: list[Finding]) -> list[Finding]:
    confirmed = []
    for finding in findings:
        fresh = _fetch(source, client, collection, finding.object_id)
        if drift_kind(finding.record, fresh) == "missing":
            confirmed.append(dataclasses.replace(finding, api_object=fresh))
    return confirmed


def _outside_flight(findings: list[Finding], probe: LedgerProbe, api: str, collection: str,
                    summary: AuditSummary) -> list[Finding]:
    """Attach each key's ledger state; keys the normalizer is working on right now are left to it."""
    kept = []
    for finding in findings:
        ledger = probe.state(f"{api}.{collection}.{finding.object_id}")
        if ledger is not None and not ledger.settled:
            summary.in_flight += 1
            continue
        kept.append(dataclasses.replace(finding, ledger=ledger))
    return kept


def _count(findings: list[Finding], summary: AuditSummary, api: str, collection: str) -> None:
    for finding in findings:
        setattr(summary, finding.kind, getattr(summary, finding.kind) + 1)
        summary.examples[finding.kind].append(f"{api}.{collection}.{finding.object_id}")
    summary.examples = {kind: sorted(keys)[:MAX_EXAMPLES] for kind, keys in summary.examples.items()}


def _repair(settings: SyncSettings, collection: str, findings: list[Finding], probe: LedgerProbe,
            summary: AuditSummary) -> None:
    """Realign the ledger where it disagrees with the topic, then send observations and deletes."""
    api = settings.api.api
    if not probe.complete(api):
        summary.note = "; ".join(filter(None, (summary.note, "not repaired: the ledger is being rebuilt")))
        return
    if summary.breaker_tripped:
        findings = [f for f in findings if f.kind != "zombie"]
    findings = _realigned(settings, collection, findings, probe)
    updates = [_repair_observation(f) for f in findings if f.api_object is not None]
    deletes = {f.object_id: _newest_version(f) for f in findings if f.api_object is None}
    _send(settings, updates)
    if deletes:
        emit_deletes(settings, api, collection, deletes, origin="audit")
    summary.repaired, summary.deletes = len(updates), len(deletes)


def _realigned(settings: SyncSettings, collection: str, findings: list[Finding],
               probe: LedgerProbe) -> list[Finding]:
    """Findings whose ledger disagrees with the topic, with the ledger set back to the topic's state first.

    A key whose compare-and-set loses (the normalizer wrote it meanwhile) is dropped: not repaired now.
    """
    api = settings.api.api
    disagree = [f for f in findings if _ledger_disagrees(f)]
    live_keys = {f"{api}.{collection}.{f.object_id}" for f in disagree if f.record and f.record.live}
    values = record_values(settings.kafka, api, live_keys) if live_keys else {}
    aligned = {}
    for finding in disagree:
        key = f"{api}.{collection}.{finding.object_id}"
        target = _topic_state(api, collection, finding, values.get(key))
        if probe.realign(key, finding.ledger, target):
            aligned[finding.object_id] = probe.state(key)
        else:
            log.info("%s: the normalizer wrote it during the audit; not repaired now", key)
    return [dataclasses.replace(f, ledger=aligned[f.object_id]) if f.object_id in aligned else f
            for f in findings if not _ledger_disagrees(f) or f.object_id in aligned]


def _ledger_disagrees(finding: Finding) -> bool:
    ledger = finding.ledger.shows() if finding.ledger else (False, b"")
    return ledger != shown_by_record(finding.record)


def _topic_state(api: str, collection: str, finding: Finding, value: dict | None) -> Observation:
    """The ledger state that says what the topic shows, never at a version below the ledger's."""
    version = max(finding.ledger.version if finding.ledger else 0, finding.record.version if finding.record else 0)
    data = value.get("data") if value else None
    return Observation(api, collection, finding.object_id, version, "audit", "", data, deleted=data is None)


def _repair_observation(finding: Finding) -> Observation:
    """The API's object as an `audit` observation, never at a version the ledger would refuse as older."""
    obs, ledger = finding.api_object, finding.ledger
    version = obs.version
    if ledger is not None and (version < ledger.version or (version == ledger.version and not ledger.live)):
        version = ledger.version + 1  # like reconcile's deletes: after everything the ledger has seen
    return dataclasses.replace(obs, version=version, source="audit")


def _newest_version(finding: Finding) -> int:
    return max(finding.record.version if finding.record else 0, finding.ledger.version if finding.ledger else 0)


def _send(settings: SyncSettings, observations: list[Observation]) -> None:
    if not observations:
        return
    producer = Producer(settings.kafka)
    try:
        for obs in observations:
            producer.send(change_message(obs))
        producer.flush()
    finally:
        producer.close()
