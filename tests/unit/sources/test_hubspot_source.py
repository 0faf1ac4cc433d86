"""HubSpotSource's walks against a small fake CRM search (httpx.MockTransport): one sort, no `after` ever,
every object once, a millisecond fuller than a page swept by id, archives as deletes; and HubSpot's signals."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import httpx
import orjson
import pytest

from apisync.apis.hubspot.source import HubSpotSource
from apisync.events import iso_to_ms, ms_to_iso
from apisync.http import ApiClient, BearerTokenAuth
from apisync.http.retry import Outcome, classify
from apisync.registry import spec_for
from apisync.sources.base import Gone

DATE = "Sun, 15 Jan 2034 08:00:00 GMT"
T0 = 2_000_000_000_000
TIE = T0 + 5_000  # a bulk update: 12 objects in one millisecond


def _obj(oid: int, ms: int, archived_ms: int | None = None) -> dict:
    stamp = ms_to_iso(ms)
    props = {"hs_object_id": str(oid), "hs_lastmodifieddate": stamp, "createdate": stamp, "dealname": f"d{oid}"}
    obj = {"id": str(oid), "properties": props, "createdAt": stamp, "updatedAt": stamp,
           "archived": archived_ms is not None}
    if archived_ms is not None:
        obj["archivedAt"] = ms_to_iso(archived_ms)
    return obj


class FakeCrm:
    """Deals: search (filters GT/GTE/EQ, one sort), list (by id, archived or not), read."""

    def __init__(self, live: list[dict], archived: list[dict] = ()) -> None:
        self.live, self.archived, self.bodies = live, list(archived), []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        headers = {"Date": DATE}
        if request.url.path.endswith("/search"):
            return httpx.Response(200, json=self._search(orjson.loads(request.content)), headers=headers)
        if request.url.path == "/crm/v3/objects/deals":
            rows = self.archived if request.url.params.get("archived") == "true" else self.live
            return httpx.Response(200, json={"results": rows}, headers=headers)
        oid = request.url.path.rsplit("/", 1)[1]
        for row in self.live:
            if row["id"] == oid:
                return httpx.Response(200, json=row, headers=headers)
        return httpx.Response(404, json={"status": "error", "message": "resource not found",
                                         "category": "OBJECT_NOT_FOUND"}, headers=headers)

    def _search(self, body: dict) -> dict:
        self.bodies.append(body)
        assert "after" not in body and len(body["sorts"]) == 1
        rows = [r for r in self.live if all(self._match(r, f) for g in body["filterGroups"] for f in g["filters"])]
        prop = body["sorts"][0]["propertyName"]
        rows.sort(key=lambda r: (int(r["id"]) if prop == "hs_object_id" else r["properties"][prop],
                                 -int(r["id"])))  # ties in the order least kind to a walk: by id, descending
        return {"total": len(rows), "results": rows[:body["limit"]]}

    @staticmethod
    def _match(row: dict, f: dict) -> bool:
        raw = row["properties"][f["propertyName"]]
        value = int(raw) if f["propertyName"] == "hs_object_id" else _ms(raw)
        wanted = int(f["value"])
        return {"GT": value > wanted, "GTE": value >= wanted, "EQ": value == wanted}[f["operator"]]


def _ms(iso: str) -> int:
    return iso_to_ms(iso)


def _client(crm: FakeCrm) -> ApiClient:
    return ApiClient("hubspot", "https://api.hubapi.test", BearerTokenAuth("pat-x"), transport=httpx.MockTransport(crm),
                     signals=spec_for("hubspot").signals)


def _dataset() -> list[dict]:
    return [_obj(100 + i, TIE if 5 <= i < 17 else T0 + i * 1000) for i in range(25)]


def test_backfill_walks_ids_with_a_fresh_query_per_page_and_resumes_after_the_last_id():
    crm = FakeCrm(_dataset())
    source = HubSpotSource(page_size=5)
    batches = list(source.backfill(_client(crm), "deal", None, None))
    assert [obs.id for b in batches for obs in b.observations] == [str(100 + i) for i in range(25)]
    assert batches[-1].done and batches[2].cursor == {"last_id": "114"}
    resumed = list(source.backfill(_client(crm), "deal", batches[2].cursor, None))
    assert [obs.id for b in resumed for obs in b.observations] == [str(115 + i) for i in range(10)]


def test_incremental_sweeps_a_millisecond_fuller_than_a_page_and_emits_each_object_once():
    crm = FakeCrm(_dataset())
    source = HubSpotSource(page_size=5, lookback_ms=0)
    cursor = {"since": ms_to_iso(T0), "last_id": "", "recent": []}
    batches = list(source.incremental(_client(crm), "deal", cursor))
    ids = [obs.id for b in batches for obs in b.observations]
    assert sorted(ids) == [str(100 + i) for i in range(25)] and len(ids) == 25
    swept = [b for b in crm.bodies if any(f["operator"] == "EQ" for g in b["filterGroups"] for f in g["filters"])]
    assert swept and all(b["sorts"] == [{"propertyName": "hs_object_id", "direction": "ASCENDING"}] for b in swept)
    assert batches[-1].cursor["since"] == ms_to_iso(T0 + 24_000)
    # a second run from that cursor re-reads only its lookback and emits nothing new
    again = list(source.incremental(_client(crm), "deal", batches[-1].cursor))
    assert [obs for b in again for obs in b.observations] == []


def test_objects_archived_since_the_last_listing_become_deletes_and_the_mark_moves_with_the_last_page():
    crm = FakeCrm(_dataset()[:3], archived=[_obj(90, T0, archived_ms=T0 - 60_000), _obj(91, T0, archived_ms=T0 + 1)])
    source = HubSpotSource(page_size=5, lookback_ms=0)
    batches = list(source.incremental(_client(crm), "deal", {"since": ms_to_iso(T0), "recent": []}))
    deletes = [obs for b in batches for obs in b.observations if obs.deleted]
    assert [(obs.id, obs.version) for obs in deletes] == [("91", T0 + 1)]  # 90 was archived before the window
    assert batches[-1].done and batches[-1].cursor["archived_since"] == "2034-01-15T07:59:59.000Z"


def test_fetch_reads_the_synced_properties_and_an_archived_object_is_gone():
    crm = FakeCrm(_dataset()[:2])
    source = HubSpotSource()
    assert source.fetch(_client(crm), "deal", "100").data == crm.live[0]
    assert isinstance(source.fetch(_client(crm), "deal", "999"), Gone)


def _response(status: int, body: dict, **headers) -> httpx.Response:
    request = httpx.Request("POST", "https://api.hubapi.test/crm/v3/objects/deals/search")
    return httpx.Response(status, json=body, headers={"Date": DATE, **headers}, request=request)


@pytest.mark.parametrize(("policy", "wait"), [("SECONDLY", 1.0), ("TEN_SECONDLY_ROLLING", 10.0)])
def test_a_429_is_a_rate_limit_with_the_policys_wait(policy, wait):
    body = {"status": "error", "message": "You have reached your limit.", "errorType": "RATE_LIMIT",
            "policyName": policy}
    verdict = classify(_response(429, body, **{"X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}), 0.0,
                       spec_for("hubspot").signals)
    assert (verdict.outcome, verdict.wait_s) == (Outcome.RATE_LIMITED, wait)
    assert policy in verdict.reason


def test_an_error_body_message_and_category_make_the_reason():
    verdict = classify(_response(400, {"status": "error", "message": "bad filter", "category": "VALIDATION_ERROR"}),
                       0.0, spec_for("hubspot").signals)
    assert verdict.outcome is Outcome.FATAL and verdict.reason.endswith("VALIDATION_ERROR: bad filter")


def test_the_rate_limit_headers_are_a_quota_signal_for_the_rolling_window():
    signal = spec_for("hubspot").signals.quota(httpx.Headers({
        "X-HubSpot-RateLimit-Max": "100", "X-HubSpot-RateLimit-Remaining": "7",
        "X-HubSpot-RateLimit-Interval-Milliseconds": "10000", "Date": DATE}))
    assert (signal.remaining, signal.limit, signal.reset_at) == (7, 100, parsedate_to_datetime(DATE).timestamp() + 10)
    assert spec_for("hubspot").signals.quota(httpx.Headers({})) is None
