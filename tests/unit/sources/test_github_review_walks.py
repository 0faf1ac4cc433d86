"""GitHub PR reviews and review comments against the simulated GitHub in-process: backfill and polls equal the
truth, a burst of reviewed PRs 3x larger than the walk's dedupe memory loses none, a crash mid-page resumes
without a skip, and webhooks key and version a review as the listing does."""

from __future__ import annotations

import warnings

import httpx
import orjson
import pytest

from api_simulator.app import create_app
from api_simulator.clock import Clock
from api_simulator.config import SimulatorConfig
from api_simulator.state import Simulator
from apisync.apis.github.reviews import is_submitted, review_record_id, split_review_id
from apisync.apis.github.source import GitHubSource
from apisync.apis.github.webhook import parse_github
from apisync.http import ApiClient
from apisync.registry import spec_for
from apisync.sources.base import Gone

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

EPOCH = 1_790_000_000
REVIEWS, COMMENTS = "pull_request_review", "pull_request_review_comment"
REPOS = ["apisync/demo", "apisync/tools"]


class GitHubSim:
    """The simulated GitHub in-process, on a clock only the test moves."""

    def __init__(self, objects: int = 12, seed: int = 5) -> None:
        self.now = float(EPOCH)
        self.sim = Simulator(SimulatorConfig(seed=seed, objects=objects), clock=Clock(time_fn=lambda: self.now))
        self.sim.update_config({"rate_limits": {"github": {"per_hour": 1_000_000, "secondary_per_minute": 1_000_000}}})
        self.model = self.sim.models["github"]
        self.http = TestClient(create_app(sim=self.sim), base_url="http://github.test")

    def client(self) -> ApiClient:
        def forward(request: httpx.Request) -> httpx.Response:
            reply = self.http.request(request.method, request.url.raw_path.decode(), headers=request.headers)
            return httpx.Response(reply.status_code, headers=reply.headers, content=reply.content)
        return ApiClient("github", "http://github.test", None, transport=httpx.MockTransport(forward),
                         headers={"Authorization": "Bearer ghp_apisync"}, max_retries=0, sleep=lambda s: None,
                         signals=spec_for("github").signals)

    def mutate(self, collection: str, kind: str, count: int) -> list[str]:
        """`count` mutations, one simulated second apart; their webhooks are dropped."""
        done = []
        for _ in range(count):
            self.now += 1
            mutation = self.model.mutate(kind, collection)
            done += [mutation.id] if mutation else []
        self.model.drain_outbox()
        return done

    def truth(self, collection: str) -> dict[str, dict]:
        return self.model.truth()["objects"][collection]


def _run(source, client, walk, collection, cursor, crash_after=None):
    """(observations, last cursor, finished) of one backfill or incremental run, optionally cut short."""
    observations, last = [], cursor
    pages = source.backfill(client, collection, cursor, None) if walk == "backfill" else \
        source.incremental(client, collection, cursor)
    for count, batch in enumerate(pages, start=1):
        observations += batch.observations
        last = orjson.loads(orjson.dumps(batch.cursor))  # what the checkpoint holds
        if crash_after is not None and count >= crash_after:
            return observations, last, False
    return observations, last, True


def _newest(observations) -> dict[str, dict]:
    kept = {}
    for obs in observations:
        if obs.id not in kept or obs.version >= kept[obs.id][0]:
            kept[obs.id] = (obs.version, obs.data)
    return {oid: data for oid, (_v, data) in kept.items()}


def _expected(github: GitHubSim, collection: str) -> dict[str, dict]:
    return {oid: entry["data"] for oid, entry in github.truth(collection).items()}


@pytest.mark.parametrize("collection", [REVIEWS, COMMENTS])
def test_a_backfill_emits_every_review_and_review_comment_as_the_truth_has_it(collection):
    github = GitHubSim()
    assert len(github.truth(collection)) >= 8  # not vacuous
    source = GitHubSource(REPOS, page_size=3)
    observations, _cursor, done = _run(source, github.client(), "backfill", collection, None)
    assert done and _newest(observations) == _expected(github, collection)
    assert {obs.key.split(".", 2)[1] for obs in observations} == {collection}


def test_a_pr_with_more_reviews_than_three_pages_has_them_all_and_a_crash_resumes_without_a_skip():
    github = GitHubSim(objects=6)
    pull = next(iter(github.model.pulls.entries))
    for _ in range(10):  # 10 reviews on one PR: more than 3 review pages of 3
        github.now += 1
        github.model.book._submit(pull, int(github.now))
    github.model.drain_outbox()
    source, client = GitHubSource(REPOS, page_size=3), github.client()
    seen, cursor = [], None
    for crash_after in (2, 3, 1, 4, 2):  # crash mid-page, again and again, resuming from each checkpoint
        observations, cursor, done = _run(source, client, "backfill", REVIEWS, cursor, crash_after)
        seen += observations
        if done:
            break
    while not done:
        observations, cursor, done = _run(source, client, "backfill", REVIEWS, cursor)
        seen += observations
    assert _newest(seen) == _expected(github, REVIEWS)
    assert len([oid for oid in _expected(github, REVIEWS) if oid.startswith(pull + "/")]) >= 10


