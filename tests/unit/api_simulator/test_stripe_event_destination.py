"""The simulated Stripe sends thin events when its event destination asks for them
(https://docs.stripe.com/event-destinations)."""

import orjson

from api_simulator.webhooks import signed_headers
from apisync.webhooks.dispatch import parse_webhook, scheme_for
from conftest import settle

SECRET = "whsec_thin"


def _updated_customer(sim):
    mutation = sim.models["stripe"].mutate("update", "customer")
    message, = sim.models["stripe"].drain_outbox()
    return mutation, message


def test_snapshot_events_are_the_default(stripe, sim):
    assert stripe.get("/_admin/stripe/event_destination").json() == {"event_payload": "snapshot"}
    _mutation, message = _updated_customer(sim)
    assert orjson.loads(message.body)["object"] == "event"


def test_a_thin_event_names_the_object_and_carries_no_snapshot(stripe, sim):
    assert stripe.post("/_admin/stripe/event_destination", json={"event_payload": "thin"}).status_code == 200
    mutation, message = _updated_customer(sim)
    event = orjson.loads(message.body)
    assert set(event) == {"id", "object", "type", "created", "livemode", "context", "reason", "related_object"}
    assert (event["object"], event["type"]) == ("v2.core.event", "v1.customer.updated")
    assert event["created"].endswith("Z") and "T" in event["created"]
    assert event["related_object"] == {"id": mutation.id, "type": "customer", "url": f"/v1/customers/{mutation.id}"}
    fetched = stripe.get(event["related_object"]["url"]).json()
    assert fetched == sim.truth("stripe")["objects"]["customer"][mutation.id]["data"]


def test_the_events_list_keeps_the_snapshot_event(stripe, sim):
    stripe.post("/_admin/stripe/event_destination", json={"event_payload": "thin"})
    mutation, _message = _updated_customer(sim)
    settle(sim)
    newest = stripe.get("/v1/events", params={"limit": 1}).json()["data"][0]
    assert (newest["object"], newest["type"], newest["data"]["object"]["id"]) == (
        "event", "customer.updated", mutation.id)


def test_a_signed_thin_event_verifies_and_parses_to_the_mutated_object(stripe, sim):
    stripe.post("/_admin/stripe/event_destination", json={"event_payload": "thin"})
    mutation, message = _updated_customer(sim)
    now = int(sim.clock.now())
    scheme_for("stripe", (SECRET,)).verify(message.body, signed_headers(message, [SECRET], now), now)
    obs = parse_webhook("stripe", message.body, {})
    assert (obs.key, obs.thin, obs.version) == (f"stripe.customer.{mutation.id}", True, mutation.version)


def test_a_deleted_customer_sends_a_deleting_thin_event(stripe, sim):
    stripe.post("/_admin/stripe/event_destination", json={"event_payload": "thin"})
    oid = next(iter(sim.truth("stripe")["objects"]["customer"]))
    sim.models["stripe"].delete_now("customer", oid)
    message, = sim.models["stripe"].drain_outbox()
    obs = parse_webhook("stripe", message.body, {})
    assert (orjson.loads(message.body)["type"], obs.deleted) == ("v1.customer.deleted", True)


def test_an_unknown_payload_style_is_refused(stripe):
    assert stripe.post("/_admin/stripe/event_destination", json={"event_payload": "fat"}).status_code == 400
    assert stripe.post("/_admin/stripe/event_destination", content=b"{").status_code == 400
