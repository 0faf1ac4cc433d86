"""Stripe lifecycles: every event type per collection, with objects that agree with their event."""
from collections import Counter

import pytest

from conftest import settle, walk

EMITTED = {
    "customer": {"customer.created", "customer.updated", "customer.deleted"},
    "subscription": {"customer.subscription.created", "customer.subscription.updated",
                     "customer.subscription.paused", "customer.subscription.resumed",
                     "customer.subscription.pending_update_applied", "customer.subscription.deleted"},
    "invoice": {"invoice.created", "invoice.finalized", "invoice.paid", "invoice.payment_failed",
                "invoice.voided", "invoice.marked_uncollectible", "invoice.updated", "invoice.deleted"},
    "charge": {"charge.succeeded", "charge.failed", "charge.pending", "charge.captured", "charge.expired",
               "charge.refunded", "charge.updated"},
    # Sub-resources: the event carries the sub-resource, and the parent gets no event of its own.
    "discount": {"customer.discount.created", "customer.discount.updated", "customer.discount.deleted"},
    "tax_id": {"customer.tax_id.created"},
    "dispute": {"charge.dispute.created"},
    "refund": {"charge.refund.updated"},
}


@pytest.fixture
def events(client, stripe, sim):
    """Every event after 1,500 mixed mutations (seeded, so the same each run)."""
    client.post("/_admin/mutate", json={"api": "stripe", "count": 1500}).raise_for_status()
    # A discount is removed or switched only on a customer that has one: update a few customers often.
    client.post("/_admin/mutate", json={"api": "stripe", "count": 200, "kinds": ["update"],
                                        "collection": "customer"}).raise_for_status()
    settle(sim)
    return walk(stripe, "/v1/events", limit=100)


def _collection(event):
    return event["data"]["object"]["object"]


def test_every_lifecycle_event_type_is_emitted(events):
    seen = {}
    for event in events:
        seen.setdefault(_collection(event), set()).add(event["type"])
    assert seen == EMITTED


CHECKS = {
    "charge.failed": lambda o, p: (o["status"], o["paid"], o["captured"], o["failure_code"] is not None)
    == ("failed", False, False, True),
    "charge.pending": lambda o, p: o["status"] == "pending" and not o["paid"],
    "charge.captured": lambda o, p: o["captured"] and o["amount_captured"] == o["amount"] and p["captured"] is False,
    "charge.expired": lambda o, p: not o["captured"] and o["refunded"] and o["status"] == "succeeded",
    "charge.refunded": lambda o, p: o["refunded"] and o["amount_refunded"] == o["amount"],
    "charge.succeeded": lambda o, p: o["status"] == "succeeded" and o["paid"],
    "invoice.finalized":
        lambda o, p: o["status"] == "open" and o["number"] and p == {"status": "draft", "number": None},
    "invoice.paid": lambda o, p: o["status"] == "paid" and o["amount_remaining"] == 0,
    "invoice.payment_failed": lambda o, p: o["status"] == "open" and o["attempt_count"] == p["attempt_count"] + 1,
    "invoice.voided": lambda o, p: o["status"] == "void",
    "invoice.marked_uncollectible": lambda o, p: o["status"] == "uncollectible" and p == {"status": "open"},
    "invoice.deleted": lambda o, p: o["status"] == "draft",
    "customer.subscription.paused": lambda o, p: o["status"] == "paused",
    "customer.subscription.resumed": lambda o, p: o["status"] == "active" and p == {"status": "paused"},
    "customer.subscription.pending_update_applied":
        lambda o, p: o["items"]["data"][0]["quantity"] == p["pending_update"]["subscription_items"][0]["quantity"],
    "customer.subscription.deleted": lambda o, p: o["status"] == "canceled" and o["canceled_at"] == o["ended_at"],
    "charge.dispute.created": lambda o, p: o["charge"].startswith("ch_") and o["status"] == "needs_response",
    "charge.refund.updated": lambda o, p: o["charge"].startswith("ch_") and o["status"] == "failed",
    "customer.discount.created": lambda o, p: o["customer"].startswith("cus_") and o["subscription"] is None,
    "customer.tax_id.created": lambda o, p: o["customer"].startswith("cus_"),
}


