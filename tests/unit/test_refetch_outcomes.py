"""The normalizer's re-fetch outcomes: refused → dead letter, transient → deferred (bounded), 401 → stop."""

import pytest

from apisync.events import Observation
from apisync.http import FatalError, MalformedResponseError, RateLimitedError, RetriableError
from apisync.refetch_outcomes import (
    DEFERRALS_HEADER,
    GIVE_UP_S,
    NOT_BEFORE_HEADER,
    DeferPolicy,
    Deferral,
    GuardedRefetch,
    RefetchDeferred,
    RefetchRefused,
    merged,
    with_deferral,
)
from apisync.sources.base import UnavailablePart

OBS = Observation("stripe", "customer", "cus_1", 1_000, "webhook", "", None, thin=True)
NOW = 1_700_000_000.0


def failing(error):
    def refetch(_obs):
        raise error
    return refetch


@pytest.mark.parametrize("status", [400, 403, 451])
def test_a_refusal_of_the_object_is_a_dead_letter_with_the_apis_line(status):
    error = FatalError("stripe", "GET", "/v1/customers/cus_1", status, "Forbidden")
    outcome = GuardedRefetch(failing(error))(OBS)
    assert isinstance(outcome, RefetchRefused)
    assert str(outcome).startswith(f"re-fetch refused: stripe GET /v1/customers/cus_1 failed: HTTP {status}")


def test_a_refused_credential_stops_instead_of_dead_lettering_every_object():
    error = FatalError("stripe", "GET", "/v1/customers/cus_1", 401, "Invalid API Key provided: ****abcd")
    with pytest.raises(FatalError):
        GuardedRefetch(failing(error))(OBS)


@pytest.mark.parametrize("error", [
    RetriableError("stripe", "GET", "/v1/customers/cus_1", 503, "Service Unavailable"),
    RetriableError("stripe", "GET", "/v1/customers/cus_1", None, "ReadTimeout"),
    RateLimitedError("stripe", "GET", "/v1/customers/cus_1", 429, "Too Many Requests"),
    MalformedResponseError("stripe", "GET", "/v1/customers/cus_1", 200, "body is not valid JSON"),
    UnavailablePart.of("repository octo/hello", FatalError("github", "GET", "/repositories/1", 403, "SSO")),
])
def test_a_transient_failure_or_an_unavailable_part_is_deferred_not_raised(error):
    outcome = GuardedRefetch(failing(error))(OBS)
    assert isinstance(outcome, RefetchDeferred) and str(error) in str(outcome)


def test_the_first_deferral_records_when_and_why_and_is_due_after_the_first_delay():
    policy = DeferPolicy(first_delay_s=10, max_delay_s=600)
    deferral = policy.after(None, "re-fetch failed transiently: HTTP 503", NOW)
    assert deferral == Deferral(1, NOW, "re-fetch failed transiently: HTTP 503", NOW + 10)


def test_deferrals_double_their_delay_up_to_the_cap_and_keep_the_first_failure():
    policy, previous = DeferPolicy(first_delay_s=10, max_delay_s=600), None
    delays = []
    for step in range(10):
        now = NOW + step * 1_000
        previous = policy.after(previous, f"failure {step}", now)
        delays.append(previous.not_before - now)
    assert delays == [10, 20, 40, 80, 160, 320, 600, 600, 600, 600]
    assert previous.count == 10 and previous.first_failed_at == NOW and previous.first_reason == "failure 0"


@pytest.mark.parametrize(("policy", "previous", "now", "given_up"), [
    (DeferPolicy(), Deferral(3, NOW, "HTTP 503", NOW), NOW + GIVE_UP_S - 1, False),
    (DeferPolicy(), Deferral(3, NOW, "HTTP 503", NOW), NOW + GIVE_UP_S, True),
    (DeferPolicy(give_up_s=60), Deferral(3, NOW, "HTTP 503", NOW), NOW + 61, True),
    (DeferPolicy(max_deferrals=5), Deferral(4, NOW, "HTTP 503", NOW), NOW + 1, False),
    (DeferPolicy(max_deferrals=5), Deferral(5, NOW, "HTTP 503", NOW), NOW + 1, True),
])
def test_deferring_gives_up_past_the_time_or_count_with_the_first_reason(policy, previous, now, given_up):
    outcome = policy.after(previous, "a later reason", now)
    if given_up:
        assert isinstance(outcome, RefetchRefused)
        assert str(outcome) == f"gave up after {previous.count} deferrals: HTTP 503"
    else:
        assert isinstance(outcome, Deferral) and outcome.count == previous.count + 1


def test_the_give_up_time_comes_from_the_environment():
    assert DeferPolicy.from_env({}).give_up_s == GIVE_UP_S == 24 * 3600
    assert DeferPolicy.from_env({"APISYNC_REFETCH_GIVE_UP_S": "90"}).give_up_s == 90


def test_a_deferral_travels_in_headers_next_to_the_messages_own():
    deferral = Deferral(2, NOW, "re-fetch failed transiently: HTTP 503", NOW + 20)
    headers = with_deferral([("X-GitHub-Event", b"issues"), (DEFERRALS_HEADER, b"1")], deferral)
    assert ("X-GitHub-Event", b"issues") in headers and [k for k, _v in headers].count(DEFERRALS_HEADER) == 1
    assert Deferral.of(headers) == deferral
    assert Deferral.of([("X-GitHub-Event", b"issues")]) is None and Deferral.of(None) is None


def test_mangled_deferral_headers_start_over_instead_of_losing_the_message():
    assert Deferral.of([(DEFERRALS_HEADER, b"two"), (NOT_BEFORE_HEADER, b"soon")]) is None


def test_messages_deferred_together_keep_the_oldest_failure_and_the_most_deferrals():
    a, b = Deferral(2, NOW + 50, "later", NOW + 70), Deferral(5, NOW, "first", NOW + 60)
    assert merged([None, a, b]) == Deferral(5, NOW, "first", NOW + 70)
    assert merged([None, None]) is None
