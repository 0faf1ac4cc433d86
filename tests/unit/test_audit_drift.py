"""The audit's pure parts: the comparison, repair versions, the ledger's settled test, the budget-share limiter."""

from __future__ import annotations

import random

import orjson
import pytest

from apisync.events import Observation
from apisync.fence import VersionFence
from apisync.settings import ApiSettings, SyncSettings
from apisync.sync.audit import (
    AuditOptions,
    AuditSummary,
    Finding,
    _fetch_sample,
    _ledger_disagrees,
    _outside_flight,
    _repair_observation,
    drift_kind,
)
from apisync.sync.audit_budget import ShareCappedLimiter, share_limiter
from apisync.sync.audit_state import LedgerProbe, LedgerState, RecordState, digest
from apisync.sync.progress import ProgressTracker, RunSummary

DATA = {"id": "cus_1", "name": "Ada", "balance": 0}


def record(data=None, version=1000, live=True) -> RecordState:
    data = DATA if data is None else data
    fields = tuple(sorted(data))
    return RecordState(version, live, digest(data, fields) if live else b"", fields if live else ())


def seen(data=None, version=2000, deleted=False) -> Observation:
    return Observation("stripe", "customer", "cus_1", version, "backfill", "", None if deleted else (data or DATA),
                       deleted)


@pytest.mark.parametrize("kafka, api, kind", [
    (None, seen(), "missing"),
    (record(live=False), seen(), "missing"),
    (record(), seen(), None),
    (record(), seen(version=999_999), None),  # a newer version, equal content: Stripe's listing clock
    (record(), seen({**DATA, "name": "Grace"}), "stale"),
    (record(), seen({"id": "cus_1", "name": "Ada"}), "stale"),  # a field gone reads as None
    (record(), seen({**DATA, "mergeable_state": "dirty"}), None),  # a field the record never had
    (record(), None, "zombie"),
    (record(), seen(deleted=True), "zombie"),
    (record(live=False), None, None),
    (None, None, None),
])
def test_drift_kind(kafka, api, kind):
    assert drift_kind(kafka, api) == kind


def ledger(version=1000, live=True, data=None, settled=True) -> LedgerState:
    return LedgerState(version, live, (data or DATA) if live else None, settled, b"")


@pytest.mark.parametrize("api_version, state, expected", [
    (2000, None, 2000),
    (2000, ledger(1000), 2000),
    (1000, ledger(1000), 1000),  # equal version, other content: the fence's conflict, settled by a re-fetch
    (1000, ledger(1000, live=False), 1001),  # a delete wins a tie: go past it
    (900, ledger(1000), 1001),  # never below what the ledger has seen
])
def test_a_repair_never_carries_a_version_the_fence_would_refuse(api_version, state, expected):
    finding = Finding("stale", "cus_1", seen(version=api_version), record(), state)
    repaired = _repair_observation(finding)
    assert (repaired.version, repaired.source, repaired.data) == (expected, "audit", DATA)


@pytest.mark.parametrize("kafka, state, disagrees", [
    (record(), ledger(), False),
    (record(), ledger(5000), False),  # an "unchanged" observation raised the ledger's version only
    (record(live=False), ledger(), True),  # removed behind the pipeline's back
    (None, ledger(), True),
    (None, None, False),
    (record(live=False), ledger(live=False), False),
    (record(), ledger(data={**DATA, "name": "Grace"}), True),
    (record(), None, True),  # the ledger lost the key
])
def test_the_ledger_disagrees_with_the_topic_only_on_what_consumers_see(kafka, state, disagrees):
    assert _ledger_disagrees(Finding("missing", "cus_1", seen(), kafka, state)) is disagrees


class FakeRedis:
    def __init__(self, values: dict[str, bytes]) -> None:
        self.values = values

    def register_script(self, _source):
        return None

    def get(self, key):
        return self.values.get(key)


def _stack(tp: str, offset: int, deleted: bool = False) -> bytes:
    obs = Observation("stripe", "customer", "cus_1", 1000, "poll", "", None if deleted else DATA, deleted)
    return orjson.dumps([VersionFence(FakeRedis({})).entry(obs, tp=tp, offset=offset, attempt="a1")])


@pytest.mark.parametrize("stack, settled", [
    (_stack("stripe.changes:2", 9), True),  # below the committed offset 10
    (_stack("stripe.changes:2", 10), False),  # committed after the audit began, or not at all
    (_stack("stripe.webhooks:0", 0), False),  # nothing committed on that partition
    (_stack("", 0), True),  # a rebuild's state
])
def test_a_ledger_state_is_settled_when_its_batch_was_committed_before_the_topic_read(stack, settled):
    fence = VersionFence(FakeRedis({}))
    probe = LedgerProbe(FakeRedis({fence.ledger_key("stripe.customer.cus_1"): stack}), fence,
                        {"stripe.changes:2": 10})
    state = probe.state("stripe.customer.cus_1")
    assert (state.settled, state.live, state.data, state.version) == (settled, True, DATA, 1000)
    assert probe.state("stripe.customer.cus_2") is None


