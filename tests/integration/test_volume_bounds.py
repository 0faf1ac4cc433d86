"""A burst of changes more than 3x a walk's dedupe memory between two polls, against the real simulator over
HTTP, real Kafka and Redis: the records topic, read to its end, equals the simulator's truth, content
included (0 lost, 0 stale), and the checkpoint stays bounded. The memory is lowered to BOUND here so each
test runs in seconds; tests/unit/sources/test_walk_bounds.py proves the default (2,000) the same way.

- GitHub pull requests, walked newest first (`sort=updated&direction=desc`);
- GitHub issues and comments, whose burst shares one second: more ties than a page, swept in creation order;
- Salesforce, a bulk update with a third of its transactions committing late, stamped with their start;
- HubSpot, an import that reaches the search index over 20 s: half of it after the first poll.
"""

from __future__ import annotations

from collections import Counter

import httpx
import orjson
import pytest
import redis
from sync_helpers import history, normalize_until_consumed, record_problems, settings_for, truth

from apisync.apis.github.source import GitHubSource
from apisync.apis.github.walks import KeysetWalk
from apisync.apis.hubspot.source import HubSpotSource
from apisync.apis.salesforce.source import SalesforceSource
from apisync.checkpoints import CheckpointStore, checkpoint_key
from apisync.kafka.reader import read_topic
from apisync.sync import run_backfill, run_incremental

pytestmark = [pytest.mark.integration, pytest.mark.volume]
BOUND = 20  # dedupe entries per walk (the default is 2,000)
REPOS = ["apisync/demo", "apisync/tools"]
REPO_IDS = ["7000001", "7000002"]  # the same repositories as record ids name them
CHECKPOINT_LIMIT = 64_000


@pytest.fixture
def sim(simulator_url):
    with httpx.Client(base_url=simulator_url, timeout=60) as client:
        yield client
        # the simulator keeps its config across resets: leave it as clean_slate and the other tests expect
        client.post("/_admin/config", json={"salesforce_late_commits": {"share": 0.1, "lag_s": 3},
                                             "hubspot_search_lag_s": 1.0})


def _burst(sim: httpx.Client, api: str, collection: str, count: int) -> list[dict]:
    """`count` updates now, in one request: one or two server seconds."""
    reply = sim.post("/_admin/mutate", json={"api": api, "count": count, "kinds": ["update"],
                                             "collection": collection})
    reply.raise_for_status()
    return reply.json()["mutations"]


def _checkpoint_bytes(settings, collection: str) -> int:
    saved = CheckpointStore(settings.kafka).load(checkpoint_key(settings.api.api, "incremental", collection))
    size = len(orjson.dumps(saved))
    assert size <= CHECKPOINT_LIMIT
    return size


def _assert_records_equal_truth(api: str, collections, settings) -> None:
    """Normalize every observation (re-fetching ties, as in production); then 0 lost, 0 stale."""
    stored = len(read_topic(settings.kafka, f"{api}.changes", timeout=60))
    redis_client = redis.Redis.from_url(settings.redis_url)
    assert normalize_until_consumed(api, settings.kafka, redis_client, stored, settings=settings) == stored
    ground = truth(settings.api.base_url, api)
    if api == "github":
        ground = dict(ground, deleted={})  # the seed's deleted issues wait for webhooks or the reconcile job
    problems = record_problems(api, collections, history(settings.kafka, f"{api}.records"), ground)
    lost = [p for p in problems if "missing" in p or "tombstoned" in p]
    stale = [p for p in problems if p.startswith("stale")]
    print(f"{api} {', '.join(collections)}: {stored} observations, {len(lost)} lost, {len(stale)} stale")
    assert problems == []


def _per_repo(mutations: list[dict]) -> Counter:
    return Counter(m["id"].rpartition("#")[0] for m in {m["id"]: m for m in mutations}.values())


def test_github_prs_walked_newest_first_lose_nothing_past_the_memory(
        clean_slate, sim, kafka_config, redis_url, simulator_url):
    clean_slate(seed=31, objects=200)
    settings = settings_for("github", kafka_config, redis_url, simulator_url, page_size=30)
    source = GitHubSource(REPOS, page_size=30, max_recent=BOUND)
    run_backfill(settings, "pull_request", source=source)
    changed = _per_repo(_burst(sim, "github", "pull_request", 400))
    assert min(changed[repo] for repo in REPO_IDS) > 3 * BOUND, changed
    summary = run_incremental(settings, "pull_request", source=source)
    print(f"PRs changed per repository {dict(changed)}, memory {BOUND}: the poll emitted {summary.records}; "
          f"checkpoint {_checkpoint_bytes(settings, 'pull_request')} B")
    _assert_records_equal_truth("github", ["pull_request"], settings)


