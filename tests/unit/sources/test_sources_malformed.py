"""Sources turn objects that break the API's contract into one-line MalformedResponseErrors."""

from __future__ import annotations

import httpx
import pytest

from apisync.apis.github.source import GitHubSource
from apisync.apis.salesforce.source import SalesforceSource
from apisync.apis.stripe.source import StripeSource
from apisync.http import ApiClient, MalformedResponseError

DATE = {"Date": "Thu, 26 Nov 2026 14:53:32 GMT"}


def client_answering(body) -> ApiClient:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/repos/a/b":  # the GitHub source looks its repository up before listing
            return httpx.Response(200, json={"id": 1, "full_name": "a/b"}, headers=DATE)
        return httpx.Response(200, json=body, headers=DATE)

    transport = httpx.MockTransport(answer)
    return ApiClient("test", "http://api.test", None, transport=transport, max_retries=0, sleep=lambda s: None)


CASES = [
    (StripeSource(), "customer", {"object": "list", "has_more": False, "data": [{"object": "customer"}]}, "'id'"),
    (GitHubSource("a/b"), "issue", [{"number": 1, "title": "no updated_at"}], "'updated_at'"),
    (SalesforceSource(), "account", {"done": True, "totalSize": 1, "records": [{"Name": "x"}]}, "'SystemModstamp'"),
    (StripeSource(), "customer", {"object": "list", "has_more": False}, "no data array"),
]


@pytest.mark.parametrize(("source", "collection", "body", "reason"), CASES,
                         ids=["stripe-no-id", "github-no-updated_at", "salesforce-no-stamp", "stripe-no-data"])
def test_malformed_objects_are_one_line_errors(source, collection, body, reason):
    with pytest.raises(MalformedResponseError) as raised:
        list(source.backfill(client_answering(body), collection, None, None))
    message = str(raised.value)
    assert reason in message and "\n" not in message
    assert source.api in message


def test_a_well_formed_stripe_page_yields_observations_versioned_by_server_time():
    body = {"object": "list", "has_more": False, "data": [{"id": "cus_1", "object": "customer", "created": 1}]}
    [batch] = list(StripeSource().backfill(client_answering(body), "customer", None, None))
    [obs] = batch.observations
    assert obs.key == "stripe.customer.cus_1" and obs.source == "backfill" and batch.done
    assert obs.version == 1795704812000 - 1  # the response's Date, minus 1 ms
