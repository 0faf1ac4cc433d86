"""Stripe-Version: objects render in the request's (or the account's) version, events in their own."""
import pytest

from conftest import settle, walk

OLD, BASIL = "2024-06-20", "2025-03-31.basil"
PERIOD = {"current_period_start", "current_period_end"}


def _sub_id(sim):
    return next(iter(sim.truth("stripe")["objects"]["subscription"]))


def test_basil_drops_the_subscription_level_period(stripe, sim):
    oid = _sub_id(sim)
    old = stripe.get(f"/v1/subscriptions/{oid}").json()
    new = stripe.get(f"/v1/subscriptions/{oid}", headers={"Stripe-Version": BASIL}).json()
    assert PERIOD <= set(old) and not PERIOD & set(new)
    assert {k: v for k, v in old.items() if k not in PERIOD} == new
    assert PERIOD <= set(new["items"]["data"][0])  # the period lives on the items
    assert all(PERIOD <= set(s) for s in walk(stripe, "/v1/subscriptions", limit=100, status="all"))
    assert all(not PERIOD & set(s) for s in _walk_in(stripe, BASIL))


def _walk_in(stripe, version):
    seen, after = [], None
    while True:
        params = {"limit": 100, "status": "all", **({"starting_after": after} if after else {})}
        body = stripe.get("/v1/subscriptions", params=params, headers={"Stripe-Version": version}).json()
        seen += body["data"]
        if not body["has_more"]:
            return seen
        after = body["data"][-1]["id"]


def test_other_objects_render_the_same_in_both_versions(stripe):
    for path in ("/v1/customers", "/v1/invoices", "/v1/charges"):
        old = stripe.get(path, params={"limit": 5}).json()
        assert stripe.get(path, params={"limit": 5}, headers={"Stripe-Version": BASIL}).json() == old


@pytest.mark.parametrize("path", ["/v1/customers", "/v1/events", "/v1/subscriptions/sub_x"])
def test_unknown_version_is_400(stripe, path):
    answer = stripe.get(path, headers={"Stripe-Version": "2020-08-27"})
    assert answer.status_code == 400
    assert answer.json() == {"error": {"message": "Invalid Stripe API version: 2020-08-27",
                                       "type": "invalid_request_error"}}


def test_account_upgrade_changes_the_default_and_the_truth(client, stripe, sim):
    oid = _sub_id(sim)
    assert client.post("/_admin/config", json={"stripe_api_version": BASIL}).status_code == 200
    assert not PERIOD & set(stripe.get(f"/v1/subscriptions/{oid}").json())
    assert PERIOD <= set(stripe.get(f"/v1/subscriptions/{oid}", headers={"Stripe-Version": OLD}).json())
    default_truth = client.get("/_admin/truth/stripe").json()["objects"]["subscription"][oid]["data"]
    assert default_truth == stripe.get(f"/v1/subscriptions/{oid}").json()
    old_truth = client.get("/_admin/truth/stripe", params={"api_version": OLD}).json()
    assert PERIOD <= set(old_truth["objects"]["subscription"][oid]["data"])


def test_truth_rejects_unknown_versions(client):
    assert client.get("/_admin/truth/stripe", params={"api_version": "2019-01-01"}).status_code == 400
    assert client.get("/_admin/truth/github", params={"api_version": OLD}).status_code == 400


def test_config_accepts_only_supported_versions(client):
    for bad in ("2019-01-01", None, 20240620):
        assert client.post("/_admin/config", json={"stripe_api_version": bad}).status_code == 400
    assert client.get("/_admin/config").json()["stripe_api_version"] == OLD


def test_events_keep_the_version_they_were_created_in(client, stripe, sim):
    model = sim.models["stripe"]
    before = model.mutate("update", "subscription").id
    client.post("/_admin/config", json={"stripe_api_version": BASIL})
    after = model.mutate("create", "subscription").id
    settle(sim)
    for header in (OLD, BASIL):
        events = stripe.get("/v1/events", params={"limit": 2}, headers={"Stripe-Version": header}).json()["data"]
        newer, older = events
        assert (newer["data"]["object"]["id"], newer["api_version"]) == (after, BASIL)
        assert not PERIOD & set(newer["data"]["object"])
        assert (older["data"]["object"]["id"], older["api_version"]) == (before, OLD)
        assert PERIOD <= set(older["data"]["object"])
        retrieved = stripe.get(f"/v1/events/{older['id']}", headers={"Stripe-Version": header}).json()
        assert retrieved == older


def test_config_has_the_new_keys_and_reset_keeps_working(client):
    config = client.get("/_admin/config").json()
    assert config["stripe_events_lag_s"] == 3.0 and config["stripe_api_version"] == OLD
    assert client.post("/_admin/config", json={"stripe_events_lag_s": None}).status_code == 400
    assert client.post("/_admin/reset", json={"seed": 3, "objects": 10}).status_code == 200
    assert client.get("/_admin/truth/stripe").json()["objects"]["subscription"]
