"""Admin API: truth, mutate, determinism, config validation, handler-level faults, clock."""
import threading
import time

import pytest

from api_simulator.app import create_app
from api_simulator.config import SimulatorConfig
from conftest import AUTH, EPOCH


def test_truth_versions_match_the_data_each_api_returns(client, sim):
    client.post("/_admin/mutate", json={"count": 30})
    github = client.get("/_admin/truth/github").json()
    for key, item in github["objects"]["issue"].items():
        repo_id, _, number = key.rpartition("#")  # ids are <repository id>#number (numbers are per repository)
        assert item["data"]["number"] == int(number) and "pull_request" not in item["data"]
        repo = client.get(f"/repositories/{repo_id}", headers=AUTH["github"]).json()["full_name"]
        assert item["data"]["repository_url"].endswith(f"/repos/{repo}")
    for item in github["objects"]["pull_request"].values():
        assert "head" in item["data"]
    salesforce = client.get("/_admin/truth/salesforce").json()
    for item in salesforce["objects"]["account"].values():
        assert len(item["data"]["Id"]) == 18
        stamp = client.get("/_admin/truth/salesforce").json()["objects"]["account"][item["data"]["Id"]]["version"]
        assert stamp == item["version"]
    from api_simulator.timefmt import github_time
    for item in github["objects"]["issue_comment"].values():
        assert github_time(item["version"] // 1000) == item["data"]["updated_at"]


def test_mutate_reports_what_changed(client, sim):
    answer = client.post("/_admin/mutate", json={"api": "salesforce", "count": 4, "kinds": ["create"]}).json()
    assert len(answer["mutations"]) == 4
    sim.clock.advance(5)  # Salesforce's open transactions (a tenth of mutations, 3 s by default) commit
    truth = client.get("/_admin/truth/salesforce").json()["objects"]
    for m in answer["mutations"]:
        assert m["kind"] == "create" and truth[m["collection"]][m["id"]]["version"] == m["version"]


@pytest.mark.parametrize("body", [{"api": "myspace"}, {"kinds": ["explode"]}, {"count": -1},
                                  {"api": "stripe", "collection": "issue"}])
def test_mutate_rejects_bad_requests(client, body):
    answer = client.post("/_admin/mutate", json=body)
    assert answer.status_code == 400 and answer.json()["error"]


def test_same_seed_same_dataset():
    def fingerprint():
        sim = create_app(SimulatorConfig(seed=11, objects=20, epoch=EPOCH)).state.sim
        return {api: sim.truth(api) for api in ("stripe", "github", "salesforce")}
    first, second = fingerprint(), fingerprint()
    assert first == second
    other = create_app(SimulatorConfig(seed=12, objects=20, epoch=EPOCH)).state.sim
    assert other.truth("stripe")["objects"]["customer"].keys() != first["stripe"]["objects"]["customer"].keys()


@pytest.mark.parametrize("patch", [{"nope": 1}, {"rate_limits": {"stripe": {"per_second": "fast"}}},
                                   {"webhook_chaos": {"shuffle": "yes"}}])
def test_config_rejects_unknown_keys_and_bad_types(client, patch):
    assert client.post("/_admin/config", json=patch).status_code == 400


def test_config_merges(client):
    client.post("/_admin/config", json={"webhooks": {"stripe": {"url": "http://x/hook", "secrets": ["whsec_1"]}}})
    effective = client.get("/_admin/config").json()
    assert effective["webhooks"]["stripe"] == {"url": "http://x/hook", "secrets": ["whsec_1"]}
    assert effective["rate_limits"]["github"]["per_hour"] == 5000


def test_repeat_cursor_fault_serves_the_cursor_again(client):
    client.headers.update(AUTH["stripe"])
    first = client.get("/v1/customers", params={"limit": 5}).json()["data"]
    client.post("/_admin/faults", json={"kind": "repeat_cursor", "api": "stripe"})
    again = client.get("/v1/customers", params={"limit": 5, "starting_after": first[-1]["id"]}).json()
    assert again["data"][-1]["id"] == first[-1]["id"] and again["has_more"] is True
    normal = client.get("/v1/customers", params={"limit": 5, "starting_after": first[-1]["id"]}).json()
    assert first[-1]["id"] not in [c["id"] for c in normal["data"]]


def test_delete_between_list_and_fetch(client, sim):
    client.headers.update(AUTH["github"])
    number = client.get("/repos/apisync/demo/issues", params={"per_page": 100}).json()
    target = next(i for i in number if "pull_request" not in i and i["comments"] == 0)
    client.post("/_admin/faults", json={"kind": "delete_between_list_and_fetch", "api": "github"})
    answer = client.get(f"/repos/apisync/demo/issues/{target['number']}")
    assert answer.status_code == 404
    assert f"7000001#{target['number']}" in sim.truth("github")["deleted"]["issue"]  # apisync/demo's id


@pytest.mark.parametrize("kind, status", [("http_500", 500), ("malformed_json", 200)])
def test_transport_faults_are_scoped_and_counted(client, kind, status):
    client.headers.update(AUTH["stripe"])
    client.post("/_admin/faults", json={"kind": kind, "api": "stripe", "path_prefix": "/v1/charges", "count": 2})
    assert client.get("/v1/customers").status_code == 200  # other path: untouched
    answers = [client.get("/v1/charges") for _ in range(3)]
    assert [a.status_code for a in answers[:2]] == [status, status]
    assert answers[2].status_code == 200 and answers[2].json()["object"] == "list"
    if kind == "malformed_json":
        with pytest.raises(ValueError):
            answers[0].json()


def test_a_hold_keeps_requests_until_cleared_or_its_delay(client, sim):
    client.headers.update(AUTH["stripe"])
    client.post("/_admin/faults", json={"kind": "hold", "api": "stripe", "count": None, "delay_s": 0.3})
    started = time.monotonic()
    assert client.get("/v1/customers").status_code == 200  # served after the hold, not failed
    assert time.monotonic() - started >= 0.3
    client.delete("/_admin/faults")
    client.post("/_admin/faults", json={"kind": "hold", "api": "stripe", "count": None, "delay_s": 60})
    answers = []
    held = threading.Thread(target=lambda: answers.append(client.get("/v1/customers")))
    started = time.monotonic()
    held.start()
    held.join(timeout=0.5)
    assert held.is_alive() and not answers  # still held
    client.delete("/_admin/faults")
    held.join(timeout=30)
    assert [a.status_code for a in answers] == [200] and time.monotonic() - started < 30  # released by the clear


@pytest.mark.parametrize("api, path, limit, status, header", [
    ("stripe", "/v1/customers", None, 429, "stripe-should-retry"),  # Stripe: no Retry-After
    ("github", "/repos/apisync/demo/issues", "secondary", 429, "retry-after"),
    ("github", "/repos/apisync/demo/issues", "primary", 403, "x-ratelimit-reset"),
    ("salesforce", "/services/data/v61.0/query?q=SELECT+Id+FROM+Account", None, 403, "sforce-limit-info"),
])
def test_rate_limited_fault_answers_as_the_apis_own_limit(client, sim, api, path, limit, status, header):
    client.headers.update(AUTH[api])
    spec = {"kind": "rate_limited", "api": api, "count": 1, "retry_after_s": 7, **({"limit": limit} if limit else {})}
    assert client.post("/_admin/faults", json=spec).status_code == 200
    answer = client.get(path)
    assert answer.status_code == status and header in answer.headers
    assert ("retry-after" in answer.headers) == (limit == "secondary")
    if limit == "secondary":
        assert answer.headers["retry-after"] == "7"
    if limit == "primary":
        assert answer.headers["x-ratelimit-remaining"] == "0"
        assert int(answer.headers["x-ratelimit-reset"]) == int(sim.clock.now()) + 7
    assert client.get(path).status_code == 200  # count 1: the next request passes


@pytest.mark.parametrize("spec", [{"kind": "rate_limited"}, {"kind": "rate_limited", "api": "stripe", "limit": "daily"},
                                  {"kind": "rate_limited", "api": "github", "retry_after_s": 0},
                                  {"kind": "http_500", "status": 429}])
def test_bad_rate_limited_specs_are_400(client, spec):
    assert client.post("/_admin/faults", json=spec).status_code == 400


def test_reset_fault_drops_the_request(client):
    client.headers.update(AUTH["salesforce"])
    client.post("/_admin/faults", json={"kind": "reset"})
    with pytest.raises(ConnectionResetError):
        client.get("/services/data/v61.0/query", params={"q": "SELECT Id FROM Account"})


def test_unknown_fault_kind_is_400(client):
    assert client.post("/_admin/faults", json={"kind": "meteor"}).status_code == 400


def test_clock_advance_moves_date_header(client):
    before = client.get("/_admin/clock").json()["now"]
    after = client.post("/_admin/clock", json={"advance_s": 86400}).json()["now"]
    assert after - before >= 86400
    assert client.post("/_admin/clock", json={"advance_s": -5}).status_code == 400


def test_stats_count_per_api_and_status(client):
    client.get("/v1/customers")
    client.get("/v1/customers", headers=AUTH["stripe"])
    assert client.get("/_admin/stats").json()["requests"]["stripe"] == {"401": 1, "200": 1}
