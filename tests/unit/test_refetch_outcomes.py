"""The normalizer's re-fetch outcomes: refused → dead letter, transient → re-read (bounded), 401 → stop."""

import dataclasses

import pytest

from apisync.events import Observation
from apisync.fence import SourcePosition
from apisync.http import FatalError, MalformedResponseError, RateLimitedError, RetriableError
from apisync.refetch_outcomes import GuardedRefetch, RefetchPostponed, RefetchRefused

OBS = Observation("stripe", "customer", "cus_1", 1_000, "webhook", "", None, thin=True)
AT = SourcePosition("stripe.webhooks", 0, 7)


def failing(error):
    def refetch(_obs):
        raise error
    return refetch


@pytest.mark.parametrize("status", [400, 403, 451])
def test_a_refusal_of_the_object_is_a_dead_letter_with_the_apis_line(status):
    error = FatalError("stripe", "GET", "/v1/customers/cus_1", status, "Forbidden")
    with pytest.raises(RefetchRefused, match=f"re-fetch refused: stripe GET /v1/customers/cus_1 failed: HTTP {status}"):
        GuardedRefetch(failing(error))(OBS, AT)


def test_a_refused_credential_stops_instead_of_dead_lettering_every_object():
    error = FatalError("stripe", "GET", "/v1/customers/cus_1", 401, "Invalid API Key provided: ****abcd")
    with pytest.raises(FatalError):
        GuardedRefetch(failing(error))(OBS, AT)


@pytest.mark.parametrize("error", [
    RetriableError("stripe", "GET", "/v1/customers/cus_1", 503, "Service Unavailable"),
    RetriableError("stripe", "GET", "/v1/customers/cus_1", None, "ReadTimeout"),
    RateLimitedError("stripe", "GET", "/v1/customers/cus_1", 429, "Too Many Requests"),
    MalformedResponseError("stripe", "GET", "/v1/customers/cus_1", 200, "body is not valid JSON"),
])
def test_a_transient_failure_is_read_again_a_bounded_number_of_times_then_dead_lettered(error):
    guarded = GuardedRefetch(failing(error), max_transient=3)
    for attempt in (1, 2):
        with pytest.raises(RefetchPostponed, match=f"{attempt}/3"):
            guarded(OBS, AT)
    with pytest.raises(RefetchRefused, match="transiently in 3 batch attempts in a row"):
        guarded(OBS, AT)
    assert guarded.pending() == 0


def test_a_success_or_another_message_starts_the_count_again():
    outcomes = iter([RetriableError("stripe", "GET", "/x", 503, "down")] * 2 + [None]
                    + [RetriableError("stripe", "GET", "/x", 503, "down")] * 2)

    def refetch(obs):
        error = next(outcomes)
        if error is not None:
            raise error
        return dataclasses.replace(obs, data={"id": "cus_1"}, thin=False)

    guarded = GuardedRefetch(refetch, max_transient=3)
    for _ in range(2):
        with pytest.raises(RefetchPostponed):
            guarded(OBS, AT)
    assert guarded(OBS, AT).data == {"id": "cus_1"}
    for _ in range(2):  # counted from one again: postponed, not dead-lettered
        with pytest.raises(RefetchPostponed, match=r"\(\d/3\)"):
            guarded(OBS, AT._replace(offset=8) if _ else AT)
    assert guarded.pending() == 2


def test_revoked_partitions_drop_their_counts():
    guarded = GuardedRefetch(failing(RetriableError("stripe", "GET", "/x", 503, "down")))
    for source in (AT, SourcePosition("stripe.webhooks", 1, 3), SourcePosition("stripe.changes", 0, 9)):
        with pytest.raises(RefetchPostponed):
            guarded(OBS, source)
    guarded.forget([("stripe.webhooks", 0), ("stripe.changes", 0)])
    assert guarded.pending() == 1
