"""GitHub semantics: Link pages, PRs inside /issues, since/sort/direction/state, ETag 304, limits."""
import re

import pytest

BASE = "/repos/apisync/demo"


def walk(client, path, **params):
    items, url = [], path
    answer = client.get(url, params=params)
    while True:
        items += answer.json()
        match = re.search(r'<([^>]+)>; rel="next"', answer.headers.get("link", ""))
        if not match:
            return items
        answer = client.get(match.group(1))


def test_issue_pages_include_pull_requests_exactly_once(github, sim):
    items = walk(github, f"{BASE}/issues", state="all", per_page=25)
    truth = sim.truth("github")["objects"]
    numbers = [f"7000001#{i['number']}" for i in items]  # truth ids: <repository id>#number (apisync/demo)
    mine = [k for k in list(truth["issue"]) + list(truth["pull_request"]) if k.startswith("7000001#")]
    assert sorted(numbers) == sorted(mine)
    prs = {f"7000001#{i['number']}" for i in items if "pull_request" in i}
    assert prs == {k for k in truth["pull_request"] if k.startswith("7000001#")}


def test_default_per_page_is_30_and_is_clamped_to_100(github, sim):
    sim.models["github"].seed(60)  # more than 100 issues and PRs in apisync/demo
    assert len(github.get(f"{BASE}/issues", params={"state": "all"}).json()) == 30
    assert len(github.get(f"{BASE}/issues", params={"state": "all", "per_page": 500}).json()) == 100


def test_default_state_is_open(github):
    states = {i["state"] for i in walk(github, f"{BASE}/issues", per_page=100)}
    assert states == {"open"}


def test_since_and_sort_updated_ascending(github, sim):
    everything = walk(github, f"{BASE}/issues", state="all", sort="updated", direction="asc", per_page=100)
    stamps = [i["updated_at"] for i in everything]
    assert stamps == sorted(stamps)
    since = stamps[len(stamps) // 2]
    got = walk(github, f"{BASE}/issues", state="all", sort="updated", direction="asc", since=since, per_page=10)
    assert [i["number"] for i in got] == [i["number"] for i in everything if i["updated_at"] >= since]


def test_comments_default_to_ascending_id(github, sim):
    ids = [c["id"] for c in walk(github, f"{BASE}/issues/comments", per_page=50)]
    mine = [c for c, e in sim.truth("github")["objects"]["issue_comment"].items()
            if "/repos/apisync/demo/issues/" in e["data"]["issue_url"]]
    assert ids == sorted(ids) and len(ids) == len(mine) > 20


def test_etag_gives_304_that_does_not_count(github):
    first = github.get(f"{BASE}/issues")
    used = int(first.headers["x-ratelimit-used"])
    again = github.get(f"{BASE}/issues", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    later = github.get(f"{BASE}/pulls")
    assert int(later.headers["x-ratelimit-used"]) == used + 1


def test_deleted_issue_is_404_and_in_truth(github, sim):
    mutation = sim.models["github"].mutate("delete", "issue")
    answer = github.get(f"{BASE}/issues/{mutation.id}")
    assert answer.status_code == 404 and answer.json()["message"] == "Not Found"
    assert mutation.id in sim.truth("github")["deleted"]["issue"]


def test_comment_bumps_its_issue_updated_at(github, sim):
    sim.clock.advance(5)
    mutation = sim.models["github"].mutate("create", "issue_comment")
    # the comment's own repository (it lands on a random issue of either)
    api_url = sim.models["github"].comments.entries[mutation.id].data["url"]
    comment = github.get(api_url.replace("https://api.github.com", "")).json()
    issue = github.get(comment["issue_url"].replace("https://api.github.com", "")).json()
    assert issue["updated_at"] == comment["created_at"]


@pytest.mark.parametrize("params", [{"state": "weird"}, {"since": "last tuesday"}, {"direction": "up"}])
def test_invalid_values_are_422(github, params):
    answer = github.get(f"{BASE}/issues", params=params)
    assert answer.status_code == 422 and answer.json()["message"] == "Validation Failed"


def test_bad_token_is_401(client):
    answer = client.get(f"{BASE}/issues", headers={"Authorization": "token nope"})
    assert answer.status_code == 401 and answer.json()["message"] == "Bad credentials"


def test_primary_limit_is_403_with_reset(github, client):
    client.post("/_admin/config", json={"rate_limits": {"github": {"per_hour": 2}}})
    github.get(f"{BASE}/issues")
    ok = github.get(f"{BASE}/issues")
    assert ok.headers["x-ratelimit-remaining"] == "0"
    over = github.get(f"{BASE}/issues")
    assert over.status_code == 403 and "rate limit" in over.json()["message"]
    assert over.headers["x-ratelimit-remaining"] == "0" and int(over.headers["x-ratelimit-reset"]) > 0


def test_secondary_limit_is_429_with_retry_after(github, client):
    client.post("/_admin/config", json={"rate_limits": {"github": {"secondary_per_minute": 2}}})
    github.get(f"{BASE}/issues")
    github.get(f"{BASE}/issues")
    over = github.get(f"{BASE}/issues")
    assert over.status_code == 429 and 1 <= int(over.headers["retry-after"]) <= 61
