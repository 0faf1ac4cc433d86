"""The simulator's bulk seeds: per-collection counts at reset, and aged history added to a live dataset.

Both serve the same list endpoints (same index, same walk), so a listing of a bulk seed behaves like any
other; aged history has no event, as real history whose events Stripe's 30-day retention has dropped.
"""
import time

import pytest

from api_simulator.clock import Clock
from api_simulator.stripe_model import StripeModel
from conftest import walk

DAY = 86400


def test_reset_counts_set_one_collections_size_and_keep_the_others(client, sim):
    answer = client.post("/_admin/reset", json={"seed": 5, "objects": 4, "counts": {"stripe": {"customer": 900}}})
    assert answer.status_code == 200, answer.text
    sizes = {name: len(col) for name, col in sim.models["stripe"].data.items()}
    assert sizes == {"customer": 900, "subscription": 4, "invoice": 4, "charge": 4}
    assert len(sim.models["github"].issues) > 0  # the other APIs are seeded with `objects` as before


def test_a_bulk_seed_records_no_event_the_retention_has_dropped(sim):
    sim.reset(5, 0, counts={"stripe": {"customer": 600}})
    model = sim.models["stripe"]
    horizon = model.clock.now_s() - 30 * DAY
    created = sorted(e.data["created"] for e in model.data["customer"].entries.values())
    events = [e.data["created"] for e in model.events.entries.values()]
    assert created[0] < horizon < created[-1]  # the 45-day timeline spans the horizon
    assert events and min(events) >= horizon
    assert len(events) == sum(when >= horizon for when in created)


def test_a_bulk_seed_lists_newest_first_through_the_same_walk(client, stripe, sim):
    client.post("/_admin/reset", json={"seed": 9, "objects": 2, "counts": {"stripe": {"customer": 450}}})
    listed = walk(stripe, "/v1/customers", limit=100)
    assert sorted(c["id"] for c in listed) == sorted(sim.truth("stripe")["objects"]["customer"])
    keys = [(c["created"], c["id"]) for c in listed]
    assert [k[0] for k in keys] == sorted((k[0] for k in keys), reverse=True)
    assert len({k[0] for k in keys}) < len(keys)  # same-second ties, as in every seed


def test_aged_history_joins_a_live_dataset_without_events(client, stripe, sim):
    now = int(sim.clock.now())
    events_before = len(sim.models["stripe"].events)
    answer = client.post("/_admin/seed", json={"api": "stripe", "counts": {"customer": 300, "invoice": 20},
                                               "created_from": now - 40 * DAY, "created_to": now - 31 * DAY})
    assert answer.status_code == 200, answer.text
    assert answer.json()["created"] == 320
    assert len(sim.models["stripe"].events) == events_before
    listed = walk(stripe, "/v1/customers", limit=100)
    assert len(listed) == 60 + 300
    assert sorted(c["id"] for c in listed) == sorted(sim.truth("stripe")["objects"]["customer"])


@pytest.mark.parametrize(("body", "reason"), [
    ({"api": "stripe", "counts": {"customer": 10}, "created_from": -1, "created_to": None}, "epoch seconds"),
    ({"api": "github", "counts": {"issue": 10}, "created_from": 0, "created_to": 1}, "apply to stripe only"),
    ({"api": "stripe", "counts": {"refund": 10}, "created_from": 0, "created_to": 1}, "must map"),
    ({"api": "stripe", "counts": {"customer": -1}, "created_from": 0, "created_to": 1}, "must map"),
])
def test_the_seed_route_refuses_what_it_cannot_seed(client, body, reason):
    answer = client.post("/_admin/seed", json=body)
    assert answer.status_code == 400 and reason in answer.json()["error"]


def test_aged_history_must_be_older_than_the_retention(client, sim):
    now = int(sim.clock.now())
    answer = client.post("/_admin/seed", json={"api": "stripe", "counts": {"customer": 5},
                                               "created_from": now - 31 * DAY, "created_to": now - 29 * DAY})
    assert answer.status_code == 400 and "retention" in answer.json()["error"]


def test_reset_refuses_counts_for_an_api_without_them(client):
    answer = client.post("/_admin/reset", json={"seed": 1, "objects": 3, "counts": {"hubspot": {"contact": 9}}})
    assert answer.status_code == 400 and "stripe only" in answer.json()["error"]


def test_seeding_100k_customers_takes_seconds_of_cpu():
    model = StripeModel(Clock(start=2_000_000_000), 3)
    now = model.clock.now_s()
    began = time.process_time()  # CPU time: other tenants of the machine do not count
    assert model.seed_aged({"customer": 100_000}, now - 40 * DAY, now - 31 * DAY) == 100_000
    spent = time.process_time() - began
    print(f"\n100,000 aged customers seeded in {spent:.1f} s of CPU")
    assert spent < 15  # quadratic seeding (a list of every customer per new object) takes minutes
