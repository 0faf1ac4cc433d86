"""Thin webhooks and ties are completed through the source's own fetch (MockTransport, no network)."""

import httpx
import pytest

from apisync.apis.salesforce.source import SalesforceSource
from apisync.apis.stripe.source import StripeSource
from apisync.events import Observation
from apisync.http import ApiClient, BearerTokenAuth, FatalError
from apisync.webhooks.refetch import source_refetcher

DATE = "Thu, 26 Nov 2026 14:53:40 GMT"


def thin(api, collection, ident, version=1_000):
    return Observation(api, collection, ident, version, "webhook", "", None, thin=True)


def client_for(api, handler):
    return ApiClient(api, f"http://{api}.test", BearerTokenAuth("tok"), lane="webhook",
                     transport=httpx.MockTransport(handler), sleep=lambda s: None, max_retries=0)


def test_refetch_fills_data_and_uses_the_objects_own_version():
    seen = []

    def handler(request):
        seen.append((request.url.path, request.headers["authorization"]))
        return httpx.Response(200, headers={"date": DATE},
                              json={"Id": "001A", "SystemModstamp": "2026-11-26T14:53:32.000+0000"})

    refetch = source_refetcher(SalesforceSource(), client_for("salesforce", handler))
    full = refetch(thin("salesforce", "account", "001A"))
    assert seen == [("/services/data/v61.0/sobjects/Account/001A", "Bearer tok")]
    assert (full.thin, full.version, full.data["Id"]) == (False, 1_795_704_812_000, "001A")


def test_an_object_the_api_no_longer_has_becomes_a_delete_at_the_observed_version():
    def handler(request):
        return httpx.Response(404, headers={"date": DATE}, json={"error": {"code": "resource_missing"}})

    gone = source_refetcher(StripeSource(), client_for("stripe", handler))(thin("stripe", "invoice", "in_gone", 7_000))
    assert (gone.deleted, gone.data, gone.version, gone.thin) == (True, None, 7_000, False)


def test_a_failure_other_than_not_found_is_raised():
    def handler(request):
        return httpx.Response(401, headers={"date": DATE}, json={"error": {"message": "bad key"}})

    with pytest.raises(FatalError):
        source_refetcher(StripeSource(), client_for("stripe", handler))(thin("stripe", "invoice", "in_1"))
