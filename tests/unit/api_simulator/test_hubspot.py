"""HubSpot CRM v3: list paging and archived objects, search (filters, sorts, the 10,000 cap, the lag),
rate limits, batched v3-signed webhooks, truth."""
import base64
import hashlib
import hmac
import time
from urllib.parse import unquote

import httpx
import orjson
import pytest

from api_simulator.config import default_runtime, merge_config
from api_simulator.timefmt import parse_iso
from api_simulator.webhooks import WebhookDispatcher

OBJECTS = "/crm/v3/objects"


def ms(iso):
    return round(parse_iso(iso) * 1000)


def walk(client, kind, **params):
    """Every object of a list, following paging.next.after; also the number of pages."""
    seen, after, pages = [], None, 0
    while True:
        body = client.get(f"{OBJECTS}/{kind}", params={**params, **({"after": after} if after else {})}).json()
        seen += body["results"]
        pages += 1
        if "paging" not in body:
            return seen, pages
        after = body["paging"]["next"]["after"]
        assert f"after={after}" in body["paging"]["next"]["link"]


def search(client, kind, **body):
    return client.post(f"{OBJECTS}/{kind}/search", json=body)


def since(value, prop="hs_lastmodifieddate", op="GTE"):
    return {"filters": [{"propertyName": prop, "operator": op, "value": str(value)}]}


def test_list_pages_by_after_in_id_order_with_default_properties(hubspot, sim):
    contacts, pages = walk(hubspot, "contacts", limit=7)
    ids = [c["id"] for c in contacts]
    assert ids == sorted(ids, key=int) and len(set(ids)) == 60 and pages == 9
    assert set(contacts[0]["properties"]) == {"createdate", "email", "firstname", "hs_object_id",
                                              "lastmodifieddate", "lastname"}
    assert set(ids) == set(sim.truth("hubspot")["objects"]["contact"])
    deal = hubspot.get(f"{OBJECTS}/deals", params={"limit": 1, "properties": "dealstage,amount"}).json()
    assert set(deal["results"][0]["properties"]) == {"dealstage", "amount"}


@pytest.mark.parametrize("params", [{"limit": 101}, {"limit": 0}, {"after": "abc"}, {"archived": "maybe"}])
def test_bad_list_params_are_400(hubspot, params):
    answer = hubspot.get(f"{OBJECTS}/companies", params=params)
    assert answer.status_code == 400 and answer.json()["category"] == "VALIDATION_ERROR"


def test_archived_objects_list_apart_and_read_404(hubspot, sim):
    gone = sim.models["hubspot"].mutate("delete", "deal")
    live, _ = walk(hubspot, "deals", limit=100)
    archived, _ = walk(hubspot, "deals", limit=100, archived="true")
    assert gone.id not in {d["id"] for d in live}
    assert [(d["id"], d["archived"]) for d in archived] == [(gone.id, True)]
    assert ms(archived[0]["archivedAt"]) == gone.version
    answer = hubspot.get(f"{OBJECTS}/deals/{gone.id}")
    assert answer.status_code == 404
    assert {k: answer.json()[k] for k in ("status", "message", "category")} == {
        "status": "error", "message": "resource not found", "category": "OBJECT_NOT_FOUND"}
    assert hubspot.get(f"{OBJECTS}/deals/{gone.id}", params={"archived": "true"}).json()["archived"] is True
    assert gone.id in sim.truth("hubspot")["deleted"]["deal"]
    sim.clock.advance(2)  # past hubspot_search_lag_s (1 s by default): archived objects are not searchable
    found = search(hubspot, "deals", filterGroups=[{"filters": [
        {"propertyName": "hs_object_id", "operator": "EQ", "value": gone.id}]}]).json()
    assert found["total"] == 0