def test_a_deleted_ledger_state_shows_nothing_live():
    fence = VersionFence(FakeRedis({}))
    probe = LedgerProbe(FakeRedis({fence.ledger_key("k"): _stack("", 0, deleted=True)}), fence, {})
    assert probe.state("k").shows() == (False, b"")


def test_the_summary_holds_counts_and_keys_never_payloads():
    summary = AuditSummary("stripe", "customer", "full", audited=40, missing=3, stale=10, zombie=2, requests=6)
    summary.examples["zombie"] = ["stripe.customer.cus_9"]
    result = summary.as_dict()
    assert (result["drift"], result["drift_share"]) == (15, 0.375)
    assert "3 missing, 10 stale, 2 zombie" in summary.lines()[0]
    assert summary.lines()[1] == "  zombie: stripe.customer.cus_9"
    assert AuditSummary("stripe", "customer", "full").drift_share == 0.0


class FakeLimiter:
    def __init__(self, name: str, log: list, waits: float) -> None:
        self.name, self.log, self.waits = name, log, waits

    def acquire(self, lane="incremental", timeout=None):
        self.log.append((self.name, lane, timeout))
        return self.waits

    def pause(self, seconds, reason=""):
        self.log.append((self.name, "pause", seconds))

    def observe(self, signal):
        self.log.append((self.name, "observe", signal))


def test_each_audit_request_is_paced_first_then_takes_the_accounts_budget_on_the_audit_lane():
    calls: list = []
    limiter = ShareCappedLimiter(FakeLimiter("shared", calls, 0.5), FakeLimiter("pacing", calls, 2.0))
    assert limiter.acquire("audit", timeout=10) == 2.5
    assert calls == [("pacing", "audit", 10), ("shared", "audit", 8.0)]  # one timeout for both waits
    limiter.pause(30)
    limiter.observe("quota")
    assert calls[2:] == [("shared", "pause", 30), ("shared", "observe", "quota")]  # a 429 stops the account
    assert limiter.grants == 1


@pytest.mark.parametrize("share", [0, -0.1, 1.5])
def test_the_share_must_be_a_part_of_the_budget(share):
    settings = SyncSettings({}, "redis://unused", ApiSettings("stripe", "http://x", "t", rate_per_s=20))
    with pytest.raises(ValueError, match="budget share"):
        share_limiter(FakeRedis({}), settings, share)


def test_the_pacing_budget_is_the_share_of_the_accounts_rate_in_its_own_key():
    settings = SyncSettings({}, "redis://unused", ApiSettings("github", "http://x", "t", {"account": "acme"},
                                                              rate_per_s=2.0, burst=7))
    limiter = share_limiter(FakeRedis({}), settings, 0.25)
    assert (limiter.shared.prefix, limiter.shared.spec.rate, limiter.shared.spec.burst) == (
        "apisync:ratelimit:github:acme", 2.0, 7)
    assert (limiter.pacing.prefix, limiter.pacing.spec.rate, limiter.pacing.spec.burst) == (
        "apisync:ratelimit:github:acme~audit", 0.5, 1)


@pytest.mark.parametrize("options", [{"sample": 0}, {"budget_share": 0}, {"budget_share": 2}, {"max_delete_share": -1}])
def test_options_out_of_range_are_refused(options):
    with pytest.raises(ValueError, match="audit needs"):
        AuditOptions(**options)


class FakeSource:
    def __init__(self, objects: dict) -> None:
        self.objects, self.fetched = objects, []

    def fetch(self, client, collection, object_id):
        self.fetched.append(object_id)
        data = self.objects.get(object_id)
        return None if data is None else Observation("stripe", collection, object_id, 5000, "reconcile", "", data)


def test_a_sample_fetches_known_keys_one_by_one_and_classifies_each():
    records = {"a": record({"id": "a", "name": "old"}), "b": record(live=False), "c": record({"id": "c"}),
               "d": record({"id": "d"})}
    source = FakeSource({"a": {"id": "a", "name": "new"}, "b": {"id": "b"}, "d": {"id": "d"}})
    tracker = ProgressTracker(RunSummary("stripe", "customer", "audit"))
    findings, audited = _fetch_sample(source, None, "customer", records, 10, random.Random(1), tracker,
                                      type("L", (), {"waited_s": 0.0})())
    assert audited == 4 and sorted(source.fetched) == ["a", "b", "c", "d"]
    assert {f.object_id: f.kind for f in findings} == {"a": "stale", "b": "missing", "c": "zombie"}
    assert tracker.summary.pages == 4


class FakeProbe:
    def __init__(self, states: dict) -> None:
        self.states = states

    def state(self, key):
        return self.states.get(key)


def test_keys_the_normalizer_is_working_on_are_left_to_it():
    findings = [Finding("stale", "a", seen(), record()), Finding("missing", "b", seen(), None),
                Finding("zombie", "c", None, record())]
    probe = FakeProbe({"stripe.customer.a": ledger(settled=False), "stripe.customer.c": ledger()})
    summary = AuditSummary("stripe", "customer", "full")
    kept = _outside_flight(findings, probe, "stripe", "customer", summary)
    assert [(f.object_id, f.ledger) for f in kept] == [("b", None), ("c", ledger())]
    assert summary.in_flight == 1
