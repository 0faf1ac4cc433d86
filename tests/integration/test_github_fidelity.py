"""GitHub as it really behaves (the simulator does each of these by default): the records topic, read to
its end, equals the simulator's truth, content included; no event id twice; no version backwards.

- objects updated while a backfill walks its pages (page numbers would shift and skip);
- more same-second changes than a page holds (the keyset must not fall back to page numbers);
- PR-only changes (reviews, pushed commits) that bump the PR's `updated_at` but not its issue's;
- an issue transferred to another repository (301), and a renamed repository (301);
- several repositories per connection, whose issue numbers overlap;
- quiet polls answered 304 Not Modified (free of rate limit), never hiding a change past page 1.
"""

from __future__ import annotations

import logging
import os
import time

import httpx
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

from apisync.sync import run_backfill, run_incremental, run_reconcile

pytestmark = pytest.mark.integration
COLLECTIONS = ("issue", "pull_request", "issue_comment")


@pytest.fixture
def sim(simulator_url):
    with httpx.Client(base_url=simulator_url, timeout=30) as client:
        yield client


def test_backfill_with_two_updates_after_every_page_then_one_incremental_leaves_every_object_live(
        clean_slate, sim, kafka_config, redis_url, simulator_url):
    clean_slate(seed=10, objects=80)
    settings = settings_for("github", kafka_config, redis_url, simulator_url, page_size=10)
    for collection in COLLECTIONS:
        summary = run_backfill(settings, collection, on_progress=_mutate_each_page(sim, collection, 2))
        assert summary.pages >= 8
    for collection in COLLECTIONS:
        run_incremental(settings, collection)
    _assert_records_equal_truth(kafka_config, redis_url, settings, COLLECTIONS)


def test_more_same_second_changes_than_a_page_holds_are_all_synced(
        clean_slate, sim, kafka_config, redis_url, simulator_url):
    clean_slate(seed=11, objects=40)
    settings = settings_for("github", kafka_config, redis_url, simulator_url, page_size=10)
    for collection in ("issue", "issue_comment"):
        run_backfill(settings, collection)
    for collection in ("issue", "issue_comment"):
        _mutate(sim, collection, 60, ["update"])  # a burst: dozens of objects share one second
        # Every page, a minute passes and 2 objects change: a skipped tie is then older than any lookback.
        run_incremental(settings, collection, on_progress=_mutate_each_page(sim, collection, 2, advance_s=61))
        run_incremental(settings, collection)
    _assert_records_equal_truth(kafka_config, redis_url, settings, ("issue", "issue_comment"))


def test_pr_only_changes_reach_the_records(clean_slate, sim, kafka_config, redis_url, simulator_url):
    clean_slate(seed=12, objects=30)
    settings = settings_for("github", kafka_config, redis_url, simulator_url)
    run_backfill(settings, "pull_request")
    _mutate(sim, "pull_request", 30, ["update"])
    ground = truth(simulator_url, "github")
    issues = ground["objects"]["issue"] | {k: v for k, v in _issue_facets(sim).items()}
    pr_only = [k for k, pr in ground["objects"]["pull_request"].items()
               if pr["data"]["updated_at"] > issues[k]["data"]["updated_at"]]
    assert len(pr_only) >= 5  # not vacuous: the PR moved, its issue did not
    run_incremental(settings, "pull_request")
    _assert_records_equal_truth(kafka_config, redis_url, settings, ["pull_request"], ground)


