"""Every walk of every source, against a fake API (httpx.MockTransport), with a burst at least 3x its dedupe
memory between two polls: no object is skipped and the checkpoint stays bounded, in every walk order —
GitHub PRs newest first, GitHub issues swept in creation order (and resumed after a crash mid-sweep),
Salesforce's ascending keyset with late commits, HubSpot's keyset with a search index that lags."""

from __future__ import annotations

import random
import re
from urllib.parse import parse_qs, urlparse

import httpx
import orjson
import pytest
from test_hubspot_source import FakeCrm, _obj
from test_hubspot_source import _client as hubspot_client

from apisync.apis.github.source import GitHubSource
from apisync.apis.hubspot.source import HubSpotSource
from apisync.apis.salesforce.source import OBJECTS, SalesforceSource
from apisync.events import iso_to_ms, ms_to_iso
from apisync.http import ApiClient, BearerTokenAuth
from apisync.registry import spec_for
from apisync.sources.keyset import MAX_RECENT

DATE = "Sun, 15 Jan 2034 08:00:00 GMT"
NOW = iso_to_ms("2034-01-15T08:00:00Z")
CHECKPOINT_LIMIT = 64_000
SMALL = 10  # a small memory keeps the 3x bursts fast; every test also runs at the real default
BOUNDS = [SMALL, MAX_RECENT]


def _checkpoint_bytes(batches) -> int:
    size = max(len(orjson.dumps(batch.cursor)) for batch in batches)
    assert size <= CHECKPOINT_LIMIT
    return size


def _emitted(batches) -> dict[str, set[int]]:
    seen: dict[str, set[int]] = {}
    for batch in batches:
        for obs in batch.observations:
            seen.setdefault(obs.id, set()).add(obs.version)
    return seen


# ---- GitHub ------------------------------------------------------------------------------------------
class FakeGitHub:
    """One repository's /pulls and /issues: `since`, `sort` (updated | created), `direction`, Link pages."""

    def __init__(self, pulls: list[dict], issues: list[dict]) -> None:
        self.pulls, self.issues = pulls, issues

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path, params = request.url.path, dict(request.url.params)
        if path == "/repos/o/r":
            return self._answer({"id": 1, "full_name": "o/r"})
        rows = self.pulls if path.endswith("/pulls") else self.issues
        if "since" in params:
            rows = [r for r in rows if iso_to_ms(r["updated_at"]) >= iso_to_ms(params["since"])]
        field = "created_at" if params.get("sort") == "created" else "updated_at"
        rows = sorted(rows, key=lambda r: (r[field], r["number"]), reverse=params.get("direction") == "desc")
        size, page = int(params.get("per_page", 30)), int(params.get("page", 1))
        headers = {}
        if page * size < len(rows):
            headers["link"] = f'<{request.url.copy_merge_params({"page": page + 1})}>; rel="next"'
        return self._answer(rows[(page - 1) * size:page * size], headers)

    @staticmethod
    def _answer(body, headers=None) -> httpx.Response:
        return httpx.Response(200, json=body, headers={"Date": DATE, **(headers or {})})


def _github_client(fake) -> ApiClient:
    return ApiClient("github", "https://api.github.test", BearerTokenAuth("t"), transport=httpx.MockTransport(fake),
                     signals=spec_for("github").signals)


