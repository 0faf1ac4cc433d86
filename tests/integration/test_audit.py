"""Self-audit against the simulator's truth (real Kafka, Redis, simulator).

After a backfill: silent mutations (no event, no webhook, no new version), records removed from Kafka
behind the pipeline's back and objects deleted without any event. The audit names exactly those keys,
as stale, missing and zombie; its repair makes the records topic equal to the truth through the
normalizer (no event id twice, no version backwards), and a second audit finds nothing. A second test
checks the budget share from the limiter's grants while an incremental sync shares the account.
"""

from __future__ import annotations

import math
import random
import threading

import httpx
import orjson
import pytest
import redis
from sync_helpers import (
    duplicate_event_ids,
    history,
    normalize_until_consumed,
    record_problems,
    settings_for,
    settled_read,
    truth,
)

from apisync.events import Observation
from apisync.fence import VersionFence
from apisync.http import RedisRateLimiter
from apisync.kafka.producer import Outgoing, Producer
from apisync.kafka.reader import read_topic
from apisync.sync import AuditOptions, run_audit, run_backfill, run_incremental
from apisync.sync.audit_state import LedgerProbe

pytestmark = pytest.mark.integration
COLLECTION = "customer"


def _normalize(kafka_config, redis_url, settings, already: int = 0) -> int:
    """Normalize what stripe.changes gained since `already` (re-fetching ties, as in production)."""
    total = len(settled_read(kafka_config, "stripe.changes"))
    normalize_until_consumed("stripe", kafka_config, redis.Redis.from_url(redis_url), total - already,
                             settings=settings)
    return total


def _silently(simulator_url: str, kind: str, ids: list[str]) -> None:
    answer = httpx.post(f"{simulator_url}/_admin/silent", timeout=30, json={
        "api": "stripe", "collection": COLLECTION, "kind": kind, "ids": ids})
    answer.raise_for_status()
    assert [m["id"] for m in answer.json()["mutations"]] == ids


def _remove_behind_the_back(kafka_config, keys: list[str]) -> None:
    """Tombstones on the records topics that no normalizer wrote (the ledger still says live)."""
    versions = {key: past[-1][1] for key, past in history(kafka_config, "stripe.records").items() if key in keys}
    producer = Producer(kafka_config)
    for key, version in versions.items():
        for topic in ("stripe.records", f"stripe.{COLLECTION}"):
            producer.send(Outgoing(topic, key, None, [("apisync-version", str(version).encode())]))
    producer.flush()
    producer.close()


def _keys(ids: list[str]) -> list[str]:
    return sorted(f"stripe.{COLLECTION}.{i}" for i in ids)


def _audit_events(kafka_config) -> dict[str, list[dict]]:
    events: dict[str, list[dict]] = {}
    for past in history(kafka_config, "stripe.events").values():
        for value, _version, _partition in past:
            if value["record"]["source"] == "audit":
                events.setdefault(value["type"], []).append(value)
    return events


def test_the_audit_names_each_drifted_key_and_its_repair_restores_the_truth(
        clean_slate, kafka_config, redis_url, simulator_url):
    clean_slate(seed=21, objects=40)
    settings = settings_for("stripe", kafka_config, redis_url, simulator_url)
    run_backfill(settings, COLLECTION)
    seen = _normalize(kafka_config, redis_url, settings)
    picked = random.Random(5).sample(sorted(truth(simulator_url, "stripe")["objects"][COLLECTION]), 15)
    mutated, deleted, removed = sorted(picked[:10]), sorted(picked[10:12]), sorted(picked[12:])
    _silently(simulator_url, "update", mutated)
    _silently(simulator_url, "delete", deleted)
    _remove_behind_the_back(kafka_config, _keys(removed))

    report = run_audit(settings, COLLECTION)
    assert report.examples == {"missing": _keys(removed), "stale": _keys(mutated), "zombie": _keys(deleted)}
    assert (report.audited, report.in_flight, report.repaired, report.deletes) == (40, 0, 0, 0)
    assert not any(orjson.loads(m.value())["source"] == "audit" for m in read_topic(kafka_config, "stripe.changes"))

    repair = run_audit(settings, COLLECTION, AuditOptions(repair=True))
    assert (repair.drift, repair.repaired, repair.deletes) == (15, 13, 2)
    _normalize(kafka_config, redis_url, settings, already=seen)
    assert record_problems("stripe", [COLLECTION], history(kafka_config, "stripe.records"),
                           truth(simulator_url, "stripe")) == []  # content equal, no version backwards
    assert duplicate_event_ids(history(kafka_config, "stripe.events")) == []
    events = _audit_events(kafka_config)
    assert sorted(e["key"] for e in events["updated"]) == _keys(mutated)
    assert all(set(e["changes"]) == {"description"} for e in events["updated"])  # what drifted
    assert sorted(e["key"] for e in events["created"]) == _keys(removed)
    assert sorted(e["key"] for e in events["deleted"]) == _keys(deleted)

    again = run_audit(settings, COLLECTION)
    assert (again.drift, again.in_flight, again.audited) == (0, 0, 38)


