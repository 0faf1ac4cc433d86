"""Thin webhooks are completed through an injected ApiClient (MockTransport, no network)."""

import httpx
import pytest

from apisync.events import Observation
from apisync.http import ApiClient, BearerTokenAuth, FatalError
from apisync.webhooks.refetch import http_refetcher, object_path


def thin(api, collection, ident, version=1_000):
    return Observation(api, collection, ident, version, "webhook", "", None, thin=True)


def test_paths_per_api():
    assert object_path(thin("stripe", "invoice", "in_1")) == "/v1/invoices/in_1"
    assert object_path(thin("github", "issue_comment", "5")) == "/repos/apisync/demo/issues/comments/5"
    assert object_path(thin("salesforce", "account", "001A")) == "/services/data/v61.0/sobjects/Account/001A"


def test_refetch_fills_data_and_uses_the_objects_own_version():
    seen = []

    def handler(request):
        seen.append((request.url.path, request.headers["authorization"]))
        return httpx.Response(200, json={"Id": "001A", "SystemModstamp": "2026-11-26T14:53:32.000+0000"})

    client = ApiClient("salesforce", "http://sf.test", BearerTokenAuth("tok"), lane="webhook",
                       transport=httpx.MockTransport(handler), sleep=lambda s: None)
    full = http_refetcher(client)(thin("salesforce", "account", "001A"))
    assert seen == [("/services/data/v61.0/sobjects/Account/001A", "Bearer tok")]
    assert (full.thin, full.version, full.data["Id"]) == (False, 1_795_704_812_000, "001A")


def test_refetch_of_a_missing_object_raises_for_the_dead_letter_path():
    client = ApiClient("stripe", "http://stripe.test", BearerTokenAuth("sk"), lane="webhook",
                       transport=httpx.MockTransport(lambda r: httpx.Response(404, json={"error": {}})),
                       sleep=lambda s: None)
    with pytest.raises(FatalError):
        http_refetcher(client)(thin("stripe", "invoice", "in_gone"))