def test_a_transferred_issue_is_deleted_here_and_reconcile_does_not_fail(
        clean_slate, sim, kafka_config, redis_url, simulator_url):
    clean_slate(seed=13, objects=60)
    settings = settings_for("github", kafka_config, redis_url, simulator_url)
    run_backfill(settings, "issue")
    moved = _mutate(sim, "issue", 2, ["transfer"])
    assert len(moved) == 2
    old = moved[0]["id"]
    repo_id, number = old.rsplit("#", 1)  # ids are <repository id>#number
    answer = sim.get(f"/repositories/{repo_id}/issues/{number}", headers=_AUTH, follow_redirects=False)
    assert answer.status_code == 301 and "/repositories/" in answer.headers["location"]
    run_incremental(settings, "issue")  # the issue's new home (another configured repository)
    _normalize(kafka_config, redis_url, settings)
    summary = run_reconcile(settings, "issue", dry_run=False)
    assert all(m["id"] in summary.note for m in moved)
    ground = truth(simulator_url, "github")
    assert {m["id"] for m in moved} <= set(ground["deleted"]["issue"])
    _assert_records_equal_truth(kafka_config, redis_url, settings, ["issue"], ground)
    deleted = {v["key"]: v["reason"] for past in history(kafka_config, "github.events").values()
               for v, _, _ in past if v["type"] == "deleted"}
    assert sorted(deleted) == sorted(f"github.issue.{m['id']}" for m in moved)
    # the deleted event says where the issue went: its number in the other repository (the 301's target)
    new_homes = {m["id"]: sim.get(f"/repositories/{m['id'].split('#')[0]}/issues/{m['id'].split('#')[1]}",
                                  headers=_AUTH, follow_redirects=True).json()["html_url"]
                 for m in moved}
    for old_id, html_url in new_homes.items():
        owner, name, _, number = html_url.rstrip("/").split("/")[-4:]
        assert deleted[f"github.issue.{old_id}"] == f"transferred to {owner}/{name}#{number}"


def test_a_renamed_repository_is_followed_and_announced_once(
        clean_slate, sim, kafka_config, redis_url, simulator_url, caplog):
    clean_slate(seed=14, objects=20)
    sim.post("/_admin/github/rename", json={"repo": "apisync/tools", "to": "apisync/toolbox"}).raise_for_status()
    settings = settings_for("github", kafka_config, redis_url, simulator_url)
    with caplog.at_level(logging.WARNING, logger="apisync.apis.github"):
        for collection in COLLECTIONS:
            run_backfill(settings, collection)
        _mutate(sim, None, 20, ["create", "update"])
        for collection in COLLECTIONS:
            run_incremental(settings, collection)
        run_reconcile(settings, "issue", dry_run=False)
    renames = [r for r in caplog.records if "renamed to apisync/toolbox" in r.getMessage()]
    assert len(renames) == 1
    _assert_records_equal_truth(kafka_config, redis_url, settings, COLLECTIONS)


def test_several_repositories_with_overlapping_numbers_each_keep_their_records(
        clean_slate, sim, kafka_config, redis_url, simulator_url):
    clean_slate(seed=15, objects=20)
    settings = settings_for("github", kafka_config, redis_url, simulator_url)
    for collection in COLLECTIONS:
        run_backfill(settings, collection)
    _mutate(sim, None, 20, ["create", "update"])
    for collection in COLLECTIONS:
        run_incremental(settings, collection)
    _assert_records_equal_truth(kafka_config, redis_url, settings, COLLECTIONS)
    keys = set(history(kafka_config, "github.records"))
    numbers = {k.split(".", 2)[2].split("#")[1] for k in keys if "#" in k}
    demo, tools = 7000001, 7000002  # the repositories' ids: keys name a repository by id
    both = [n for n in numbers if {f"github.issue.{demo}#{n}", f"github.pull_request.{demo}#{n}"} & keys
            and {f"github.issue.{tools}#{n}", f"github.pull_request.{tools}#{n}"} & keys]
    assert both, "no issue number exists in both repositories"


def test_quiet_polls_are_conditional_and_answered_304(clean_slate, sim, kafka_config, redis_url, simulator_url):
    clean_slate(seed=16, objects=20)
    settings = settings_for("github", kafka_config, redis_url, simulator_url)
    for collection in COLLECTIONS:
        run_backfill(settings, collection)
    for _ in range(2):  # the first learns each listing's ETag, the second can ask conditionally
        for collection in COLLECTIONS:
            run_incremental(settings, collection)
    before = _stats(sim)
    for collection in COLLECTIONS:
        assert run_incremental(settings, collection).records == 0
    after = _stats(sim)
    # every listing of both repositories answered 304 (free); only each run's repository lookups cost
    assert after.get("304", 0) - before.get("304", 0) >= 2 * len(COLLECTIONS)
    _mutate(sim, None, 6, ["update"])
    for collection in COLLECTIONS:
        run_incremental(settings, collection)
    _assert_records_equal_truth(kafka_config, redis_url, settings, COLLECTIONS)