def test_search_keyset_on_modified_then_id_finds_every_object_once(hubspot, client, sim):
    client.post("/_admin/config", json={"rate_limits": {"hubspot": {"search_per_second": 0}}})
    truth = sim.truth("hubspot")["objects"]["company"]
    expected = sorted(truth, key=lambda i: (truth[i]["version"], int(i)))
    seen, cursor = [], (0, "0")
    while True:  # the keyset walk connectors use: (modified = m AND id > i) OR modified > m
        after_id = {"propertyName": "hs_object_id", "operator": "GT", "value": cursor[1]}
        body = search(hubspot, "companies", limit=13,
                      filterGroups=[{"filters": [since(cursor[0], op="EQ")["filters"][0], after_id]},
                                    since(cursor[0], op="GT")],
                      sorts=[{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"},
                             {"propertyName": "hs_object_id", "direction": "ASCENDING"}]).json()
        seen += [r["id"] for r in body["results"]]
        if not body["results"]:
            break
        last = body["results"][-1]
        cursor = (ms(last["properties"]["hs_lastmodifieddate"]), last["id"])
    assert seen == expected
    ties = len(expected) - len({truth[i]["version"] for i in expected})
    assert ties > 0  # same-millisecond stamps exist, so the id tiebreak matters


def test_search_filters_sorts_and_after(hubspot, sim):
    deals = sim.truth("hubspot")["objects"]["deal"]
    won = sorted((i for i, d in deals.items() if d["data"]["properties"]["dealstage"] in ("closedwon", "closedlost")),
                 key=lambda i: -float(deals[i]["data"]["properties"]["amount"]))
    body = {"filterGroups": [{"filters": [{"propertyName": "dealstage", "operator": "IN",
                                           "values": ["closedwon", "closedlost"]}]}],
            "sorts": [{"propertyName": "amount", "direction": "DESCENDING"}], "properties": ["amount"], "limit": 4}
    first = search(hubspot, "deals", **body).json()
    rest = search(hubspot, "deals", **body, after=first["paging"]["next"]["after"]).json()
    assert first["total"] == len(won) and first["paging"]["next"]["after"] == "4"
    amounts = [float(r["properties"]["amount"]) for r in first["results"] + rest["results"]]
    assert amounts == sorted(amounts, reverse=True) and len(amounts) == min(8, len(won))
    assert set(first["results"][0]["properties"]) == {"amount"}


@pytest.mark.parametrize("body", [
    {"filterGroups": [since(0)] * 6},
    {"filterGroups": [{"filters": since(0)["filters"] * 7}]},
    {"filterGroups": [{"filters": since(0)["filters"] * 6}] * 4},  # 24 filters > 18 in all
    {"limit": 201},
    {"filterGroups": [{"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "NEAR", "value": "1"}]}]},
    {"sorts": [{"propertyName": "createdate", "direction": "SIDEWAYS"}]},
])
def test_search_limits_are_400(hubspot, body):
    answer = search(hubspot, "contacts", **body)
    assert answer.status_code == 400 and answer.json()["category"] == "VALIDATION_ERROR"


def test_search_stops_at_10000_results(hubspot, sim):
    model = sim.models["hubspot"]
    for i in range(10_050):
        model._create("contact", 1_780_000_000_000 + i // 4, delayed=False)
    page = search(hubspot, "contacts", limit=200, after="9800").json()
    assert page["total"] == 10_110 and len(page["results"]) == 200
    assert page["paging"]["next"]["after"] == "10000"  # paging still points on, into the 400
    answer = search(hubspot, "contacts", limit=10, after="10000")
    assert answer.status_code == 400 and answer.json()["category"] == "VALIDATION_ERROR"
    assert search(hubspot, "contacts", limit=10, after="9999").status_code == 200
    keyset = search(hubspot, "contacts", limit=200, filterGroups=[since(1_780_000_002_000)],
                    sorts=[{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}]).json()
    assert keyset["total"] == 2_050 + 60  # its speed is benchmarks/simulator_bench.py's business


def test_search_lags_behind_an_update_then_shows_it(hubspot, client, sim):
    client.post("/_admin/config", json={"hubspot_search_lag_s": 60})
    model = sim.models["hubspot"]
    updated = model.mutate("update", "contact")
    created = model.mutate("create", "contact")

    def found(oid):
        body = search(hubspot, "contacts", filterGroups=[{"filters": [
            {"propertyName": "hs_object_id", "operator": "EQ", "value": oid}]}]).json()
        return body["results"][0]["properties"]["lastmodifieddate"] if body["results"] else None
    read = hubspot.get(f"{OBJECTS}/contacts/{updated.id}").json()["properties"]["lastmodifieddate"]
    assert ms(read) == updated.version  # reads see the change at once
    assert found(updated.id) is not None and ms(found(updated.id)) < updated.version
    assert found(created.id) is None
    sim.clock.advance(61)
    assert ms(found(updated.id)) == updated.version and found(created.id) is not None


def test_rate_limits_answer_429_with_hubspot_headers_and_bodies(hubspot, client):
    client.post("/_admin/config", json={"rate_limits": {"hubspot": {"per_10_seconds": 3, "search_per_second": 0}}})
    answers = [hubspot.get(f"{OBJECTS}/contacts") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[2].headers["x-hubspot-ratelimit-max"] == "3"
    assert answers[2].headers["x-hubspot-ratelimit-remaining"] == "0"
    assert answers[0].headers["x-hubspot-ratelimit-interval-milliseconds"] == "10000"
    body = answers[3].json()
    assert (body["errorType"], body["policyName"]) == ("RATE_LIMIT", "TEN_SECONDLY_ROLLING")
    assert body["message"] == "You have reached your ten_secondly_rolling limit."


def test_search_has_its_own_per_second_limit(hubspot, client):
    client.post("/_admin/config", json={"rate_limits": {"hubspot": {"per_10_seconds": 100, "search_per_second": 2}}})
    answers = [search(hubspot, "deals") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json()["policyName"] == "SECONDLY"
    assert hubspot.get(f"{OBJECTS}/deals").status_code == 200  # lists are not search


@pytest.mark.parametrize("limit, policy", [(None, "TEN_SECONDLY_ROLLING"), ("secondly", "SECONDLY")])
def test_rate_limited_fault_answers_as_hubspot(hubspot, client, limit, policy):
    spec = {"kind": "rate_limited", "api": "hubspot", **({"limit": limit} if limit else {})}
    assert client.post("/_admin/faults", json=spec).status_code == 200
    answer = hubspot.get(f"{OBJECTS}/companies")
    assert answer.status_code == 429 and answer.json()["policyName"] == policy
    assert answer.headers["x-hubspot-ratelimit-remaining"] == "0"
    assert hubspot.get(f"{OBJECTS}/companies").status_code == 200


def test_missing_or_wrong_token_is_401(client):
    for headers in ({}, {"Authorization": "Bearer pat-na1-wrong"}):
        answer = client.get(f"{OBJECTS}/contacts", headers=headers)
        assert answer.status_code == 401 and answer.json()["category"] == "INVALID_AUTHENTICATION"
    assert client.post(f"{OBJECTS}/contacts", headers={"Authorization": "Bearer pat-na1-apisync"}).status_code == 405


def test_server_error_fault_uses_hubspot_shape(hubspot, client):
    client.post("/_admin/faults", json={"kind": "http_500", "api": "hubspot", "status": 502})
    answer = search(hubspot, "contacts")
    assert answer.status_code == 502 and answer.json()["status"] == "error"


def test_truth_follows_mutations(hubspot, client, sim):
    done = client.post("/_admin/mutate", json={"api": "hubspot", "count": 40}).json()["mutations"]
    assert {m["kind"] for m in done} == {"create", "update", "delete"}
    truth = client.get("/_admin/truth/hubspot").json()
    for m in done:
        kind, oid = {"contact": "contacts", "company": "companies", "deal": "deals"}[m["collection"]], m["id"]
        if oid in truth["deleted"][m["collection"]]:
            assert hubspot.get(f"{OBJECTS}/{kind}/{oid}").status_code == 404
            continue
        item = truth["objects"][m["collection"]][oid]
        props = ",".join(item["data"]["properties"])
        assert hubspot.get(f"{OBJECTS}/{kind}/{oid}", params={"properties": props}).json() == item["data"]
        assert item["version"] == ms(item["data"]["properties"]["hs_lastmodifieddate"])
    last = {}
    for m in done:
        last[m["id"]] = m
    assert all(truth["objects"][m["collection"]][i]["version"] == m["version"]
               for i, m in last.items() if m["kind"] != "delete")


def test_deal_updates_move_along_the_pipeline(sim):
    model = sim.models["hubspot"]
    stages = set()
    for _ in range(60):
        model.mutate("update", "deal")
        stages |= {e.data["properties"]["dealstage"] for e in model.live["deal"].entries.values()}
    events = [orjson.loads(m.body) for m in model.drain_outbox()]
    assert {"closedwon", "closedlost"} <= stages
    assert any(e["propertyName"] == "dealstage" for e in events)


def test_silent_update_leaves_no_webhook_and_no_new_version(client, sim):
    before = sim.truth("hubspot")["objects"]["company"]
    done = client.post("/_admin/silent", json={"api": "hubspot", "collection": "company", "count": 3}).json()
    after = sim.truth("hubspot")["objects"]["company"]
    assert len(done["mutations"]) == 3 and sim.models["hubspot"].outbox == []
    for m in done["mutations"]:
        assert after[m["id"]]["version"] == before[m["id"]]["version"]
        assert after[m["id"]]["data"] != before[m["id"]]["data"]


def _dispatcher(handler, secret="client-secret", url="https://hooks.test/hubspot%3Awebhook", retry=0.01):
    runtime = merge_config(default_runtime(), {"webhooks": {"hubspot": {"url": url, "secrets": [secret]}},
                                               "webhook_chaos": {"retry_base_s": retry}})
    return WebhookDispatcher(lambda: runtime, client=httpx.Client(transport=httpx.MockTransport(handler)))


def _wait(predicate, timeout=60.0):
    """Poll until `predicate()` holds; the generous timeout only ends a dispatcher that is stuck."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.02)
    return predicate()


def _verify_v3(request, secret):
    """HubSpot's documented check, written independently: method + decoded URI + body + timestamp."""
    stamp = request.headers["x-hubspot-request-timestamp"]
    if time.time() * 1000 - int(stamp) > 300_000:
        return False
    source = request.method + unquote(str(request.url)) + request.content.decode() + stamp
    digest = hmac.new(secret.encode(), source.encode("utf-8"), hashlib.sha256).digest()
    return hmac.compare_digest(base64.b64encode(digest).decode(), request.headers["x-hubspot-signature-v3"])


def test_webhooks_are_batched_thin_and_v3_signed(sim):
    model = sim.models["hubspot"]
    done = [model.mutate("update", "contact") for _ in range(150)]
    seen = []
    dispatcher = _dispatcher(lambda r: seen.append(r) or httpx.Response(204))
    dispatcher.submit(model.drain_outbox())
    try:
        assert _wait(lambda: len(seen) == 2)
    finally:
        dispatcher.stop()
    batches = [orjson.loads(r.content) for r in seen]
    assert sorted(len(b) for b in batches) == [50, 100]
    events = [e for b in batches for e in b]
    assert sorted(e["occurredAt"] for e in events) == sorted(m.version for m in done)
    assert all(e["subscriptionType"] == "contact.propertyChange" and "properties" not in e
               and e["attemptNumber"] == 0 and {"eventId", "portalId", "objectId", "propertyName"} <= set(e)
               for e in events)
    assert all(_verify_v3(r, "client-secret") for r in seen)
    assert not _verify_v3(seen[0], "another-secret")


def test_a_failed_batch_is_retried_with_its_attempt_number(sim):
    model = sim.models["hubspot"]
    model.mutate("create", "deal")
    model.mutate("delete", "company")
    seen = []
    dispatcher = _dispatcher(lambda r: seen.append(r) or httpx.Response(500 if len(seen) == 1 else 200))
    dispatcher.submit(model.drain_outbox())
    try:
        assert _wait(lambda: len(seen) == 2)
    finally:
        dispatcher.stop()
    first, second = (orjson.loads(r.content) for r in seen)
    assert [e["attemptNumber"] for e in first] == [0, 0] and [e["attemptNumber"] for e in second] == [1, 1]
    assert [e["subscriptionType"] for e in first] == ["deal.creation", "company.deletion"]
    assert [e["changeFlag"] for e in first] == ["NEW", "DELETED"]
    assert all(_verify_v3(r, "client-secret") for r in seen)
