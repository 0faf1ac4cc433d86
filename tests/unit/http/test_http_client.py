"""ApiClient against httpx.MockTransport: retries, waits, fatal errors, secrets, malformed bodies."""
from __future__ import annotations

import logging

import httpx
import pytest

from apisync.http import (
    ApiClient,
    Backoff,
    BearerTokenAuth,
    FatalError,
    MalformedResponseError,
    QuotaSignal,
    RateLimitedError,
    RetriableError,
)
from apisync.registry import spec_for

TOKEN = "sk_test_SUPERSECRET_123"
NOW = 1_800_000_000.0


class Script:
    """A canned sequence of responses; records every request it saw."""

    def __init__(self, *responses):
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        item = self.responses.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


class RecordingLimiter:
    """Stands in for the Redis limiter: records lanes, pauses and quota signals."""

    def __init__(self):
        self.lanes, self.pauses, self.signals = [], [], []

    def acquire(self, lane="incremental", timeout=None):
        self.lanes.append(lane)
        return 0.0

    def pause(self, seconds, reason=""):
        self.pauses.append(seconds)
        return seconds

    def observe(self, signal):
        self.signals.append(signal)


def make_client(script, *, api="stripe", auth=None, limiter=None, max_retries=3, lane="incremental", sleeps=None):
    sleeps = sleeps if sleeps is not None else []
    return ApiClient(
        api, "https://api.example.test", auth or BearerTokenAuth(TOKEN),
        transport=httpx.MockTransport(script), max_retries=max_retries, rate_limiter=limiter,
        lane=lane, sleep=sleeps.append, clock=lambda: NOW, backoff=Backoff(base_s=0.5, cap_s=8.0),
        rng=lambda: 0.5, signals=spec_for(api).signals,
    )


def test_500_500_200_succeeds_after_two_retries_with_full_jitter_sleeps():
    script = Script(httpx.Response(500), httpx.Response(502), httpx.Response(200, json={"ok": 1}))
    sleeps: list[float] = []
    result = make_client(script, sleeps=sleeps).get_json("/v1/customers", params={"limit": 3})
    assert result.data == {"ok": 1}
    # rng=0.5: attempt 0 -> 0.5*min(8, 0.5*1), attempt 1 -> 0.5*min(8, 0.5*2)
    assert sleeps == [0.25, 0.5]
    assert [r.url.params["limit"] for r in script.requests] == ["3", "3", "3"]
    assert script.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_backoff_is_capped():
    assert Backoff(base_s=1.0, cap_s=4.0).delay(10, rng=lambda: 1.0) == 4.0


@pytest.mark.parametrize("retry_after, expected", [
    ("7", 7.0),
    ("Sun, 15 Jan 2027 08:00:12 GMT", 12.0),
])
def test_retry_after_seconds_or_http_date_is_honored(retry_after, expected):
    date = "Sun, 15 Jan 2027 08:00:00 GMT"
    script = Script(httpx.Response(503, headers={"Retry-After": retry_after, "Date": date}),
                    httpx.Response(200, json={}))
    sleeps: list[float] = []
    make_client(script, sleeps=sleeps).get("/v1/charges")
    assert sleeps == [expected]


def test_429_pauses_the_shared_limiter_instead_of_sleeping_locally():
    limiter = RecordingLimiter()
    sleeps: list[float] = []
    script = Script(httpx.Response(429, headers={"Retry-After": "3"}), httpx.Response(200, json={}))
    make_client(script, limiter=limiter, sleeps=sleeps, lane="backfill").get("/v1/events")
    assert limiter.pauses == [3.0]
    assert sleeps == []  # the limiter's acquire waits out the pause for every worker
    assert limiter.lanes == ["backfill", "backfill"]