@pytest.mark.parametrize("max_recent", [3, 2_000])
def test_a_poll_after_a_burst_of_reviews_larger_than_its_memory_emits_every_one(max_recent):
    github = GitHubSim(objects=20)
    source, client = GitHubSource(REPOS, page_size=5, max_recent=max_recent), github.client()
    cursor = source.incremental_start(client, REVIEWS)
    github.now += 120
    submitted = github.mutate(REVIEWS, "create", 3 * 3 + 3)  # 12 reviews over many PRs: 4x a memory of 3
    replies = github.mutate(COMMENTS, "create", 5)
    observations, cursor, done = _run(source, client, "incremental", REVIEWS, cursor)
    emitted = {obs.id for obs in observations}
    assert done and set(submitted) <= emitted
    reply_reviews = {review_record_id(*_repo_id_number(github, cid), github.model.book.comments.entries[cid]
                                      .data["pull_request_review_id"]) for cid in replies}
    assert reply_reviews <= emitted  # a reply is a review of its own
    newest = _newest(observations)
    assert all(newest[oid] == github.truth(REVIEWS)[oid]["data"] for oid in submitted)


def test_a_dismissal_keeps_the_version_and_reaches_the_poll_with_the_new_state():
    github = GitHubSim(objects=20)
    source, client = GitHubSource(REPOS, page_size=5), github.client()
    approved = [oid for oid, e in github.model.book.reviews.entries.items() if e.data["state"] == "APPROVED"]
    assert approved
    cursor = source.incremental_start(client, REVIEWS)
    github.now += 120
    before = github.truth(REVIEWS)[approved[0]]["version"]
    github.model.book.dismiss(approved[0], int(github.now))
    observations, _cursor, _done = _run(source, client, "incremental", REVIEWS, cursor)
    [seen] = [obs for obs in observations if obs.id == approved[0]]
    assert seen.version == before and seen.data["state"] == "DISMISSED"


def test_review_comment_polls_see_edits_and_reconcile_confirms_deletes():
    github = GitHubSim(objects=20)
    source, client = GitHubSource(REPOS, page_size=4), github.client()
    cursor = source.incremental_start(client, COMMENTS)
    github.now += 120
    edited = github.mutate(COMMENTS, "update", 12)
    deleted = github.mutate(COMMENTS, "delete", 3)
    observations, _cursor, done = _run(source, client, "incremental", COMMENTS, cursor)
    newest = _newest(observations)
    truth = _expected(github, COMMENTS)
    assert done and all(newest[cid] == truth[cid] for cid in set(edited) - set(deleted))
    listed = set(source.list_ids(client, COMMENTS))
    assert listed == set(truth) and not set(deleted) & listed
    assert all(isinstance(source.fetch(client, COMMENTS, cid), Gone) for cid in deleted)
    live = next(iter(truth))
    assert source.fetch(client, COMMENTS, live).data == truth[live]


def test_a_review_is_fetched_through_its_pr_and_listed_by_id():
    github = GitHubSim()
    source, client = GitHubSource(REPOS), github.client()
    truth = github.truth(REVIEWS)
    assert set(source.list_ids(client, REVIEWS)) == set(truth)
    oid = next(iter(truth))
    fetched = source.fetch(client, REVIEWS, oid)
    assert (fetched.id, fetched.version, fetched.data) == (oid, truth[oid]["version"], truth[oid]["data"])
    repository, number, review = split_review_id(oid)
    assert isinstance(source.fetch(client, REVIEWS, review_record_id(repository, number + 1000, review)), Gone)


@pytest.mark.parametrize("kind, collection", [("create", REVIEWS), ("update", REVIEWS), ("create", COMMENTS),
                                              ("update", COMMENTS), ("delete", COMMENTS)])
def test_webhooks_key_and_shape_a_review_as_the_rest_api_does(kind, collection):
    github = GitHubSim()
    github.model.drain_outbox()
    for _ in range(4):
        github.now += 1
        mutation = github.model.mutate(kind, collection)
        truth = github.model.truth()
        for message in github.model.drain_outbox():
            obs = parse_github(message.body, {"X-GitHub-Event": message.event}, "2026-12-06T00:00:00Z")
            assert obs.collection in (REVIEWS, COMMENTS)
            if obs.deleted:
                assert obs.id in truth["deleted"][obs.collection] and obs.id == mutation.id
                continue
            expected = truth["objects"][obs.collection][obs.id]
            assert (obs.version, obs.data) == (expected["version"], expected["data"])


def test_a_review_delivery_without_its_pr_number_is_refused():
    body = orjson.dumps({"action": "submitted", "repository": {"id": 7}, "pull_request": {},
                         "review": {"id": 9, "submitted_at": "2026-01-01T00:00:00Z", "state": "approved"}})
    with pytest.raises(Exception, match="pull_request.number"):
        parse_github(body, {"X-GitHub-Event": "pull_request_review"}, "2026-12-06T00:00:00Z")


def test_a_pending_review_is_not_synced_until_submitted():
    assert not is_submitted({"id": 1, "state": "PENDING", "submitted_at": None})
    assert is_submitted({"id": 1, "state": "APPROVED", "submitted_at": "2026-01-01T00:00:00Z"})


def _repo_id_number(github: GitHubSim, cid: str) -> tuple[int, int]:
    url = github.model.book.comments.entries[cid].data["pull_request_url"]
    repo, _, number = url.split("/repos/", 1)[1].rpartition("/pulls/")
    return {"apisync/demo": 7000001, "apisync/tools": 7000002}[repo], int(number)
