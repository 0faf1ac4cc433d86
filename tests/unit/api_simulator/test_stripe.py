"""Stripe list semantics: newest first, cursors, created filters, errors, events retention, 429."""
import pytest

from conftest import settle, walk


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
    settle(sim)
    event = stripe.get("/v1/events", params={"type": "customer.deleted"}).json()["data"][0]
    assert event["data"]["object"]["id"] == mutation.id
    assert sim.truth("stripe")["deleted"]["customer"] == [mutation.id]


def test_event_version_matches_truth(stripe, sim):
    mutation = sim.models["stripe"].mutate("update", "invoice")
    truth = sim.truth("stripe")["objects"]["invoice"][mutation.id]
    settle(sim)
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
    settle(sim)
    got = walk(stripe, "/v1/events", limit=100, type="customer.subscription.*")
    assert got and all(e["type"].startswith("customer.subscription.") for e in got)


def test_rate_limit_answers_429(stripe, client):
    client.post("/_admin/config", json={"rate_limits": {"stripe": {"per_second": 3}}})
    statuses = [stripe.get("/v1/customers", params={"limit": 1}).status_code for _ in range(5)]
    assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:]
    limited = stripe.get("/v1/customers")
    assert limited.json()["error"]["code"] == "rate_limit"


# ---- cursors that name no live object (stripe-php#1264, stripe-node#2368) ----------------------------
def _error(answer):
    assert answer.status_code == 400, answer.text
    return answer.json()["error"]


@pytest.mark.parametrize("cursor_param", ["starting_after", "ending_before"])
@pytest.mark.parametrize("collection, path", [("customer", "/v1/customers"), ("invoice", "/v1/invoices")])
def test_cursor_naming_a_deleted_object_is_resource_missing(stripe, sim, cursor_param, collection, path):
    mutation = sim.models["stripe"].mutate("delete", collection)
    error = _error(stripe.get(path, params={cursor_param: mutation.id}))
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "resource_missing", cursor_param)
    assert error["message"] == f"No such {collection}: '{mutation.id}'"


@pytest.mark.parametrize("path", ["/v1/charges", "/v1/subscriptions", "/v1/events"])
def test_cursor_from_another_list_is_resource_missing(stripe, sim, path):
    customer = next(iter(sim.truth("stripe")["objects"]["customer"]))
    assert _error(stripe.get(path, params={"starting_after": customer}))["code"] == "resource_missing"


def test_canceled_subscription_is_a_cursor_only_where_it_is_listed(stripe, sim):
    page = stripe.get("/v1/subscriptions", params={"limit": 3}).json()["data"]
    sim.models["stripe"].delete_now("subscription", page[-1]["id"])  # canceled mid-walk
    error = _error(stripe.get("/v1/subscriptions", params={"limit": 3, "starting_after": page[-1]["id"]}))
    assert error["code"] == "resource_missing" and error["param"] == "starting_after"
    for status in ("all", "canceled"):
        answer = stripe.get("/v1/subscriptions", params={"starting_after": page[-1]["id"], "status": status})
        assert answer.status_code == 200


# ---- events retention and late visibility -------------------------------------------------------------
def test_cursor_naming_an_aged_out_event_is_400(stripe, sim):
    oldest = walk(stripe, "/v1/events", limit=100)[-1]["id"]
    sim.clock.advance(31 * 86400)
    for cursor_param in ("starting_after", "ending_before"):
        error = _error(stripe.get("/v1/events", params={cursor_param: oldest}))
        assert error["type"] == "invalid_request_error" and error["param"] == cursor_param
        assert error["message"] == (f"Event {oldest} is no longer available because it's aged out of our "
                                    "retention policy.")
    retrieved = stripe.get(f"/v1/events/{oldest}")
    assert retrieved.status_code == 404 and retrieved.json()["error"]["code"] == "resource_missing"


def test_seeded_events_are_visible_at_once(stripe, sim):
    listed = {e["id"] for e in walk(stripe, "/v1/events", limit=100)}
    assert listed and listed == set(sim.models["stripe"].events.entries)


def test_new_events_become_visible_late_and_out_of_order(client, stripe, sim):
    client.post("/_admin/config", json={"stripe_events_lag_s": 10})
    model = sim.models["stripe"]
    model.drain_outbox()
    for _ in range(30):
        model.mutate("update", "customer")
    created = [m.delivery_id for m in model.drain_outbox()]  # webhooks go out at once, oldest first
    assert len(created) == 30

    def listed():
        # customer.*: some customer updates go through a sub-resource (customer.discount.*, customer.tax_id.*)
        return [e["id"] for e in walk(stripe, "/v1/events", limit=100, type="customer.*")]
    assert not set(created) & set(listed()), "no delay was drawn as 0 here: nothing shows at once"
    sim.clock.advance(5)
    shown = set(listed())
    visible = [n for n, oid in enumerate(created) if oid in shown]
    hidden = [n for n, oid in enumerate(created) if oid not in shown]
    assert min(hidden) < max(visible), "an older event must be missing while a newer one shows"
    late = created[min(hidden)]
    assert stripe.get(f"/v1/events/{late}").json()["error"]["code"] == "resource_missing"
    assert _error(stripe.get("/v1/events", params={"ending_before": late}))["code"] == "resource_missing"
    sim.clock.advance(5)
    assert stripe.get(f"/v1/events/{late}").status_code == 200
    assert listed()[:30] == created[::-1]


# ---- types[] limit ------------------------------------------------------------------------------------
def test_types_accepts_at_most_twenty(stripe):
    types = [f"customer.kind_{n}" for n in range(21)]
    assert stripe.get("/v1/events", params={"types[]": types[:20]}).status_code == 200
    error = _error(stripe.get("/v1/events", params={"types[]": types}))
    assert error["type"] == "invalid_request_error" and error["param"] == "types"
    indexed = {f"types[{n}]": t for n, t in enumerate(types)}
    assert _error(stripe.get("/v1/events", params=indexed))["param"] == "types"


def test_indexed_types_filter_like_types_brackets(stripe):
    got = stripe.get("/v1/events", params={"types[0]": "charge.succeeded", "types[1]": "charge.failed"}).json()
    assert got["data"] and {e["type"] for e in got["data"]} <= {"charge.succeeded", "charge.failed"}