def test_github_primary_limit_403_waits_until_reset_from_server_date():
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-limit": "5000",
               "x-ratelimit-reset": str(int(NOW) + 42), "Date": _http_date(NOW - 0)}
    script = Script(httpx.Response(403, headers=headers, json={"message": "API rate limit exceeded"}),
                    httpx.Response(200, json=[]))
    sleeps: list[float] = []
    limiter = RecordingLimiter()
    make_client(script, api="github", sleeps=sleeps, limiter=limiter).get("/repos/a/b/issues")
    assert limiter.pauses == [42.0]
    assert limiter.signals[0] == QuotaSignal(remaining=0, limit=5000, reset_at=NOW + 42)


def test_github_secondary_limit_without_headers_waits_at_least_a_minute():
    body = {"message": "You have exceeded a secondary rate limit. Please wait a few minutes."}
    script = Script(httpx.Response(403, json=body), httpx.Response(200, json=[]))
    sleeps: list[float] = []
    make_client(script, api="github", sleeps=sleeps, auth=BearerTokenAuth("ghp_x")).get("/repos/a/b/issues")
    assert sleeps == [60.0]


def test_wait_longer_than_max_raises_rate_limited_error_at_once():
    script = Script(httpx.Response(429, headers={"Retry-After": "3600"}))
    client = make_client(script)
    with pytest.raises(RateLimitedError) as info:
        client.get("/v1/customers")
    assert "3600s" in str(info.value) and "/v1/customers" in str(info.value)


def test_401_is_fatal_on_first_try_and_never_shows_the_token(caplog):
    body = {"error": {"type": "invalid_request_error",
                      "message": f"Invalid API Key provided: {TOKEN}"}}
    script = Script(httpx.Response(401, json=body))
    client = make_client(script)
    with caplog.at_level(logging.DEBUG), pytest.raises(FatalError) as info:
        client.get("/v1/customers", params={"limit": 10, "api_key": TOKEN})
    text = str(info.value)
    assert len(script.requests) == 1
    assert TOKEN not in text and TOKEN not in caplog.text and TOKEN not in repr(client._http.auth)
    assert "stripe GET /v1/customers" in text and "HTTP 401" in text and "Invalid API Key" in text
    assert "\n" not in text


def test_404_is_fatal():
    script = Script(httpx.Response(404, json={"message": "Not Found"}))
    with pytest.raises(FatalError, match="HTTP 404"):
        make_client(script, api="github").get("/repos/a/b/issues/9")
    assert len(script.requests) == 1


def test_stripe_should_retry_false_overrides_a_5xx():
    script = Script(httpx.Response(500, headers={"Stripe-Should-Retry": "false"}))
    with pytest.raises(FatalError):
        make_client(script).get("/v1/customers")


def test_304_is_success_without_a_body():
    script = Script(httpx.Response(304, headers={"ETag": '"abc"'}))
    result = make_client(script, api="github").get_json("/repos/a/b/issues", headers={"If-None-Match": '"abc"'})
    assert result.data is None and result.response.status_code == 304
    assert script.requests[0].headers["if-none-match"] == '"abc"'


def test_connection_errors_retry_then_raise_retriable(caplog):
    script = Script(*(httpx.ConnectError("connection refused") for _ in range(3)))
    sleeps: list[float] = []
    with caplog.at_level(logging.WARNING, logger="apisync.http"), pytest.raises(RetriableError) as info:
        make_client(script, sleeps=sleeps, max_retries=2).get("/v1/charges")
    assert "ConnectError: connection refused" in str(info.value)
    assert len(sleeps) == 2
    assert [r.message.count("\n") for r in caplog.records] == [0, 0]
    assert "retry 1/2" in caplog.records[0].message


def test_truncated_json_retries_then_names_endpoint_and_cursor():
    script = Script(*(httpx.Response(200, content=b'{"object": "list", "data": [{"id": "cus_1"')
                      for _ in range(4)))
    with pytest.raises(MalformedResponseError) as info:
        make_client(script).get_json("/v1/customers", params={"starting_after": "cus_9", "limit": 100})
    text = str(info.value)
    assert "stripe GET /v1/customers" in text and "starting_after=cus_9" in text
    assert "not valid JSON" in text and "\n" not in text
    assert isinstance(info.value, RetriableError)