def test_a_304_on_page_one_does_not_hide_a_change_on_a_later_page(
        clean_slate, sim, kafka_config, redis_url, simulator_url):
    # `since` lists oldest change first, so a change moves its issue to the END: with more issues in the
    # lookback window than a page holds, page 1 (and its ETag) stay the same after a new issue appears.
    clean_slate(seed=17, objects=30)
    settings = settings_for("github", kafka_config, redis_url, simulator_url, page_size=5)
    run_backfill(settings, "issue")
    _mutate(sim, "issue", 30, ["update"])  # more than a page of changes per repository in the window
    for _ in range(3):  # the last two polls are quiet
        run_incremental(settings, "issue")
    created = _mutate(sim, "issue", 2, ["create"])
    assert created, "the simulator created no issue"
    assert run_incremental(settings, "issue").records >= len(created)
    _assert_records_equal_truth(kafka_config, redis_url, settings, ["issue"])


# ---- helpers ------------------------------------------------------------------------------------
_AUTH = {"Authorization": "Bearer ghp_apisync"}


def _mutate_each_page(sim: httpx.Client, collection: str, count: int, advance_s: float = 0):
    def report(_progress) -> None:
        if advance_s:
            sim.post("/_admin/clock", json={"advance_s": advance_s}).raise_for_status()
        _mutate(sim, collection, count, ["update"])
    return report


def _mutate(sim: httpx.Client, collection: str | None, count: int, kinds: list[str]) -> list[dict]:
    body = {"api": "github", "count": count, "kinds": kinds, **({"collection": collection} if collection else {})}
    reply = sim.post("/_admin/mutate", json=body)
    reply.raise_for_status()
    return reply.json()["mutations"]


def _issue_facets(sim: httpx.Client) -> dict[str, dict]:
    """The /issues view of every PR, by record id."""
    facets = {}
    for repo_id in (7000001, 7000002):  # apisync/demo, apisync/tools
        url = f"/repositories/{repo_id}/issues?state=all&per_page=100"
        while url:
            answer = sim.get(url, headers=_AUTH)
            facets |= {f"{repo_id}#{i['number']}": {"data": i} for i in answer.json() if "pull_request" in i}
            url = answer.links.get("next", {}).get("url")
    return facets


def _stats(sim: httpx.Client) -> dict[str, int]:
    return sim.get("/_admin/stats").json()["requests"].get("github", {})


_consumed: dict[str, int] = {}  # what the normalizer group consumed so far, per test


def _normalize(kafka_config, redis_url, settings) -> None:
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
    total = sum(len(settled_read(kafka_config, f"github.{t}")) for t in ("changes", "webhooks"))
    pending = total - _consumed.get(test, 0)
    client = redis.Redis.from_url(redis_url)
    assert normalize_until_consumed("github", kafka_config, client, pending, settings=settings) == pending
    _consumed[test] = total


def _assert_records_equal_truth(kafka_config, redis_url, settings, collections, ground=None) -> None:
    """Normalize everything (re-fetching like production), then compare records and events with the truth."""
    _normalize(kafka_config, redis_url, settings)
    ground = ground or truth(settings.api.base_url, "github")
    problems = _records_problems(kafka_config, collections, ground)
    assert problems == []
    assert duplicate_event_ids(history(kafka_config, "github.events")) == []


def _records_problems(kafka_config, collections, ground, patience_s: float = 30.0) -> list[str]:
    """record_problems, re-read for a while: right after a normalizer closed, a read_committed reader can
    stop at a last stable offset still held by its aborting transaction, and see only part of the topic."""
    deadline = time.monotonic() + patience_s
    while True:
        problems = record_problems("github", collections, history(kafka_config, "github.records"), ground)
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(2)
