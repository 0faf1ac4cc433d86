"""GitHub identity and inaccessible repositories against the real simulator, Kafka and Redis.

- One record key per issue, PR and comment on every path (backfill, poll, signed webhooks through the
  real receiver, reconcile), with a connection whose names differ in case from GitHub's and a repository
  renamed while webhooks flow: the records topic equals the simulator's truth, and no other key is live.
- A repository that turns 404 in the middle of a run: every other repository is synced, the run fails
  at its end with one line naming it, and reconcile deletes nothing of it (and still deletes elsewhere).
"""

from __future__ import annotations

import logging

import httpx
import pytest
from sync_helpers import (
    duplicate_event_ids,
    history,
    normalize_until_idle,
    record_problems,
    served,
    settings_for,
    settled_read,
    truth,
    wait_until_webhooks_delivered,
)

from apisync.apis.github.source import GitHubSource
from apisync.kafka.producer import Producer
from apisync.sync import run_backfill, run_incremental, run_reconcile
from apisync.sync.progress import IncompleteRun
from apisync.webhooks.receiver import WebhookSettings, create_app

pytestmark = pytest.mark.integration
COLLECTIONS = ("issue", "pull_request", "issue_comment")
# Random mutations reach every collection, reviews included: the walk that checks "no other key is live"
# syncs them all.
EVERY_COLLECTION = GitHubSource.collections
SECRET = "gh-identity-secret"
DEMO, TOOLS = "7000001#", "7000002#"  # record id prefixes of apisync/demo and apisync/tools


@pytest.fixture
def sim(simulator_url):
    with httpx.Client(base_url=simulator_url, timeout=30) as client:
        yield client


@pytest.fixture
def receiver(kafka_config, sim):
    """The real receiver under uvicorn, writing to `github.webhooks`; `send()` has the simulator sign and
    send GitHub's webhooks to it (call it after `clean_slate`, which turns webhooks off)."""
    settings = WebhookSettings(secrets={"github": (SECRET,)})
    with served(create_app(settings, Producer(kafka_config))) as base:
        def send() -> None:
            sim.post("/_admin/config", json={
                "webhooks": {"github": {"url": f"{base}/webhooks/github", "secrets": [SECRET]}},
                "webhook_chaos": {"shuffle": True, "duplicate_rate": 0.2, "max_attempts": 5}}).raise_for_status()
        try:
            yield send
        finally:
            sim.post("/_admin/config", json={"webhooks": {"github": {"url": None}},
                                             "webhook_chaos": {"shuffle": False, "duplicate_rate": 0.0}})


def test_a_rename_and_a_connection_in_another_case_keep_one_key_per_object_on_every_path(
        clean_slate, sim, receiver, kafka_config, redis_url, simulator_url, caplog):
    clean_slate(seed=61, objects=20)
    receiver()
    settings = settings_for("github", kafka_config, redis_url, simulator_url, page_size=10,
                            repos=["APISYNC/Demo", "apisync/TOOLS"])  # GitHub's names are lower case
    for collection in EVERY_COLLECTION:
        run_backfill(settings, collection)
    before = _mutate(sim, 15, ["create", "update", "delete", "transfer"])
    sim.post("/_admin/github/rename", json={"repo": "apisync/tools", "to": "ApiSync/Toolbox"}).raise_for_status()
    after = _mutate(sim, 15, ["create", "update", "delete", "transfer"])
    assert {m["kind"] for m in before + after} >= {"delete", "transfer"}  # webhooks that must tombstone
    assert any(m["id"].startswith(TOOLS) for m in after)  # sent with the new full_name
    delivered = wait_until_webhooks_delivered(sim, "github")
    assert delivered["delivered"] >= 30 and len(settled_read(kafka_config, "github.webhooks")) >= 30
    with caplog.at_level(logging.WARNING, logger="apisync.apis.github"):
        for collection in EVERY_COLLECTION:
            run_incremental(settings, collection)  # the connection still names apisync/TOOLS: 301 followed
    assert any("renamed to ApiSync/Toolbox" in r.getMessage() for r in caplog.records)
    normalize_until_idle("github", kafka_config, redis_url, settings)
    summary = run_reconcile(settings, "issue", dry_run=False)
    assert summary.note.startswith("deleted: nothing"), summary.note  # every live key is one GitHub lists
    normalize_until_idle("github", kafka_config, redis_url, settings)
    _assert_records_equal_truth(kafka_config, simulator_url)


