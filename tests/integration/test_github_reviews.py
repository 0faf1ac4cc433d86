"""GitHub PR reviews and review comments end to end, against the simulator over HTTP, real Kafka and Redis:
backfill, polls after changes, delete reconciliation and webhooks all leave the records topic equal to the
simulator's truth, content included; no event id twice; no version backwards."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

import httpx
import orjson
import pytest
import redis
from sync_helpers import (
    duplicate_event_ids,
    history,
    namespaced_receiver,
    normalize_until_consumed,
    record_problems,
    settings_for,
    settled_read,
    truth,
    wait_until_webhooks_delivered,
)

from apisync.kafka.reader import read_topic
from apisync.sync import run_backfill, run_incremental, run_reconcile

pytestmark = pytest.mark.integration
REVIEWS, COMMENTS = "pull_request_review", "pull_request_review_comment"
SECRET = "It's a Secret to Everybody"


@pytest.fixture
def sim(simulator_url):
    with httpx.Client(base_url=simulator_url, timeout=30) as client:
        yield client


def test_backfill_then_polls_and_reconcile_leave_reviews_and_review_comments_equal_to_the_truth(
        clean_slate, sim, kafka_config, redis_url, simulator_url):
    clean_slate(seed=21, objects=30)
    settings = settings_for("github", kafka_config, redis_url, simulator_url, page_size=5)
    for collection in (REVIEWS, COMMENTS):
        run_backfill(settings, collection, on_progress=lambda _p: _mutate(sim, REVIEWS, 1, ["create"]))
    # Submissions and replies move their PR's updated_at; review comment edits move their own.
    created = _mutate(sim, REVIEWS, 15, ["create"]) + _mutate(sim, COMMENTS, 15, ["create", "update"])
    assert len(created) == 30
    for collection in (REVIEWS, COMMENTS):
        run_incremental(settings, collection)
    consumed = _normalize(kafka_config, redis_url, settings, 0)
    deleted = _mutate(sim, COMMENTS, 4, ["delete"])  # polling cannot see a delete: reconcile does
    summary = run_reconcile(settings, COMMENTS, dry_run=False, max_delete_share=0.5)
    assert len(deleted) == 4 and all(m["id"] in summary.note for m in deleted), summary.note
    _normalize(kafka_config, redis_url, settings, consumed)
    ground = truth(simulator_url, "github")
    assert len(ground["objects"][REVIEWS]) >= 40 and ground["deleted"][COMMENTS]  # not vacuous
    assert record_problems("github", (REVIEWS, COMMENTS), history(kafka_config, "github.records"), ground) == []
    assert duplicate_event_ids(history(kafka_config, "github.events")) == []


def test_webhooks_shuffled_and_duplicated_converge_to_the_truth_including_edits_and_dismissals(
        kafka_config, redis_url, simulator_url, sim):
    settings = settings_for("github", kafka_config, redis_url, simulator_url)
    sim.post("/_admin/reset", json={"seed": 22, "objects": 3}).raise_for_status()
    # the dispatcher applies a reset's "drop pending webhooks" on its next loop: let it run once
    time.sleep(0.5)
    with namespaced_receiver("github", kafka_config, secrets={"github": (SECRET,)}) as (ns, base):
        sim.post("/_admin/config", json={
            "webhooks": {"github": {"url": f"{base}/webhooks/github", "secrets": [SECRET]}},
            "webhook_chaos": {"shuffle": True, "duplicate_rate": 0.3, "max_attempts": 5}}).raise_for_status()
        touched: dict[str, dict] = {}
        try:
            for step in range(40):  # one change per simulated second, so every version is its own
                collection = (REVIEWS, COMMENTS)[step % 2]
                for m in _mutate(sim, collection, 1, ["create", "update"] + (["delete"] if step % 2 else [])):
                    touched[f"github.{m['collection']}.{m['id']}"] = m
                sim.post("/_admin/clock", json={"advance_s": 1}).raise_for_status()
            delivered = wait_until_webhooks_delivered(sim, "github")["delivered"]
        finally:
            sim.post("/_admin/config", json={"webhooks": {"github": {"url": None}},
                                             "webhook_chaos": {"shuffle": False, "duplicate_rate": 0.0}})
        assert delivered >= 40 and {m["kind"] for m in touched.values()} >= {"create", "update", "delete"}
        stored = len(read_topic(kafka_config, f"{ns}github.webhooks"))
        ledger = f"test:ledger:{uuid.uuid4().hex}"
        # With the API connection, equal-version ties (an edit or a dismissal keeps a review's version)
        # are re-fetched and GitHub's current state decides, as in production.
        assert normalize_until_consumed("github", kafka_config, redis.Redis.from_url(redis_url), stored,
                                        settings=settings, namespace=ns, ledger_prefix=ledger) == stored
        records = _records(kafka_config, f"{ns}github.records")
        events = [orjson.loads(m.value()) for m in settled_read(kafka_config, f"{ns}github.events")]
    ground = sim.get("/_admin/truth/github").json()
    assert set(touched) <= set(records)
    for key, past in records.items():
        _api, collection, ident = key.split(".", 2)
        last = past[-1][0]
        if ident in ground["deleted"].get(collection, []):
            assert last is None, f"{key} is deleted upstream but not tombstoned"
        else:
            assert last is not None and last["data"] == ground["objects"][collection][ident]["data"], key
        versions = [version for _value, version in past]
        assert versions == sorted(versions), f"{key} went backwards: {versions}"
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids))


# ---- helpers ------------------------------------------------------------------------------------
def _mutate(sim: httpx.Client, collection: str, count: int, kinds: list[str]) -> list[dict]:
    reply = sim.post("/_admin/mutate", json={"api": "github", "count": count, "kinds": kinds,
                                             "collection": collection})
    reply.raise_for_status()
    return reply.json()["mutations"]


def _normalize(kafka_config, redis_url, settings, consumed_before: int) -> int:
    """Normalize what `github.changes` holds beyond `consumed_before` (re-fetching ties); the new total."""
    total = len(settled_read(kafka_config, "github.changes"))
    client = redis.Redis.from_url(redis_url)
    assert normalize_until_consumed("github", kafka_config, client, total - consumed_before,
                                    settings=settings) == total - consumed_before
    return total


def _records(kafka_config, topic: str) -> dict[str, list[tuple[dict | None, int]]]:
    per_key = defaultdict(list)
    for msg in settled_read(kafka_config, topic):
        value = orjson.loads(msg.value()) if msg.value() is not None else None
        per_key[msg.key().decode()].append((value, int(dict(msg.headers() or []).get("apisync-version", b"0"))))
    return per_key