def test_the_audit_stays_within_its_budget_share_beside_an_incremental_sync(
        clean_slate, kafka_config, redis_url, simulator_url, monkeypatch):
    clean_slate(seed=22, objects=20)
    rate, share = 20.0, 0.25
    settings = settings_for("stripe", kafka_config, redis_url, simulator_url, rate=rate)
    run_backfill(settings, COLLECTION)
    _normalize(kafka_config, redis_url, settings)
    grants = _record_grants(monkeypatch)
    started, stop = threading.Event(), threading.Event()
    syncing = threading.Thread(target=_sync_until, args=(settings, started, stop))
    syncing.start()
    try:
        assert started.wait(60), "the incremental sync did not complete a first run"
        summary = run_audit(settings, COLLECTION, AuditOptions(sample=15, budget_share=share))
        assert syncing.is_alive()  # the sync ran beside the audit from its first request to its last
    finally:
        stop.set()
        syncing.join(60)
    audit = sorted(t for account, lane, t in grants if account == settings.api.account and lane == "audit")
    assert len(audit) == summary.requests == 15
    assert any(lane == "incremental" for _account, lane, _t in grants)
    # Any window of L seconds: at most 2 + floor(L * share * rate) audit grants (see audit_budget).
    for first in range(len(audit)):
        for last in range(first, len(audit)):
            allowed = 2 + math.floor((audit[last] - audit[first]) * share * rate + 1e-9)
            assert last - first + 1 <= allowed, f"{last - first + 1} audit grants in {audit[last] - audit[first]:.3f}s"


def test_a_ledger_realignment_loses_to_a_normalizer_that_wrote_the_key_meanwhile(redis_url):
    client = redis.Redis.from_url(redis_url)
    fence = VersionFence(client, prefix="apisync:test-audit")
    key = "stripe.customer.cus_audit"
    client.delete(fence.ledger_key(key))
    probe = LedgerProbe(client, fence, {})
    live = Observation("stripe", "customer", "cus_audit", 1000, "poll", "", {"id": "cus_audit", "name": "Ada"})
    fence.write_committed([live])
    seen = probe.state(key)
    gone = Observation("stripe", "customer", "cus_audit", 1000, "audit", "", None, deleted=True)
    fence.write_committed([Observation("stripe", "customer", "cus_audit", 2000, "poll", "", {"id": "cus_audit"})])
    assert not probe.realign(key, seen, gone)  # the newer state stands
    assert probe.state(key).version == 2000
    assert probe.realign(key, probe.state(key), gone)
    assert (probe.state(key).live, probe.state(key).settled) == (False, True)
    client.delete(fence.ledger_key(key))


def test_a_realigned_key_is_named_in_the_ledger_key_set(redis_url):
    client = redis.Redis.from_url(redis_url)
    fence = VersionFence(client, prefix="apisync:test-realign-keyset")
    key = "stripe.customer.cus_unknown"
    client.delete(fence.ledger_key(key), fence.keyset_key("stripe"))
    probe = LedgerProbe(client, fence, {})
    live = Observation("stripe", "customer", "cus_unknown", 1000, "audit", "", {"id": "cus_unknown"})
    assert probe.realign(key, None, live)  # the ledger did not know the key: the audit writes it
    # the partial-loss check compares the key set with the keys Redis holds: an unnamed key's loss goes unseen
    assert client.sismember(fence.keyset_key("stripe"), key)
    client.delete(fence.ledger_key(key), fence.keyset_key("stripe"))


def _record_grants(monkeypatch) -> list[tuple[str, str, float]]:
    """(account, lane, Redis time) of every grant of the shared limiters, from this process's threads."""
    grants: list[tuple[str, str, float]] = []
    original = RedisRateLimiter.acquire_grant

    def recording(self, lane="incremental", timeout=None):
        grant = original(self, lane, timeout)
        grants.append((self.account, lane, grant.server_time))
        return grant

    monkeypatch.setattr(RedisRateLimiter, "acquire_grant", recording)
    return grants


def _sync_until(settings, started: threading.Event, stop: threading.Event) -> None:
    while not stop.is_set():
        run_incremental(settings, COLLECTION)
        started.set()
