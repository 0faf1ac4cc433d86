"""Refresh-token rotation against the simulator (rotation on, as Salesforce asks of connected apps) with the
rotated token in the real Redis: workers refresh one at a time with the newest token and nothing is revoked.

Salesforce Help 005316711: each refresh invalidates the token sent; reusing an invalidated one revokes the
live refresh token and every access token of the family.
"""

import threading

import httpx
import pytest
import redis

from apisync.http import ApiClient, auth_for
from apisync.http.refresh_tokens import RedisRefreshTokens, RefreshLockTimeout, family_key
from apisync.settings import OAuthSettings
from devstack.airflow import SIMULATOR_SALESFORCE_APP as APP

pytestmark = pytest.mark.integration
QUERY = "/services/data/v61.0/query"
SOQL = {"q": "SELECT Id FROM Account LIMIT 1"}


@pytest.fixture
def sim(simulator_url):
    """A freshly authorised app (a reset starts a new refresh-token family), and again afterwards."""
    with httpx.Client(base_url=simulator_url, timeout=30) as client:
        client.post("/_admin/reset", json={"seed": 3, "objects": 5}).raise_for_status()
        yield client
        client.post("/_admin/reset", json={"seed": 42, "objects": 100})


@pytest.fixture
def oauth(simulator_url, redis_url):
    settings = OAuthSettings("refresh_token", f"{simulator_url}/services/oauth2/token", APP["client_id"],
                             client_secret=APP["client_secret"], refresh_token=APP["refresh_token"])
    redis.Redis.from_url(redis_url).delete(family_key("salesforce", settings.token_url, settings.client_id,
                                                      settings.refresh_token))
    return settings


def _worker(simulator_url: str, redis_url: str, oauth: OAuthSettings) -> ApiClient:
    """One worker process's client, as `apisync.api_client.account_client` builds it."""
    auth = auth_for("salesforce", "", oauth, base_url=simulator_url, redis_url=redis_url)
    return ApiClient("salesforce", simulator_url, auth, max_retries=0)


def _state(sim) -> dict:
    return sim.get("/_admin/salesforce/oauth").json()


def test_two_workers_refresh_in_turn_with_the_rotated_token(sim, oauth, simulator_url, redis_url):
    first, second = (_worker(simulator_url, redis_url, oauth) for _ in range(2))
    for _ in range(3):
        for worker in (first, second):
            assert worker.get(QUERY, params=SOQL).status_code == 200
        sim.post("/_admin/salesforce/sessions/expire").raise_for_status()  # every session ends: both refresh
    state = _state(sim)
    assert (state["rotations"], state["revocations"], state["live"]) == (6, 0, True)
    stored = redis.Redis.from_url(redis_url).get(family_key("salesforce", oauth.token_url, oauth.client_id,
                                                            oauth.refresh_token))
    assert stored and stored.decode() != oauth.refresh_token


def test_workers_refreshing_at_the_same_moment_revoke_nothing(sim, oauth, simulator_url, redis_url):
    workers = [_worker(simulator_url, redis_url, oauth) for _ in range(4)]
    start, statuses = threading.Barrier(len(workers)), []

    def first_request(client):
        start.wait()  # every worker starts with no access token: all refresh now
        statuses.append(client.get(QUERY, params=SOQL).status_code)

    threads = [threading.Thread(target=first_request, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * len(workers)
    assert (_state(sim)["rotations"], _state(sim)["revocations"]) == (len(workers), 0)


def test_a_stale_writer_cannot_replace_the_newest_token(redis_url):
    client = redis.Redis.from_url(redis_url)
    key = f"apisync:oauth:refresh:test:{threading.get_ident()}"
    client.delete(key)
    store = RedisRefreshTokens(client, key, "seed")
    assert store.replace("seed", "rt-2")
    assert not store.replace("seed", "rt-late")  # a worker whose lock lease ran out mid-refresh
    assert store.current() == "rt-2"
    client.delete(key)


def test_a_second_refresher_waits_for_the_lock(redis_url):
    client = redis.Redis.from_url(redis_url)
    key = f"apisync:oauth:refresh:test-lock:{threading.get_ident()}"
    holder = RedisRefreshTokens(client, key, "seed")
    waiter = RedisRefreshTokens(client, key, "seed", wait_s=0.2)
    with holder.held() as current:
        assert current == "seed"
        with pytest.raises(RefreshLockTimeout), waiter.held():
            pass
    with waiter.held() as current:  # released: the next refresher goes on
        assert current == "seed"
    client.delete(key, f"{key}:lock")