def test_truncated_json_then_good_body_recovers():
    script = Script(httpx.Response(200, content=b'{"data": ['), httpx.Response(200, json={"data": []}))
    assert make_client(script).get_json("/v1/customers").data == {"data": []}


def test_quota_headers_are_fed_to_the_limiter():
    limiter = RecordingLimiter()
    script = Script(httpx.Response(200, json={"records": []},
                                   headers={"Sforce-Limit-Info": "api-usage=18/5000"}))
    make_client(script, api="salesforce", limiter=limiter).get("/services/data/v61.0/query")
    assert limiter.signals == [QuotaSignal(remaining=4982, limit=5000, reset_at=None)]


def _http_date(epoch: float) -> str:
    from email.utils import formatdate
    return formatdate(epoch, usegmt=True)


def test_a_limiter_wait_longer_than_max_wait_becomes_rate_limited_error_without_a_request():
    from apisync.http.ratelimit import RateLimitTimeout

    class ExhaustedLimiter(RecordingLimiter):
        def acquire(self, lane="incremental", timeout=None):
            self.lanes.append((lane, timeout))
            raise RateLimitTimeout("github/acme rate limiter: incremental request not granted within 900s")

    script = Script()
    limiter = ExhaustedLimiter()
    with pytest.raises(RateLimitedError) as info:
        make_client(script, api="github", limiter=limiter).get("/repos/a/b/issues", params={"since": "2026-01-01"})
    assert script.requests == []
    assert limiter.lanes == [("incremental", 900.0)]
    assert str(info.value) == ("github GET /repos/a/b/issues (since=2026-01-01) failed: no response: "
                               "shared rate limit: github/acme rate limiter: incremental request "
                               "not granted within 900s")


def test_429_on_every_try_ends_in_rate_limited_error_and_pauses_each_time():
    limiter = RecordingLimiter()
    script = Script(*(httpx.Response(429, headers={"Retry-After": "2"},
                                     json={"error": {"code": "rate_limit", "message": "Too many requests"}})
                      for _ in range(3)))
    with pytest.raises(RateLimitedError) as info:
        make_client(script, limiter=limiter, max_retries=2).get("/v1/customers")
    assert limiter.pauses == [2.0, 2.0, 2.0]  # the last 429 still stops the other workers
    assert str(info.value) == ("stripe GET /v1/customers failed: HTTP 429: "
                               "Too Many Requests: rate_limit Too many requests")


def test_a_read_only_post_query_sends_json_and_is_retried_like_a_get():
    script = Script(httpx.Response(500), httpx.Response(200, json={"results": []}))
    result = make_client(script).post_json("/crm/v3/objects/contacts/search", {"limit": 2, "sorts": ["id"]})
    assert result.data == {"results": []}
    assert [r.method for r in script.requests] == ["POST", "POST"]
    assert all(r.headers["content-type"] == "application/json" for r in script.requests)
    assert [r.content for r in script.requests] == [b'{"limit":2,"sorts":["id"]}'] * 2


def test_clients_of_one_process_share_one_verifying_tls_context(monkeypatch):
    import ssl

    from apisync.http.client import tls_context

    made = []
    real = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context", lambda *a, **k: made.append(1) or real(*a, **k))
    tls_context.cache_clear()
    clients = [ApiClient("stripe", "https://api.example.test", BearerTokenAuth(TOKEN)) for _ in range(3)]
    for client in clients:
        client.close()
    assert len(made) == 1  # the CA bundle is loaded once, not once per client (~30 ms each)
    assert tls_context().verify_mode == ssl.CERT_REQUIRED and tls_context().check_hostname