def _item(number: int, updated_ms: int, created_ms: int, pull: bool = False) -> dict:
    item = {"number": number, "updated_at": ms_to_iso(updated_ms // 1000 * 1000), "title": f"t{number}",
            "created_at": ms_to_iso(created_ms)}
    return item | ({"state": "open"} if pull else {})


@pytest.mark.parametrize("bound", BOUNDS)
def test_github_prs_newest_first_burst_of_three_times_the_memory_skips_none(bound):
    start = NOW - 3_600_000
    burst = [_item(n, start + 1_000 + n * 7, n) for n in range(1, 3 * bound + 8)]  # all after the cursor
    quiet = [_item(10_000 + n, start - 600_000, n) for n in range(5)]  # unchanged, below the floor
    source = GitHubSource("o/r", page_size=100 if bound == MAX_RECENT else 7, max_recent=bound)
    cursor = {"repos": {"o/r": {"since": ms_to_iso(start), "recent": []}}}
    client = _github_client(FakeGitHub(burst + quiet, []))
    batches = list(source.incremental(client, "pull_request", cursor))
    seen = _emitted(batches)
    size = _checkpoint_bytes(batches)
    print(f"github PRs newest first: burst {len(burst)}, memory {bound}, emitted {len(seen)}, checkpoint {size} B")
    assert {f"1#{pr['number']}" for pr in burst} <= set(seen)
    # the next poll starts at the newest PR and still re-reads nothing it must not skip
    again = list(source.incremental(client, "pull_request", batches[-1].cursor))
    assert iso_to_ms(batches[-1].cursor["repos"]["o/r"]["since"]) == max(iso_to_ms(p["updated_at"]) for p in burst)
    assert _checkpoint_bytes(again)


def _sweep_dataset(bound: int) -> tuple[int, list[dict]]:
    """A page's worth of ties at `tie`, then 3x the memory more issues whose versions spread over 20 minutes,
    in a creation order unrelated to their versions: the sweep meets new and old versions mixed."""
    tie, rng = NOW - 3_600_000, random.Random(5)
    count = 3 * bound + 8
    versions = [tie] * 20 + [tie + 1_000 + rng.randrange(1_200) * 1_000 for _ in range(count)]
    created = rng.sample(range(len(versions)), len(versions))
    return tie, [_item(n + 1, v, created[n] * 1000) for n, v in enumerate(versions)]


@pytest.mark.parametrize("bound", BOUNDS)
def test_github_issues_sweep_in_creation_order_skips_none(bound):
    tie, issues = _sweep_dataset(bound)
    source = GitHubSource("o/r", page_size=20 if bound == MAX_RECENT else 7, max_recent=bound)
    cursor = {"repos": {"o/r": {"since": ms_to_iso(tie + 60_000), "recent": []}}}  # the floor is the tie
    batches = list(source.incremental(_github_client(FakeGitHub([], issues)), "issue", cursor))
    seen = _emitted(batches)
    size = _checkpoint_bytes(batches)
    print(f"github issues swept: burst {len(issues)}, memory {bound}, emitted {len(seen)}, checkpoint {size} B")
    assert {f"1#{i['number']}" for i in issues} <= set(seen)


@pytest.mark.parametrize("bound", BOUNDS)
def test_github_issues_a_crash_mid_sweep_resumes_where_nothing_unread_is_skipped(bound):
    tie, issues = _sweep_dataset(bound)
    source = GitHubSource("o/r", page_size=20 if bound == MAX_RECENT else 7, max_recent=bound)
    client = _github_client(FakeGitHub([], issues))
    cursor = {"repos": {"o/r": {"since": ms_to_iso(tie + 60_000), "recent": []}}}
    walk = source.incremental(client, "issue", cursor)
    before_crash = [next(walk) for _ in range(len(issues) // source.page_size // 2)]  # halfway through the sweep
    walk.close()
    resumed = list(source.incremental(client, "issue", before_crash[-1].cursor))
    seen = _emitted(before_crash + resumed)
    size = _checkpoint_bytes(before_crash + resumed)
    print(f"github sweep crash: resumed at {before_crash[-1].cursor['repos']['o/r']['since']}, checkpoint {size} B")
    assert {f"1#{i['number']}" for i in issues} <= set(seen)


# ---- Salesforce --------------------------------------------------------------------------------------
class FakeSalesforce:
    """Account over SOQL keyset queries, plus `updated/`'s latestDateCovered; `pending` rows are uncommitted."""

    WHERE = re.compile(r"WHERE (?:\(SystemModstamp = (\S+) AND Id > '([^']*)'\) OR SystemModstamp > (\S+)"
                       r"|SystemModstamp >= (\S+)) ORDER BY SystemModstamp, Id LIMIT (\d+)")

    def __init__(self, rows: list[dict], pending: list[dict], open_since: int | None) -> None:
        self.rows, self.pending, self.open_since = rows, pending, open_since

    def commit(self) -> None:
        self.rows, self.pending, self.open_since = self.rows + self.pending, [], None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/updated/"):
            covered = self.open_since or NOW
            return self._answer({"ids": [], "latestDateCovered": ms_to_iso(covered)})
        query = parse_qs(urlparse(str(request.url)).query)["q"][0]
        match = self.WHERE.search(query)
        if match is None:
            return self._answer({"records": [], "done": True, "totalSize": 0})
        stamp, after, _, since, limit = match.groups()
        key = (lambda r: (_ms(r) == iso_to_ms(stamp) and r["Id"] > after) or _ms(r) > iso_to_ms(stamp)) if stamp \
            else (lambda r: _ms(r) >= iso_to_ms(since))
        rows = sorted((r for r in self.rows if key(r)), key=lambda r: (_ms(r), r["Id"]))[:int(limit)]
        return self._answer({"records": rows, "done": True, "totalSize": len(rows)})

    @staticmethod
    def _answer(body) -> httpx.Response:
        return httpx.Response(200, json=body, headers={"Date": DATE})


def _ms(row: dict) -> int:
    return iso_to_ms(row["SystemModstamp"])


def _account(serial: int, stamp_ms: int) -> dict:
    row = {field: None for field in OBJECTS["account"][1]}
    stamp = ms_to_iso(stamp_ms).replace("Z", "+0000")
    return row | {"Id": f"001{serial:012d}AAA", "IsDeleted": False, "Name": f"a{serial}", "SystemModstamp": stamp,
                  "LastModifiedDate": stamp}


@pytest.mark.parametrize("bound", BOUNDS)
def test_salesforce_bulk_update_with_late_commits_skips_none(bound):
    """A data load updates 3x the memory in one second; every fifth row's transaction commits after the poll,
    stamped with its start (the row's id interleaves with the rest)."""
    bulk = NOW - 30_000
    rows = [_account(n, bulk) for n in range(3 * bound + 10)]
    late = rows[::5]
    sf = FakeSalesforce([r for r in rows if r not in late], late, open_since=bulk)
    source = SalesforceSource(page_size=500 if bound == MAX_RECENT else 7, max_recent=bound)
    client = ApiClient("salesforce", "https://sf.test", BearerTokenAuth("t"), transport=httpx.MockTransport(sf),
                       signals=spec_for("salesforce").signals)
    cursor = {"since": ms_to_iso(bulk - 1_000), "last_id": "", "recent": []}
    first = list(source.incremental(client, "account", cursor))
    sf.commit()
    second = list(source.incremental(client, "account", first[-1].cursor))
    size = _checkpoint_bytes(first + second)
    late_seen = set(_emitted(second)) & {r["Id"] for r in late}
    print(f"salesforce bulk: {len(rows)} rows, {len(late)} late, memory {bound}: the second poll emitted "
          f"{len(late_seen)} late rows; checkpoint {size} B")
    assert {r["Id"] for r in rows} <= set(_emitted(first + second))


# ---- HubSpot -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("bound", BOUNDS)
def test_hubspot_millisecond_swept_by_numeric_id_skips_none(bound):
    """A bulk import stamps 3x the memory in one millisecond; the sweep walks ids numerically, across a power
    of ten (9999 before 10000: the string order of ids is not the walk's)."""
    tie = NOW - 60_000
    first = 10 ** len(str(3 * bound)) - 2 * bound
    crm = FakeCrm([_obj(n, tie) for n in range(first, first + 3 * bound + 10)])
    source = HubSpotSource(page_size=200 if bound == MAX_RECENT else 7, lookback_ms=0, max_recent=bound)
    batches = list(source.incremental(hubspot_client(crm), "deal", {"since": ms_to_iso(tie), "recent": []}))
    size = _checkpoint_bytes(batches)
    print(f"hubspot sweep: {len(crm.live)} objects in one ms, memory {bound}, checkpoint {size} B")
    assert {row["id"] for row in crm.live} <= set(_emitted(batches))


@pytest.mark.parametrize("bound", BOUNDS)
def test_hubspot_objects_the_search_index_shows_late_are_not_skipped(bound):
    """3x the memory changed in the lookback window; objects with older stamps reach the index after the poll."""
    start = NOW - 120_000
    changed = [_obj(1_000 + n, start + n * 5) for n in range(3 * bound + 10)]
    lagging = [_obj(900_000 + n, start + n * 50) for n in range(0, 3 * bound + 10, 7)]
    crm = FakeCrm(list(changed))
    source = HubSpotSource(page_size=200 if bound == MAX_RECENT else 7, max_recent=bound)
    first = list(source.incremental(hubspot_client(crm), "deal", {"since": ms_to_iso(start), "recent": []}))
    crm.live += lagging
    second = list(source.incremental(hubspot_client(crm), "deal", first[-1].cursor))
    size = _checkpoint_bytes(first + second)
    print(f"hubspot lag: {len(changed)} changed, {len(lagging)} late in the index, memory {bound}, checkpoint {size} B")
    assert {row["id"] for row in changed + lagging} <= set(_emitted(first + second))
