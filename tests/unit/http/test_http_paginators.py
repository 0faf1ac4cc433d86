"""Paginators over canned pages: order, resumable state, loop detection."""
from __future__ import annotations

import httpx
import pytest

from apisync.http import (
    ApiClient,
    BearerTokenAuth,
    HeaderLinkPaginator,
    MalformedResponseError,
    NextRecordsUrlPaginator,
    PaginationLoopError,
    StartingAfterPaginator,
    iterate_pages,
)

BASE = "https://api.example.test"


def client_for(handler, api="stripe"):
    return ApiClient(api, BASE, BearerTokenAuth("tok"), transport=httpx.MockTransport(handler),
                     max_retries=0, sleep=lambda s: None)


def stripe_pages(ids_per_page, repeat_cursor=False):
    """Serve a Stripe list of pages; with repeat_cursor the second page is served forever."""
    pages = [list(p) for p in ids_per_page]

    def handler(request: httpx.Request) -> httpx.Response:
        after = request.url.params.get("starting_after")
        index = 0 if after is None else next(i + 1 for i, p in enumerate(pages) if p[-1] == after)
        if repeat_cursor:
            index = min(index, 1)
        return httpx.Response(200, json={"object": "list", "url": "/v1/customers",
                                         "data": [{"id": i} for i in pages[index]],
                                         "has_more": index < len(pages) - 1})
    return handler


def test_stripe_walks_all_pages_with_starting_after_and_limit():
    seen: list[httpx.Request] = []
    inner = stripe_pages([["c3", "c2"], ["c1", "c0"], ["b9"]])

    def handler(request):
        seen.append(request)
        return inner(request)

    pages = list(iterate_pages(client_for(handler), StartingAfterPaginator("/v1/customers", limit=2)))
    assert [[r["id"] for r in p.records] for p in pages] == [["c3", "c2"], ["c1", "c0"], ["b9"]]
    assert [r.url.params.get("starting_after") for r in seen] == [None, "c2", "c0"]
    assert {r.url.params["limit"] for r in seen} == {"2"}
    assert [p.state for p in pages] == [
        {"done": False, "cursor": "c2"}, {"done": False, "cursor": "c0"}, {"done": True}]


def test_stripe_resumes_from_a_checkpointed_state():
    handler = stripe_pages([["c3", "c2"], ["c1", "c0"], ["b9"]])
    first = next(iterate_pages(client_for(handler), StartingAfterPaginator("/v1/customers", limit=2)))
    resumed = StartingAfterPaginator("/v1/customers", limit=2, state=first.state)
    rest = [r["id"] for p in iterate_pages(client_for(handler), resumed) for r in p.records]
    assert rest == ["c1", "c0", "b9"]
    finished = StartingAfterPaginator("/v1/customers", state={"done": True})
    assert list(iterate_pages(client_for(handler), finished)) == []


def test_stripe_repeating_cursor_raises_a_clear_error():
    handler = stripe_pages([["c3", "c2"], ["c1", "c0"], ["b9"]], repeat_cursor=True)
    pager = StartingAfterPaginator("/v1/customers", limit=2)
    with pytest.raises(PaginationLoopError, match="same page cursor 'c0' twice") as info:
        list(iterate_pages(client_for(handler), pager))
    assert "/v1/customers" in str(info.value)
    assert pager.state == {"done": False, "cursor": "c0"}  # still resumable from the last good page


def test_stripe_has_more_with_empty_page_is_malformed():
    def handler(request):
        return httpx.Response(200, json={"object": "list", "data": [], "has_more": True})
    with pytest.raises(MalformedResponseError, match="has_more"):
        list(iterate_pages(client_for(handler), StartingAfterPaginator("/v1/customers")))


def github_handler(total_pages, repeat=False):
    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("page", "1"))
        headers = {}
        if page < total_pages:
            nxt = 2 if repeat else page + 1
            url = f"{BASE}/repos/a/b/issues?state=all&per_page=2&page="
            headers["Link"] = f'<{url}{nxt}>; rel="next", <{url}{total_pages}>; rel="last"'
        return httpx.Response(200, json=[{"number": page * 10 + i} for i in range(2)], headers=headers)
    return handler


def test_header_link_follows_rel_next_without_duplicating_params():
    seen = []
    inner = github_handler(3)

    def handler(request):
        seen.append(request)
        return inner(request)

    pager = HeaderLinkPaginator("/repos/a/b/issues", {"state": "all", "per_page": 2})
    pages = list(iterate_pages(client_for(handler, "github"), pager))
    assert [r["number"] for p in pages for r in p.records] == [10, 11, 20, 21, 30, 31]
    assert [str(r.url.params) for r in seen[1:]] == ["state=all&per_page=2&page=2",
                                                     "state=all&per_page=2&page=3"]
    assert pages[0].state == {"done": False,
                              "cursor": f"{BASE}/repos/a/b/issues?state=all&per_page=2&page=2"}
    resumed = HeaderLinkPaginator("/repos/a/b/issues", state=pages[1].state)
    assert [r["number"] for p in iterate_pages(client_for(github_handler(3), "github"), resumed)
            for r in p.records] == [30, 31]


def test_header_link_repeating_next_raises():
    pager = HeaderLinkPaginator("/repos/a/b/issues", {"per_page": 2})
    with pytest.raises(PaginationLoopError, match="page=2"):
        list(iterate_pages(client_for(github_handler(5, repeat=True), "github"), pager))


def salesforce_handler(batches, repeat=False):
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        index = 0 if path.endswith("/query") else int(path.rsplit("-", 1)[1])
        done = index == len(batches) - 1
        body = {"totalSize": sum(map(len, batches)), "done": done,
                "records": [{"Id": i} for i in batches[index]]}
        if not done:
            body["nextRecordsUrl"] = f"/services/data/v61.0/query/01gQL-{1 if repeat else index + 1}"
        return httpx.Response(200, json=body)
    return handler


def test_salesforce_follows_next_records_url_until_done():
    pager = NextRecordsUrlPaginator("/services/data/v61.0/query", {"q": "SELECT Id FROM Account"})
    pages = list(iterate_pages(client_for(salesforce_handler([["a", "b"], ["c"], ["d"]]), "salesforce"),
                               pager))
    assert [r["Id"] for p in pages for r in p.records] == ["a", "b", "c", "d"]
    assert pages[0].state == {"done": False, "cursor": "/services/data/v61.0/query/01gQL-1"}
    assert pages[-1].state == {"done": True}


def test_salesforce_repeating_next_records_url_raises():
    pager = NextRecordsUrlPaginator("/services/data/v61.0/query", {"q": "SELECT Id FROM Account"})
    handler = salesforce_handler([["a"], ["b"], ["c"]], repeat=True)
    with pytest.raises(PaginationLoopError, match="01gQL-1"):
        list(iterate_pages(client_for(handler, "salesforce"), pager))
