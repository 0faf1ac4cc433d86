"""The simulator's GitHub repositories as GitHub keeps them: names matched in any case, renames answered
with 301 to the repository id while webhooks carry the new name and the same id, and repositories that
stop answering (404, 403 with SSO, 451) from a chosen request on."""

import orjson
import pytest

DEMO_ID = 7000001


def test_a_name_in_any_case_is_the_same_repository(github):
    exact = github.get("/repos/apisync/demo/issues", params={"state": "all", "per_page": 100}).json()
    shouted = github.get("/repos/APISYNC/Demo/issues", params={"state": "all", "per_page": 100}).json()
    assert shouted == exact and exact
    repo = github.get("/repos/ApiSync/DEMO").json()
    assert (repo["id"], repo["full_name"]) == (DEMO_ID, "apisync/demo")  # GitHub's own case, whatever was asked


def test_a_renamed_repository_redirects_by_id_and_its_webhooks_carry_the_new_name(github, sim):
    assert github.post("/_admin/github/rename", json={"repo": "apisync/demo", "to": "Acme/Demo"}).status_code == 200
    moved = github.get("/repos/APISYNC/demo/issues", params={"per_page": 1}, follow_redirects=False)
    assert moved.status_code == 301 and f"/repositories/{DEMO_ID}/issues?per_page=1" in moved.headers["location"]
    assert github.get("/repos/acme/DEMO").json()["full_name"] == "Acme/Demo"
    model = sim.models["github"]
    for _ in range(20):
        model.mutate("update", "issue")  # queues the webhook GitHub sends for each change
    hooks = [orjson.loads(m.body) for m in model.outbox]
    mine = [h["repository"] for h in hooks if h["repository"]["id"] == DEMO_ID]
    assert mine and all(r["full_name"] == "Acme/Demo" for r in mine)


@pytest.mark.parametrize("status, header", [(404, None), (403, "x-github-sso"), (451, None)])
def test_a_repository_stops_answering_from_the_chosen_request_on(github, status, header):
    switch = {"repo": "apisync/demo", "status": status, "after": 1}
    assert github.post("/_admin/github/access", json=switch).status_code == 200
    assert github.get("/repos/apisync/demo").status_code == 200  # the one request it still answers
    for path in ("/repos/apisync/demo/issues", f"/repositories/{DEMO_ID}/issues/1", "/repos/APISYNC/DEMO"):
        refused = github.get(path)
        assert refused.status_code == status and refused.json()["status"] == str(status)
        assert header is None or header in refused.headers
    assert github.get("/repos/apisync/tools/issues").status_code == 200  # the other repository answers
    github.post("/_admin/github/access", json={"repo": "apisync/demo", "status": None})
    assert github.get("/repos/apisync/demo/issues").status_code == 200


def test_the_access_switch_refuses_what_it_cannot_model(github):
    for body in ({"repo": "apisync/nope", "status": 404}, {"repo": "apisync/demo", "status": 500},
                 {"repo": "apisync/demo", "status": 404, "after": -1}):
        assert github.post("/_admin/github/access", json=body).status_code == 400
