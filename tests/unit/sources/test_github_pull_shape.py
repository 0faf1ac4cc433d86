"""One shape of a pull_request record on every path: GitHub lists PRs as `pull-request-simple`, while a single
GET and a `pull_request` delivery carry the full PR. Backfill, poll, re-fetch and webhook observations of the
same PR must hold the same data, or every alternation of paths would look like a change downstream."""

from __future__ import annotations

import warnings

import httpx
import orjson
import pytest

from api_simulator import github_views as views
from api_simulator.app import create_app
from api_simulator.clock import Clock
from api_simulator.config import SimulatorConfig
from api_simulator.state import Simulator
from apisync.apis.github.keys import PULL_REQUEST_SIMPLE
from apisync.apis.github.source import GitHubSource
from apisync.apis.github.webhook import parse_github
from apisync.http import ApiClient
from apisync.registry import spec_for

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

EPOCH = 1_790_000_000
REPOS = ["apisync/demo", "apisync/tools"]
FULL_ONLY = set(views.PULL_ONLY)  # what GET /pulls/{number} adds to a list item


@pytest.fixture
def github():
    now = [float(EPOCH)]
    sim = Simulator(SimulatorConfig(seed=3, objects=12), clock=Clock(time_fn=lambda: now[0]))
    sim.update_config({"rate_limits": {"github": {"per_hour": 1_000_000, "secondary_per_minute": 1_000_000}}})
    http = TestClient(create_app(sim=sim), base_url="http://github.test")

    def forward(request: httpx.Request) -> httpx.Response:
        reply = http.request(request.method, request.url.raw_path.decode(), headers=request.headers)
        return httpx.Response(reply.status_code, headers=reply.headers, content=reply.content)
    client = ApiClient("github", "http://github.test", None, transport=httpx.MockTransport(forward),
                       headers={"Authorization": "Bearer ghp_apisync"}, max_retries=0, sleep=lambda s: None,
                       signals=spec_for("github").signals)
    return sim, client, now


def _truth(sim) -> dict[str, dict]:
    return {oid: entry["data"] for oid, entry in sim.truth("github")["objects"]["pull_request"].items()}


def _observed(batches) -> dict[str, dict]:
    return {obs.id: obs.data for batch in batches for obs in batch.observations}


def _mutate_pulls(sim, now, count: int) -> list:
    """`count` PR changes one second apart (edits, closes, merges, pushes, review requests); their deliveries."""
    for _ in range(count):
        now[0] += 1
        sim.models["github"].mutate("update", "pull_request")
    return [m for m in sim.models["github"].drain_outbox() if m.event == "pull_request"]


def test_every_path_observes_a_pull_request_with_the_fields_of_the_list(github):
    sim, client, now = github
    source = GitHubSource(REPOS, page_size=5)
    backfilled = _observed(source.backfill(client, "pull_request", None, None))
    assert backfilled == _truth(sim) and backfilled
    cursor = source.incremental_start(client, "pull_request")
    deliveries = _mutate_pulls(sim, now, 30)
    assert deliveries and all(FULL_ONLY <= orjson.loads(m.body)["pull_request"].keys() for m in deliveries)
    truth = _truth(sim)
    polled = _observed(GitHubSource(REPOS, page_size=5).incremental(client, "pull_request", cursor))
    assert polled and all(polled[oid] == truth[oid] for oid in polled)
    refetched = {oid: source.fetch(client, "pull_request", oid).data for oid in truth}
    assert refetched == truth
    last = {}
    for message in deliveries:  # the newest delivery of each PR holds its current state
        obs = parse_github(message.body, {"X-GitHub-Event": "pull_request"}, "2026-01-01T00:00:00Z")
        last[obs.id] = obs.data
    assert last and all(last[oid] == truth[oid] for oid in last)
    assert all(data.keys() <= PULL_REQUEST_SIMPLE for data in truth.values())


def test_a_full_pull_request_from_a_single_get_is_cut_to_the_list_fields(github):
    sim, client, _now = github
    oid = next(iter(sim.models["github"].pulls.entries))
    repository_id, number = oid.split("#")
    full = client.get_json(f"/repositories/{repository_id}/pulls/{number}").data
    assert FULL_ONLY <= full.keys()  # not vacuous: the single GET serves the full PR
    observed = GitHubSource(REPOS).fetch(client, "pull_request", oid).data
    assert observed == {name: value for name, value in full.items() if name not in FULL_ONLY}