def test_github_issues_and_comments_swept_in_creation_order_lose_nothing_past_the_memory(
        clean_slate, sim, kafka_config, redis_url, simulator_url, monkeypatch):
    sweeps = _count_sweeps(monkeypatch)
    clean_slate(seed=32, objects=250)
    collections = ["issue", "issue_comment"]
    settings = settings_for("github", kafka_config, redis_url, simulator_url, page_size=10)
    source = GitHubSource(REPOS, page_size=10, max_recent=BOUND)
    for collection in collections:
        run_backfill(settings, collection, source=source)
    issues = _per_repo(_burst(sim, "github", "issue", 400))
    comments = {m["id"] for m in _burst(sim, "github", "issue_comment", 400)}
    assert min(issues[repo] for repo in REPO_IDS) > 3 * BOUND and len(comments) > 3 * BOUND, (issues, len(comments))
    for collection in collections:
        summary = run_incremental(settings, collection, source=source)
        print(f"{collection}: issues per repository {dict(issues)}, comments {len(comments)}, memory {BOUND}: "
              f"emitted {summary.records}; checkpoint {_checkpoint_bytes(settings, collection)} B")
    assert sweeps, "the burst never filled a page with one second: no sweep in creation order ran"
    _assert_records_equal_truth("github", collections, settings)


def _count_sweeps(monkeypatch) -> list[int]:
    """The `since` of every creation-order sweep the GitHub walks start."""
    sweeps, sweep = [], KeysetWalk._sweep

    def counted(walk, since_ms):
        sweeps.append(since_ms)
        return sweep(walk, since_ms)

    monkeypatch.setattr(KeysetWalk, "_sweep", counted)
    return sweeps


def test_salesforce_bulk_update_with_late_commits_loses_nothing_past_the_memory(
        clean_slate, sim, kafka_config, redis_url, simulator_url):
    clean_slate(seed=33, objects=200)
    settings = settings_for("salesforce", kafka_config, redis_url, simulator_url, page_size=25)
    source = SalesforceSource(page_size=25, max_recent=BOUND)
    sim.post("/_admin/config", json={"salesforce_late_commits": {"share": 0.0}}).raise_for_status()
    run_backfill(settings, "account", source=source)
    # A data load: a third of its transactions commit 30 s late, stamped with their start (see the simulator).
    sim.post("/_admin/config", json={"salesforce_late_commits": {"share": 0.33, "lag_s": 30}}).raise_for_status()
    changed = {m["id"] for m in _burst(sim, "salesforce", "account", 250)}
    sim.post("/_admin/config", json={"salesforce_late_commits": {"share": 0.0}}).raise_for_status()
    first = run_incremental(settings, "account", source=source)
    sim.post("/_admin/clock", json={"advance_s": 31}).raise_for_status()  # the late transactions commit
    second = run_incremental(settings, "account", source=source)
    print(f"salesforce: {len(changed)} accounts in the bulk update, memory {BOUND}: first poll {first.records}, "
          f"after the late commits {second.records}; checkpoint {_checkpoint_bytes(settings, 'account')} B")
    assert first.records > 3 * BOUND and second.records > 0
    _assert_records_equal_truth("salesforce", ["account"], settings)


def test_hubspot_burst_that_the_search_index_shows_late_loses_nothing_past_the_memory(
        clean_slate, sim, kafka_config, redis_url, simulator_url):
    clean_slate(seed=34, objects=200)
    # the search limit (5/s) is the account's binding budget, as in production
    settings = settings_for("hubspot", kafka_config, redis_url, simulator_url, rate=5, page_size=20)
    source = HubSpotSource(page_size=20, max_recent=BOUND)
    run_backfill(settings, "deal", source=source)
    # An import: each change reaches the search index within 20 s of the simulator's clock (see the simulator).
    sim.post("/_admin/config", json={"hubspot_search_lag_s": 20.0}).raise_for_status()
    changed = {m["id"] for m in _burst(sim, "hubspot", "deal", 400)}
    sim.post("/_admin/clock", json={"advance_s": 12}).raise_for_status()  # part of the import is searchable
    first = run_incremental(settings, "deal", source=source)
    sim.post("/_admin/clock", json={"advance_s": 9}).raise_for_status()  # all of it is
    second = run_incremental(settings, "deal", source=source)
    print(f"hubspot: {len(changed)} deals in the import, memory {BOUND}: first poll {first.records}, "
          f"once all indexed {second.records}; checkpoint {_checkpoint_bytes(settings, 'deal')} B")
    assert first.records > 3 * BOUND and second.records > 0
    _assert_records_equal_truth("hubspot", ["deal"], settings)
