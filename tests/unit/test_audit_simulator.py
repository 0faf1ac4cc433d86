"""The simulator's silent mutations: the object changes (or goes) with no event, no webhook, no new stamp."""

from __future__ import annotations

import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette nudges towards httpx2; httpx is the pinned client here
    from starlette.testclient import TestClient

from api_simulator.app import create_app
from api_simulator.config import SimulatorConfig

COLLECTIONS = [("stripe", "customer"), ("stripe", "invoice"), ("github", "issue"), ("github", "pull_request"),
               ("github", "issue_comment"), ("salesforce", "account"), ("salesforce", "opportunity")]


@pytest.fixture
def client():
    return TestClient(create_app(SimulatorConfig(seed=3, objects=20, epoch=1_790_000_000)), base_url="http://sim.test")


def _truth(client, api, collection):
    return client.get(f"/_admin/truth/{api}").json()["objects"][collection]


def _traces(client, api) -> tuple[int, int]:
    """(events in Stripe's feed, webhooks queued or handed to the dispatcher) for one api."""
    sim = client.app.state.sim
    events = len(sim.models["stripe"].feed.events.entries) if api == "stripe" else 0
    return events, len(sim.models[api].outbox) + sum(sim.webhooks.stats.get(api, {}).values())


@pytest.mark.parametrize("api, collection", COLLECTIONS)
def test_a_silent_update_changes_the_object_and_nothing_else(client, api, collection):
    before, traces = _truth(client, api, collection), _traces(client, api)
    answer = client.post("/_admin/silent", json={"api": api, "collection": collection, "count": 3})
    changed = answer.json()["mutations"]
    after = _truth(client, api, collection)
    assert answer.status_code == 200 and len({m["id"] for m in changed}) == 3
    for mutation in changed:
        oid = mutation["id"]
        assert after[oid]["data"] != before[oid]["data"]
        assert after[oid]["version"] == before[oid]["version"] == mutation["version"]  # no new stamp
    assert _traces(client, api) == traces  # no event, no webhook


@pytest.mark.parametrize("api, collection, stamp_field", [("github", "issue", "updated_at"),
                                                          ("salesforce", "contact", "SystemModstamp")])
def test_a_stamped_silent_update_moves_the_version_but_sends_nothing(client, api, collection, stamp_field):
    before, traces = _truth(client, api, collection), _traces(client, api)
    [mutation] = client.post("/_admin/silent", json={"api": api, "collection": collection, "stamp": True}).json()[
        "mutations"]
    after = _truth(client, api, collection)[mutation["id"]]
    assert after["version"] == mutation["version"] > before[mutation["id"]]["version"]
    assert after["data"][stamp_field] != before[mutation["id"]]["data"][stamp_field]
    assert _traces(client, api) == traces


@pytest.mark.parametrize("api, collection", [("stripe", "customer"), ("github", "issue"),
                                             ("github", "issue_comment")])
def test_a_silent_delete_leaves_no_event(client, api, collection):
    traces = _traces(client, api)
    [gone] = [m["id"] for m in client.post("/_admin/silent", json={
        "api": api, "collection": collection, "kind": "delete"}).json()["mutations"]]
    truth = client.get(f"/_admin/truth/{api}").json()
    assert gone not in truth["objects"][collection] and gone in truth["deleted"][collection]
    assert _traces(client, api) == traces


def test_named_objects_are_changed_in_the_given_order(client):
    ids = sorted(_truth(client, "stripe", "customer"))[:2]
    answer = client.post("/_admin/silent", json={"api": "stripe", "collection": "customer", "ids": ids})
    assert [m["id"] for m in answer.json()["mutations"]] == ids


@pytest.mark.parametrize("body", [
    {"api": "salesforce", "collection": "account", "kind": "delete"},  # Salesforce keeps IsDeleted rows
    {"api": "stripe", "collection": "charge", "kind": "delete"},  # Stripe never deletes charges
    {"api": "stripe", "collection": "customer", "ids": ["cus_nope"]},
    {"api": "stripe", "collection": "issue"},
    {"api": "stripe", "collection": "customer", "kind": "explode"},
    {"api": "stripe", "collection": "customer", "count": -1},
    {"api": "stripe", "collection": "customer", "ids": "cus_1"},
])
def test_bad_silent_requests_are_refused(client, body):
    answer = client.post("/_admin/silent", json=body)
    assert answer.status_code == 400 and answer.json()["error"]