def test_objects_agree_with_their_event(events):
    checked = Counter()
    for event in events:
        check = CHECKS.get(event["type"])
        if check:
            obj, previous = event["data"]["object"], event["data"].get("previous_attributes", {})
            assert check(obj, previous), event
            checked[event["type"]] += 1
    assert set(checked) == set(CHECKS)


def test_every_object_of_a_kind_has_the_same_fields(client, sim):
    client.post("/_admin/mutate", json={"api": "stripe", "count": 800}).raise_for_status()
    for collection, objects in sim.truth("stripe")["objects"].items():
        shapes = {frozenset(item["data"]) for item in objects.values()}
        assert len(shapes) == 1, (collection, shapes)


def test_runs_are_reproducible(client):
    first = client.post("/_admin/mutate", json={"api": "stripe", "count": 200}).json()
    client.post("/_admin/reset", json={"seed": 7, "objects": 60})
    again = client.post("/_admin/mutate", json={"api": "stripe", "count": 200}).json()
    assert [m["id"] for m in first["mutations"]] == [m["id"] for m in again["mutations"]]


# ---- cancel semantics: customer.subscription.deleted ends a subscription, it is not deleted -------------
def test_canceled_subscription_stays_retrievable_and_listed_under_all(stripe, sim):
    mutation = sim.models["stripe"].mutate("delete", "subscription")
    truth = sim.truth("stripe")
    assert mutation.id not in truth["deleted"]["subscription"]
    item = truth["objects"]["subscription"][mutation.id]
    assert item["version"] == mutation.version
    sub = stripe.get(f"/v1/subscriptions/{mutation.id}").json()
    assert sub == item["data"]
    assert sub["status"] == "canceled" and sub["canceled_at"] == sub["ended_at"] == mutation.version // 1000
    assert mutation.id not in {s["id"] for s in walk(stripe, "/v1/subscriptions", limit=100)}
    for status in ("all", "canceled", "ended"):
        assert mutation.id in {s["id"] for s in walk(stripe, "/v1/subscriptions", limit=100, status=status)}
    settle(sim)
    event = stripe.get("/v1/events", params={"type": "customer.subscription.deleted"}).json()["data"][0]
    assert event["created"] * 1000 == item["version"] and event["data"]["object"]["status"] == "canceled"


def test_canceled_subscription_never_changes_again(sim):
    model = sim.models["stripe"]
    canceled = model.mutate("delete", "subscription").id
    before = sim.truth("stripe")["objects"]["subscription"][canceled]
    for _ in range(300):
        model.mutate("update", "subscription")
        model.mutate("delete", "subscription")
    assert model.delete_now("subscription", canceled) is None
    assert sim.truth("stripe")["objects"]["subscription"][canceled] == before


def test_delete_between_list_and_fetch_cancels_a_subscription(client, stripe, sim):
    sub = stripe.get("/v1/subscriptions", params={"limit": 1}).json()["data"][0]
    client.post("/_admin/faults", json={"kind": "delete_between_list_and_fetch", "api": "stripe"})
    answer = stripe.get(f"/v1/subscriptions/{sub['id']}")
    assert answer.status_code == 200 and answer.json()["status"] == "canceled"
    assert sim.truth("stripe")["objects"]["subscription"][sub["id"]]["data"]["status"] == "canceled"


def test_only_draft_invoices_are_deleted(client, sim):
    client.post("/_admin/mutate", json={"api": "stripe", "count": 200, "kinds": ["delete"],
                                        "collection": "invoice"})
    model = sim.models["stripe"]
    open_invoice = next(i for i, e in model.data["invoice"].entries.items() if e.data["status"] != "draft")
    assert model.delete_now("invoice", open_invoice) is None
    assert not any(e.data["status"] == "draft" for e in model.data["invoice"].entries.values())
