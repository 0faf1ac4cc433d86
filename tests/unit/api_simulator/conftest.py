"""Fixtures: an in-process simulator app (no network) and a test client per API."""
from __future__ import annotations

import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette nudges towards httpx2; httpx is the pinned client here
    from starlette.testclient import TestClient

from api_simulator.app import create_app
from api_simulator.config import SimulatorConfig

EPOCH = 1_790_000_000
AUTH = {"stripe": {"Authorization": "Bearer sk_test_apisync"},
        "github": {"Authorization": "token ghp_apisync"},
        "salesforce": {"Authorization": "Bearer sf_apisync_token"},
        "hubspot": {"Authorization": "Bearer pat-na1-apisync"}}


@pytest.fixture
def app():
    return create_app(SimulatorConfig(seed=7, objects=60, epoch=EPOCH))


@pytest.fixture
def sim(app):
    return app.state.sim


@pytest.fixture
def client(app):
    return TestClient(app, base_url="http://sim.test")


@pytest.fixture
def stripe(client):
    client.headers.update(AUTH["stripe"])
    return client


@pytest.fixture
def github(client):
    client.headers.update(AUTH["github"])
    return client


@pytest.fixture
def salesforce(client):
    client.headers.update(AUTH["salesforce"])
    return client


@pytest.fixture
def hubspot(client):
    client.headers.update(AUTH["hubspot"])
    return client


def walk(client, path, **params):
    """Every item of a Stripe list, following starting_after."""
    seen, after = [], None
    while True:
        query = {**params, **({"starting_after": after} if after else {})}
        body = client.get(path, params=query).json()
        seen += body["data"]
        if not body["has_more"]:
            return seen
        after = body["data"][-1]["id"]


def settle(sim, lag_s=3.0):
    """Move the clock past the longest Stripe event visibility delay (stripe_events_lag_s), so all events list."""
    sim.clock.advance(lag_s + 1)
