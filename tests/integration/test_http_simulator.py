"""ApiClient, paginators and the Redis limiter against the running API simulator (no mocks)."""
from __future__ import annotations

import uuid

import httpx
import pytest
import redis

from apisync.http import (
    ApiClient,
    BearerTokenAuth,
    HeaderLinkPaginator,
    MalformedResponseError,
    NextRecordsUrlPaginator,
    PaginationLoopError,
    RateLimitedError,
    RateLimitSpec,
    RedisRateLimiter,
    StartingAfterPaginator,
    iterate_pages,
)
from apisync.registry import spec_for

pytestmark = pytest.mark.integration

DEFAULT_LIMITS = {"stripe": {"per_second": 25}, "github": {"per_hour": 5000, "secondary_per_minute": 900},
                  "salesforce": {"per_day": 100000}}
AUTH = {"stripe": BearerTokenAuth("sk_test_apisync"), "github": BearerTokenAuth("ghp_apisync"),
        "salesforce": BearerTokenAuth("sf_apisync_token")}


@pytest.fixture
def admin(simulator_url):
    with httpx.Client(base_url=simulator_url, timeout=10) as client:
        client.post("/_admin/reset", json={"seed": 7, "objects": 60}).raise_for_status()
        yield client
        client.delete("/_admin/faults")
        client.post("/_admin/config", json={"rate_limits": DEFAULT_LIMITS})


@pytest.fixture
def rconn(redis_url):
    conn = redis.Redis.from_url(redis_url)
    yield conn
    conn.close()


def api_client(simulator_url, api, *, sleeps=None, limiter=None, **kwargs):
    sleep = sleeps.append if sleeps is not None else (lambda s: None)
    return ApiClient(api, simulator_url, AUTH[api], timeout=5.0, sleep=sleep, rate_limiter=limiter,
                     signals=spec_for(api).signals, **{"max_retries": 3, **kwargs})


def truth_ids(admin, api, *collections):
    objects = admin.get(f"/_admin/truth/{api}").json()["objects"]
    return {i for c in collections for i in objects.get(c, {})}


def add_fault(admin, **fault):
    admin.post("/_admin/faults", json=fault).raise_for_status()


def test_stripe_cursor_pages_cover_exactly_the_live_customers(simulator_url, admin):
    with api_client(simulator_url, "stripe") as client:
        pages = list(iterate_pages(client, StartingAfterPaginator("/v1/customers", limit=25)))
    ids = [c["id"] for p in pages for c in p.records]
    assert len(ids) == len(set(ids)) and set(ids) == truth_ids(admin, "stripe", "customer")
    assert len(pages) >= 3 and pages[-1].state == {"done": True}


def test_github_link_pages_cover_issues_and_pull_requests(simulator_url, admin):
    pager = HeaderLinkPaginator("/repos/apisync/demo/issues", {"state": "all", "per_page": 30})
    with api_client(simulator_url, "github") as client:
        numbers = [f"7000001#{i['number']}" for p in iterate_pages(client, pager) for i in p.records]
    assert len(numbers) == len(set(numbers))
    # truth ids are <repository id>#number (apisync/demo is 7000001); the simulator also serves apisync/tools
    assert set(numbers) == {i for i in truth_ids(admin, "github", "issue", "pull_request")
                            if i.startswith("7000001#")}


def test_salesforce_query_and_limit_header_reach_the_shared_limiter(simulator_url, admin, rconn):
    limiter = RedisRateLimiter(rconn, "salesforce", f"acct-{uuid.uuid4().hex[:6]}", RateLimitSpec(rate=50))
    admin.post("/_admin/config", json={"rate_limits": {"salesforce": {"per_day": 20}}}).raise_for_status()
    soql = "SELECT Id, SystemModstamp FROM Account ORDER BY SystemModstamp, Id"
    pager = NextRecordsUrlPaginator("/services/data/v61.0/query", {"q": soql})
    with api_client(simulator_url, "salesforce", limiter=limiter) as client:
        for _ in range(17):  # spend the daily allowance down to 15%, under the 20% headroom
            client.get_json("/services/data/v61.0/query", params={"q": "SELECT Id FROM Account LIMIT 1"})
        ids = [r["Id"] for p in iterate_pages(client, pager) for r in p.records]
    assert set(ids) == truth_ids(admin, "salesforce", "account")
    state = rconn.hgetall(f"{limiter.prefix}:state")
    assert 0 < float(state[b"cap_rate"]) < 50  # the budget slowed itself before Salesforce said stop


