"""classify() as a table, Retry-After parsing, auth secrecy, quota header parsing."""
from __future__ import annotations

import logging
import pickle

import httpx
import pytest

from apisync.http import BearerTokenAuth, Outcome, QuotaSignal, classify, redact
from apisync.http.auth import scrub_logs
from apisync.http.errors import FatalError, RetriableError
from apisync.registry import spec_for

NOW = 1_800_000_000.0
SF_LIMIT = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]


@pytest.mark.parametrize("api, status, headers, body, outcome, wait", [
    ("stripe", 200, {}, None, Outcome.OK, None),
    ("github", 304, {}, None, Outcome.OK, None),
    ("stripe", 500, {}, None, Outcome.RETRY, None),
    ("stripe", 503, {"Retry-After": "4"}, None, Outcome.RETRY, 4.0),
    ("stripe", 408, {}, None, Outcome.RETRY, None),
    ("stripe", 409, {}, {"error": {"code": "lock_timeout", "message": "busy"}}, Outcome.RETRY, None),
    ("stripe", 400, {}, {"error": {"message": "Invalid limit"}}, Outcome.FATAL, None),
    ("stripe", 400, {"Stripe-Should-Retry": "true"}, None, Outcome.RETRY, None),
    ("stripe", 500, {"Stripe-Should-Retry": "false"}, None, Outcome.FATAL, None),
    ("github", 500, {"Stripe-Should-Retry": "false"}, None, Outcome.RETRY, None),  # not GitHub's header
    ("stripe", 401, {}, None, Outcome.FATAL, None),
    ("github", 403, {}, {"message": "Resource not accessible by integration"}, Outcome.FATAL, None),
    ("github", 404, {}, None, Outcome.FATAL, None),
    ("stripe", 429, {}, None, Outcome.RATE_LIMITED, None),
    ("github", 429, {"Retry-After": "2"}, None, Outcome.RATE_LIMITED, 2.0),
    ("github", 403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 30)},
     {"message": "API rate limit exceeded"}, Outcome.RATE_LIMITED, 30.0),
    ("github", 403, {"retry-after": "61"}, {"message": "secondary rate limit"}, Outcome.RATE_LIMITED, 61.0),
    ("github", 403, {}, {"message": "You have exceeded a secondary rate limit"}, Outcome.RATE_LIMITED, 60.0),
    ("salesforce", 403, {}, SF_LIMIT, Outcome.RATE_LIMITED, 300.0),
    ("stripe", 403, {}, SF_LIMIT, Outcome.FATAL, None),  # another API's limit body means nothing here
])
def test_classify_decides_once(api, status, headers, body, outcome, wait):
    response = httpx.Response(status, headers=headers, json=body) if body is not None \
        else httpx.Response(status, headers=headers)
    verdict = classify(response, NOW, spec_for(api).signals)
    assert (verdict.outcome, verdict.wait_s) == (outcome, wait)


def test_classify_reason_is_the_api_message():
    verdict = classify(httpx.Response(403, json=SF_LIMIT), NOW, spec_for("salesforce").signals)
    assert verdict.reason == "Forbidden: REQUEST_LIMIT_EXCEEDED TotalRequests Limit exceeded."


def test_auth_sets_bearer_and_hides_token():
    auth = BearerTokenAuth("ghp_secret")
    request = next(auth.auth_flow(httpx.Request("GET", "https://api.github.com/x")))
    assert request.headers["Authorization"] == "Bearer ghp_secret"
    assert "ghp_secret" not in repr(auth) and "ghp_secret" not in str(auth)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(auth)
    with pytest.raises(ValueError):
        BearerTokenAuth("")


def test_redact_masks_longest_first():
    assert redact("a sk_live_abc and sk_live_abcdef", ["sk_live_abc", "sk_live_abcdef", None]) \
        == "a *** and ***"


def test_scrubber_masks_httpx_log_lines(caplog):
    scrub_logs(["tok_in_url_42"])
    with caplog.at_level(logging.INFO, logger="httpx"):
        logging.getLogger("httpx").info("HTTP Request: GET %s", "https://x/?key=tok_in_url_42")
    assert "tok_in_url_42" not in caplog.text and "key=***" in caplog.text


def test_errors_are_one_line_and_picklable():
    err = RetriableError("github", "GET", "/repos/a/b/issues", 502, "Bad\nGateway  from   upstream",
                         params="page=3")
    assert str(err) == "github GET /repos/a/b/issues (page=3) failed: HTTP 502: Bad Gateway from upstream"
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is RetriableError and str(clone) == str(err)
    assert str(FatalError("stripe", "GET", "/v1/x", None, "boom")).endswith("no response: boom")


@pytest.mark.parametrize("headers, expected", [
    ({"x-ratelimit-remaining": "12", "x-ratelimit-limit": "5000", "x-ratelimit-reset": "1800000100"},
     QuotaSignal(12, 5000, 1800000100.0)),
    ({"Sforce-Limit-Info": "api-usage=25/5000; per-app-api-usage=17/250(appName=x)"},
     QuotaSignal(4975, 5000, None)),
    ({"Sforce-Limit-Info": "api-usage=110018/100000; api-bursts=1/750"}, QuotaSignal(-10018, 100000, None)),
    ({"x-ratelimit-remaining": "12"}, None),
    ({}, None),
])
def test_quota_signal_parsing(headers, expected):
    api = "salesforce" if "Sforce-Limit-Info" in headers else "github"
    assert spec_for(api).signals.quota(httpx.Headers(headers)) == expected
