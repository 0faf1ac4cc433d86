"""GitHub record keys name a repository by its id, whatever path saw the object (listing, re-fetch,
webhook), whatever the case of the configured name and after a rename; a repository that refuses is
skipped, named, and never taken for a deleted one."""

from __future__ import annotations

import httpx
import orjson
import pytest

from apisync.apis.github.keys import RE_KEYED, is_name_keyed, record_id, split_id, unique_repos
from apisync.apis.github.source import GitHubSource
from apisync.apis.github.webhook import parse_github
from apisync.http import ApiClient, BearerTokenAuth
from apisync.registry import spec_for
from apisync.sources.base import Gone, PartsUnavailable, UnavailablePart
from apisync.sync.reconcile import confirm_gone, split_candidates

DATE = "Thu, 26 Nov 2026 14:53:32 GMT"
DEMO, TOOLS = 7000001, 7000002


class FakeGitHub:
    """Two repositories by id: names matched in any case, old names redirected, refusals on demand."""

    def __init__(self) -> None:
        self.names = {DEMO: "apisync/demo", TOOLS: "apisync/tools"}
        self.old_names: dict[str, int] = {}
        self.issues = {DEMO: [_issue(1), _issue(2)], TOOLS: [_issue(1)]}
        self.refused: dict[int, int] = {}  # repository id -> status

    def rename(self, repo_id: int, name: str) -> None:
        self.old_names[self.names[repo_id].lower()] = repo_id
        self.names[repo_id] = name

    def __call__(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.strip("/").split("/")
        if parts[0] == "repos":
            repo_id = self._by_name(f"{parts[1]}/{parts[2]}")
            if repo_id is None and f"{parts[1]}/{parts[2]}".lower() in self.old_names:
                target = self.old_names[f"{parts[1]}/{parts[2]}".lower()]
                rest = "/".join(parts[3:])
                return httpx.Response(301, headers={"Location": f"/repositories/{target}/{rest}".rstrip("/")})
            rest = parts[3:]
        else:
            repo_id, rest = int(parts[1]), parts[2:]
        if repo_id is None or repo_id not in self.names:
            return _answer(404, {"message": "Not Found"})
        if repo_id in self.refused:
            return _answer(self.refused[repo_id], {"message": "Resource protected by organization SAML enforcement."})
        if not rest:
            return _answer(200, {"id": repo_id, "full_name": self.names[repo_id]})
        if rest == ["issues"]:
            return _answer(200, self.issues[repo_id])
        found = [i for i in self.issues[repo_id] if rest == ["issues", str(i["number"])]]
        return _answer(200, found[0]) if found else _answer(404, {"message": "Not Found"})

    def _by_name(self, name: str) -> int | None:
        return next((rid for rid, full in self.names.items() if full.lower() == name.lower()), None)


def _issue(number: int) -> dict:
    return {"number": number, "updated_at": "2026-11-26T14:53:30Z", "title": f"t{number}", "state": "open"}


def _answer(status: int, body) -> httpx.Response:
    return httpx.Response(status, json=body, headers={"Date": DATE})


def _client(fake: FakeGitHub) -> ApiClient:
    return ApiClient("github", "https://api.github.test", BearerTokenAuth("identity-test-token"),
                     transport=httpx.MockTransport(fake), max_retries=0, sleep=lambda _s: None,
                     signals=spec_for("github").signals)


def _delivery(full_name: str, repo_id: int, number: int, action: str = "edited") -> bytes:
    return orjson.dumps({"action": action, "issue": _issue(number), "repository": {"id": repo_id,
                                                                                     "full_name": full_name}})


def _listed_keys(source: GitHubSource, fake: FakeGitHub) -> set[str]:
    batches = list(source.incremental(_client(fake), "issue", None))
    return {obs.key for batch in batches for obs in batch.observations}


# ---- one key per object, on every path --------------------------------------------------------
@pytest.mark.parametrize("configured", ["apisync/demo", "APISYNC/Demo", "apisync/DEMO"])
def test_polls_and_webhooks_key_an_issue_alike_whatever_the_case_of_the_connection(configured):
    fake = FakeGitHub()
    polled = _listed_keys(GitHubSource(configured), fake)
    hooked = parse_github(_delivery("apisync/demo", DEMO, 1), {"X-GitHub-Event": "issues"}, "")
    assert polled == {"github.issue.7000001#1", "github.issue.7000001#2"}
    assert hooked.key in polled


def test_after_a_rename_the_old_connection_and_new_webhooks_keep_the_same_keys():
    fake = FakeGitHub()
    before = _listed_keys(GitHubSource("apisync/demo"), fake)
    fake.rename(DEMO, "apisync/demo-renamed")
    after_old_name = _listed_keys(GitHubSource("apisync/demo"), fake)  # followed through the 301
    after_new_name = _listed_keys(GitHubSource("apisync/demo-renamed"), fake)  # the connection updated
    hooked = parse_github(_delivery("apisync/demo-renamed", DEMO, 2), {"X-GitHub-Event": "issues"}, "")
    deleted = parse_github(_delivery("apisync/demo-renamed", DEMO, 2, "deleted"), {"X-GitHub-Event": "issues"}, "")
    assert before == after_old_name == after_new_name
    assert hooked.key == deleted.key == "github.issue.7000001#2" and deleted.deleted


def test_a_re_fetch_by_key_reaches_the_object_after_a_rename():
    fake = FakeGitHub()
    fake.rename(DEMO, "someone-else/demo")
    fetched = GitHubSource("apisync/demo").fetch(_client(fake), "issue", "7000001#2")
    assert fetched.key == "github.issue.7000001#2" and fetched.data["number"] == 2


def test_a_cursor_saved_under_another_case_of_the_name_is_the_same_repositorys():
    source = GitHubSource(["APISYNC/demo"])
    states = source._states({"repos": {"apisync/demo": {"since": "2026-11-26T14:00:00Z", "recent": []}}})
    assert states == {"APISYNC/demo": {"since": "2026-11-26T14:00:00Z", "recent": []}}


def test_ids_and_configured_names():
    assert record_id(7000001, 12) == "7000001#12" and split_id("7000001#12") == (7000001, 12)
    assert unique_repos(["Apache/Airflow", "apache/airflow", "apache/kafka"]) == ["Apache/Airflow", "apache/kafka"]
    assert is_name_keyed("apisync/demo#12") and not is_name_keyed("7000001#12")
    with pytest.raises(ValueError):
        split_id("apisync/demo#12")


def test_a_key_that_names_its_repository_by_name_is_retired_by_reconcile():
    gone = GitHubSource("apisync/demo").fetch(_client(FakeGitHub()), "issue", "apisync/demo#1")
    assert gone == Gone(RE_KEYED)


# ---- a repository that refuses ----------------------------------------------------------------
@pytest.mark.parametrize("status", [404, 403, 451])
def test_a_refused_repository_is_skipped_the_others_are_walked_then_the_walk_says_which(status):
    fake = FakeGitHub()
    fake.refused[DEMO] = status
    walk = GitHubSource(["apisync/demo", "apisync/tools"]).backfill(_client(fake), "issue", None, None)
    batches = []
    with pytest.raises(PartsUnavailable) as refused:
        for batch in walk:
            batches.append(batch)
    assert {obs.id for b in batches for obs in b.observations} == {"7000002#1"}
    assert not batches[-1].done  # the refused repository's backfill is not finished
    assert "done" not in batches[-1].cursor["repos"]["apisync/demo"]
    assert batches[-1].cursor["repos"]["apisync/tools"]["done"]
    assert len(refused.value.lines) == 1 and "apisync/demo" in refused.value.lines[0]
    assert f"HTTP {status}" in refused.value.lines[0]


def test_a_listing_that_misses_a_repository_protects_that_repositorys_ids():
    fake = FakeGitHub()
    fake.refused[TOOLS] = 404
    listed, walk = [], GitHubSource(["apisync/demo", "apisync/tools"]).list_ids(_client(fake), "issue")
    with pytest.raises(PartsUnavailable) as refused:
        listed.extend(walk)
    assert listed == ["7000001#1", "7000001#2"]
    keep = refused.value.may_hold
    assert keep("7000002#5") and not keep("7000001#9") and keep("apisync/tools#5")
    assert split_candidates(["7000001#9", "7000002#5"], refused.value) == (["7000001#9"], ["7000002#5"])


def test_an_object_of_a_refused_repository_is_unavailable_not_gone():
    fake = FakeGitHub()
    source = GitHubSource(["apisync/demo", "apisync/tools"])
    assert isinstance(source.fetch(_client(fake), "issue", "7000001#9"), Gone)  # the repository answers
    fake.refused[DEMO] = 404
    with pytest.raises(UnavailablePart, match="7000001"):
        source.fetch(_client(fake), "issue", "7000001#1")
    refused: list[str] = []
    confirmed = confirm_gone(source, _client(fake), "issue", ["7000001#1", "7000001#2", "7000002#7"], refused)
    assert confirmed.keys() == {"7000002#7"} and len(refused) == 1 and "HTTP 404" in refused[0]