def test_5xx_burst_is_retried_with_backoff(simulator_url, admin):
    add_fault(admin, kind="http_500", api="stripe", path_prefix="/v1/charges", count=2)
    sleeps: list[float] = []
    with api_client(simulator_url, "stripe", sleeps=sleeps) as client:
        result = client.get_json("/v1/charges", params={"limit": 3})
    assert len(result.data["data"]) == 3 and len(sleeps) == 2
    assert admin.get("/_admin/stats").json()["requests"]["stripe"]["500"] == 2


@pytest.mark.parametrize("kind", ["truncated", "malformed_json", "reset"])
def test_one_bad_body_or_dropped_connection_recovers(simulator_url, admin, kind):
    add_fault(admin, kind=kind, api="github", path_prefix="/repos/apisync/demo/issues", count=1)
    with api_client(simulator_url, "github") as client:
        result = client.get_json("/repos/apisync/demo/issues", params={"per_page": 5})
    assert len(result.data) == 5


def test_persistent_malformed_json_gives_one_line_error_naming_endpoint_and_cursor(simulator_url, admin):
    add_fault(admin, kind="malformed_json", api="stripe", path_prefix="/v1/customers", count=None)
    with api_client(simulator_url, "stripe", max_retries=2) as client, \
            pytest.raises(MalformedResponseError) as info:
        client.get_json("/v1/customers", params={"limit": 5, "starting_after": "cus_x"})
    text = str(info.value)
    assert "stripe GET /v1/customers" in text and "starting_after=cus_x" in text and "\n" not in text
    assert "sk_test_apisync" not in text


def test_repeating_cursor_from_the_api_raises(simulator_url, admin):
    pager = StartingAfterPaginator("/v1/customers", limit=10)
    with api_client(simulator_url, "stripe") as client:
        pages = iterate_pages(client, pager)
        next(pages)
        add_fault(admin, kind="repeat_cursor", api="stripe", path_prefix="/v1/customers", count=1)
        with pytest.raises(PaginationLoopError, match="twice in a row"):
            next(pages)


def test_stripe_429s_pause_the_shared_budget_and_every_request_succeeds(simulator_url, admin, rconn):
    # 2 per second: the client's burst of 5 meets a 429 unless three requests in a row each took a third
    # of a second, which even a loaded machine does not come near (5 per second needed them under 0.17 s).
    admin.post("/_admin/config", json={"rate_limits": {"stripe": {"per_second": 2}}}).raise_for_status()
    limiter = RedisRateLimiter(rconn, "stripe", f"acct-{uuid.uuid4().hex[:6]}",
                               RateLimitSpec(rate=50, burst=5))
    with api_client(simulator_url, "stripe", limiter=limiter, max_retries=6) as client:
        results = [client.get_json("/v1/customers", params={"limit": 1}) for _ in range(12)]
    assert all(len(r.data["data"]) == 1 for r in results)
    stats = admin.get("/_admin/stats").json()["requests"]["stripe"]
    assert stats.get("429", 0) >= 1 and stats["200"] == 12
    assert rconn.hget(f"{limiter.prefix}:state", "pause_until") is not None


def test_github_exhausted_quota_pauses_until_reset_and_gives_up_if_too_long(simulator_url, admin, rconn):
    admin.post("/_admin/config", json={"rate_limits": {"github": {"per_hour": 3}}}).raise_for_status()
    limiter = RedisRateLimiter(rconn, "github", f"acct-{uuid.uuid4().hex[:6]}", RateLimitSpec(rate=50))
    with api_client(simulator_url, "github", limiter=limiter, max_wait_s=5.0) as client:
        for _ in range(3):
            client.get("/repos/apisync/demo/issues", params={"per_page": 1})
        with pytest.raises(RateLimitedError, match="/repos/apisync/demo/issues") as info:
            client.get("/repos/apisync/demo/issues", params={"per_page": 1})
    # Either the API refused, or the shared limiter (already paused by x-ratelimit-remaining: 0)
    # refused to wait that long: in both cases no request is wasted on a known-exhausted quota.
    assert info.value.status in (None, 403, 429)
    seconds, micros = rconn.time()
    pause_until = int(rconn.hget(f"{limiter.prefix}:state", "pause_until")) / 1e6
    assert pause_until - (seconds + micros / 1e6) > 5.0  # every worker now waits for the reset
