"""Stripe list semantics: newest first, cursors, created filters, errors, events retention, 429."""
import pytest


def walk(client, path, **params):
    seen, after = [], None
    while True:
        query = {**params, **({"starting_after": after} if after else {})}
        body = client.get(path, params=query).json()
        seen += body["data"]
        if not body["has_more"]:
            return seen
        after = body["data"][-1]["id"]


def test_cursor_walk_returns_every_customer_once_newest_first(stripe, sim):
    customers = walk(stripe, "/v1/customers", limit=7)
    ids = [c["id"] for c in customers]
    assert sorted(ids) == sorted(sim.truth("stripe")["objects"]["customer"])
    assert len(set(ids)) == len(ids)
    created = [c["created"] for c in customers]
    assert created == sorted(created, reverse=True)
    assert len(created) != len(set(created)), "seeded data must contain same-second ties"


def test_default_limit_is_ten_and_bounds_are_enforced(stripe):
    assert len(stripe.get("/v1/charges").json()["data"]) == 10
    for bad in ("0", "101", "ten"):
        answer = stripe.get("/v1/charges", params={"limit": bad})
        assert answer.status_code == 400
        assert answer.json()["error"]["param"] == "limit"


def test_ending_before_returns_the_newer_neighbours(stripe):
    first = stripe.get("/v1/invoices", params={"limit": 6}).json()["data"]
    back = stripe.get("/v1/invoices", params={"limit": 3, "ending_before": first[5]["id"]}).json()
    assert [i["id"] for i in back["data"]] == [i["id"] for i in first[2:5]]
    assert back["has_more"] is True


@pytest.mark.parametrize("op", ["gt", "gte", "lt", "lte"])
def test_created_filters(stripe, op):
    everything = walk(stripe, "/v1/customers", limit=100)
    pivot = everything[len(everything) // 2]["created"]
    got = walk(stripe, "/v1/customers", limit=100, **{f"created[{op}]": pivot})
    check = {"gt": lambda c: c > pivot, "gte": lambda c: c >= pivot,
             "lt": lambda c: c < pivot, "lte": lambda c: c <= pivot}[op]
    assert [c["id"] for c in got] == [c["id"] for c in everything if check(c["created"])]


@pytest.mark.parametrize("params, code, param", [
    ({"colour": "red"}, "parameter_unknown", "colour"),
    ({"starting_after": "cus_doesnotexist"}, "resource_missing", "starting_after"),
    ({"created[gt]": "yesterday"}, "parameter_invalid_integer", "created[gt]"),
])
def test_bad_requests_get_stripe_errors(stripe, params, code, param):
    answer = stripe.get("/v1/customers", params=params)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)


def test_both_cursors_at_once_is_refused(stripe):
    answer = stripe.get("/v1/customers", params={"starting_after": "a", "ending_before": "b"})
    assert answer.status_code == 400 and "only specify one" in answer.json()["error"]["message"]


@pytest.mark.parametrize("headers, fragment", [({}, "did not provide"),
                                               ({"Authorization": "Bearer sk_test_wrongkey99"}, "****ey99")])
def test_bad_auth_is_401_and_never_echoes_the_key(client, headers, fragment):
    answer = client.get("/v1/customers", headers=headers)
    assert answer.status_code == 401
    assert fragment in answer.json()["error"]["message"]
    assert "sk_test_wrongkey99" not in answer.text


def test_deleted_customer_retrieves_as_deleted_and_leaves_lists(stripe, sim):
    mutation = sim.models["stripe"].mutate("delete", "customer")
    deleted = {"id": mutation.id, "object": "customer", "deleted": True}
    assert stripe.get(f"/v1/customers/{mutation.id}").json() == deleted
    assert mutation.id not in [c["id"] for c in walk(stripe, "/v1/customers", limit=100)]
    event = stripe.get("/v1/events", params={"type": "customer.deleted"}).json()["data"][0]
    assert event["data"]["object"]["id"] == mutation.id
    assert sim.truth("stripe")["deleted"]["customer"] == [mutation.id]


def test_event_version_matches_truth(stripe, sim):
    mutation = sim.models["stripe"].mutate("update", "invoice")
    truth = sim.truth("stripe")["objects"]["invoice"][mutation.id]
    events = stripe.get("/v1/events", params={"limit": 1}).json()["data"]
    assert events[0]["data"]["object"]["id"] == mutation.id
    assert truth["version"] == events[0]["created"] * 1000 == mutation.version
    assert stripe.get(f"/v1/invoices/{mutation.id}").json() == truth["data"]


def test_events_older_than_retention_disappear(stripe, sim):
    before = walk(stripe, "/v1/events", limit=100)
    assert before and min(e["created"] for e in before) >= sim.clock.now_s() - 30 * 86400
    sim.clock.advance(31 * 86400)
    assert walk(stripe, "/v1/events", limit=100) == []


def test_types_filter_and_wildcard(stripe, sim):
    for _ in range(5):
        sim.models["stripe"].mutate("update", "subscription")
    got = walk(stripe, "/v1/events", limit=100, type="customer.subscription.*")
    assert got and all(e["type"].startswith("customer.subscription.") for e in got)


def test_rate_limit_answers_429(stripe, client):
    client.post("/_admin/config", json={"rate_limits": {"stripe": {"per_second": 3}}})
    statuses = [stripe.get("/v1/customers", params={"limit": 1}).status_code for _ in range(5)]
    assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:]
    limited = stripe.get("/v1/customers")
    assert limited.json()["error"]["code"] == "rate_limit"