def test_a_repository_that_turns_404_mid_run_stops_nothing_else_and_loses_nothing_of_its_own(
        clean_slate, sim, kafka_config, redis_url, simulator_url, caplog):
    clean_slate(seed=62, objects=30)
    settings = settings_for("github", kafka_config, redis_url, simulator_url, page_size=5)  # demo, then tools
    for collection in COLLECTIONS:
        run_backfill(settings, collection)
    normalize_until_idle("github", kafka_config, redis_url, settings)
    changed = _mutate(sim, 40, ["update"], "issue")
    assert sum(m["id"].startswith(DEMO) for m in changed) > 5  # demo's changes take more than one page
    spare = {m["id"] for m in changed}
    gone_in_demo = _delete_silently(sim, simulator_url, DEMO, 2, spare)
    gone_in_tools = _delete_silently(sim, simulator_url, TOOLS, 2, spare)
    # apisync/demo answers its lookup and its first page, then 404 to everything (deleted, or made private)
    sim.post("/_admin/github/access", json={"repo": "apisync/demo", "status": 404, "after": 2}).raise_for_status()

    with caplog.at_level(logging.ERROR, logger="apisync.sync"), pytest.raises(IncompleteRun) as failed:
        run_incremental(settings, "issue")
    line = str(failed.value)
    assert "\n" not in line and "apisync/demo" in line and "HTTP 404" in line and "tools" not in line
    assert failed.value.summary.unavailable == [failed.value.summary.unavailable[0]]
    assert any("apisync/demo" in r.getMessage() for r in caplog.records if r.name == "apisync.sync")
    observed = {c["id"] for c in _changes(kafka_config, "poll")}
    assert any(i.startswith(DEMO) for i in observed)  # demo's first page was committed before the 404
    assert {m["id"] for m in changed if m["id"].startswith(TOOLS)} <= observed  # tools, listed after it, synced

    with pytest.raises(IncompleteRun, match="apisync/demo"):
        run_reconcile(settings, "issue", dry_run=False, max_delete_share=1.0)
    normalize_until_idle("github", kafka_config, redis_url, settings)
    swept = {c["id"] for c in _changes(kafka_config, "reconcile")}
    assert swept == set(gone_in_tools)  # tools reconciled; nothing of the unlisted demo touched
    records = history(kafka_config, "github.records")
    ground = truth(simulator_url, "github")
    assert record_problems("github", ["issue"], records, _only(ground, TOOLS)) == []
    assert all(records[f"github.issue.{i}"][-1][0] is not None for i in gone_in_demo)  # still live here

    # Access comes back (the task's retry): demo catches up and its deletes are found.
    sim.post("/_admin/github/access", json={"repo": "apisync/demo", "status": None}).raise_for_status()
    run_incremental(settings, "issue")
    run_reconcile(settings, "issue", dry_run=False)
    normalize_until_idle("github", kafka_config, redis_url, settings)
    assert record_problems("github", ["issue"], history(kafka_config, "github.records"),
                           truth(simulator_url, "github")) == []


# ---- helpers ------------------------------------------------------------------------------------
def _mutate(sim: httpx.Client, count: int, kinds: list[str], collection: str | None = None) -> list[dict]:
    body = {"api": "github", "count": count, "kinds": kinds, **({"collection": collection} if collection else {})}
    reply = sim.post("/_admin/mutate", json=body)
    reply.raise_for_status()
    return reply.json()["mutations"]


def _delete_silently(sim: httpx.Client, simulator_url: str, prefix: str, count: int, spare: set[str]) -> list[str]:
    """Delete `count` issues of one repository (none of `spare`) without a webhook: only reconcile finds them."""
    issues = truth(simulator_url, "github")["objects"]["issue"]
    ids = sorted(i for i, e in issues.items()
                 if i.startswith(prefix) and e["data"]["comments"] == 0 and i not in spare)[:count]
    assert len(ids) == count
    sim.post("/_admin/silent", json={"api": "github", "collection": "issue", "kind": "delete",
                                     "ids": ids, "count": count}).raise_for_status()
    return ids


def _changes(kafka_config: dict, source: str) -> list[dict]:
    import orjson

    return [v for v in (orjson.loads(m.value()) for m in settled_read(kafka_config, "github.changes"))
            if v["source"] == source]


def _only(ground: dict, prefix: str) -> dict:
    """The truth of one repository's issues and PRs."""
    return {"objects": {c: {i: e for i, e in objs.items() if i.startswith(prefix)}
                        for c, objs in ground["objects"].items()},
            "deleted": {c: [i for i in ids if i.startswith(prefix)] for c, ids in ground["deleted"].items()}}


def _assert_records_equal_truth(kafka_config: dict, simulator_url: str) -> None:
    """Every object of the truth live with its content, every deleted one tombstoned, no version backwards,
    and no other live key: a second key for one object would be a zombie."""
    ground = truth(simulator_url, "github")
    records = history(kafka_config, "github.records")
    assert record_problems("github", EVERY_COLLECTION, records, ground) == []
    live = {key for key, past in records.items() if past[-1][0] is not None}
    expected = {f"github.{c}.{i}" for c in EVERY_COLLECTION for i in ground["objects"][c]}
    assert live == expected, f"zombies: {sorted(live - expected)[:10]}"
    assert duplicate_event_ids(history(kafka_config, "github.events")) == []
