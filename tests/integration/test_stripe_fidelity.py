"""Stripe as it really behaves (the simulator does each of these by default): the records topic, read to
its end, equals the simulator's truth, content included; no event id twice; no version backwards.

- a backfill whose cursor object is deleted while it is interrupted (400 resource_missing);
- a collection that stays quiet for longer than the 30-day event retention;
- events that become visible late and out of order;
- every event type that changes an object (failed charges, finalized and voided invoices, ...);
- `customer.subscription.deleted`: the subscription ended, it is not gone;
- two different contents of one object stamped in the same whole second, delivered newest first;
- an account upgraded to a newer API version while the connection pins the older one.
"""

from __future__ import annotations

import os
import time

import httpx
import orjson
import pytest
import redis
from sync_helpers import (
    STRIPE_AUTH,
    duplicate_event_ids,
    history,
    normalize_until_consumed,
    record_problems,
    settings_for,
    settle_stripe_events,
    settled_read,
    stripe_events,
    truth,
)

from apisync.checkpoints import CheckpointStore
from apisync.kafka.producer import Outgoing, Producer
from apisync.sync import run_backfill, run_incremental, run_reconcile

pytestmark = pytest.mark.integration
COLLECTIONS = ("customer", "subscription", "invoice", "charge")


class Interrupted(Exception):
    """Stands for a worker dying between two pages."""


@pytest.fixture
def sim(simulator_url):
    with httpx.Client(base_url=simulator_url, timeout=30) as client:
        yield client


def test_a_backfill_whose_cursor_object_was_deleted_resumes_and_completes(
        clean_slate, sim, kafka_config, redis_url, simulator_url, monkeypatch):
    clean_slate(seed=3, objects=60)
    # one page per transaction, so the checkpoint is at page 2 when the run stops there (grouped pages
    # could commit all six at once and leave no cursor to delete)
    monkeypatch.setattr("apisync.sync.runner.MAX_TRANSACTION_MESSAGES", 1)
    settings = settings_for("stripe", kafka_config, redis_url, simulator_url, page_size=10)
    with pytest.raises(Interrupted):
        run_backfill(settings, "customer", on_progress=_stop_after_pages(2))
    page = CheckpointStore(kafka_config).load("stripe.backfill.customer")["cursor"]["page"]
    cursor = {"after": page.get("after") or page.get("cursor")}
    _delete(sim, "customers", cursor["after"])  # Stripe now answers 400 resource_missing for this cursor

    summary = run_backfill(settings, "customer")
    assert summary.pages >= 4
    settle_stripe_events(sim)
    run_incremental(settings, "customer")  # brings the customer.deleted event
    ground = truth(simulator_url, "stripe")
    assert cursor["after"] in ground["deleted"]["customer"]
    backfilled = [m for m in _changes(kafka_config) if m["source"] == "backfill"]
    assert len(backfilled) == len({m["key"] for m in backfilled}) == 60  # each once: no skip, no repeat
    _assert_records_equal_truth(kafka_config, redis_url, settings, ["customer"], ground)


def test_a_collection_quiet_for_longer_than_the_event_retention_keeps_polling(
        clean_slate, sim, kafka_config, redis_url, simulator_url):
    clean_slate(seed=5, objects=20)
    settings = settings_for("stripe", kafka_config, redis_url, simulator_url)
    for collection in ("customer", "charge"):
        run_backfill(settings, collection)
    for _ in range(5):  # 35 days without a customer event, polled all along
        sim.post("/_admin/clock", json={"advance_s": 7 * 86400}).raise_for_status()
        _mutate(sim, "charge", 3, ["create", "update"])  # visible late: the next poll's window has them
        for collection in ("customer", "charge"):
            summary = run_incremental(settings, collection)
            assert summary.note == ""
    _mutate(sim, "customer", 3, ["update"])
    settle_stripe_events(sim)
    assert run_incremental(settings, "customer").records >= 1
    run_incremental(settings, "charge")
    _assert_records_equal_truth(kafka_config, redis_url, settings, ("customer", "charge"))


def test_a_cursor_older_than_the_retention_relists_and_says_so(
        clean_slate, sim, kafka_config, redis_url, simulator_url):
    clean_slate(seed=6, objects=20)
    settings = settings_for("stripe", kafka_config, redis_url, simulator_url)
    run_backfill(settings, "invoice")
    sim.post("/_admin/clock", json={"advance_s": 31 * 86400}).raise_for_status()  # nobody polled for a month
    _mutate(sim, "invoice", 5, ["create", "update"])
    settle_stripe_events(sim)
    summary = run_incremental(settings, "invoice")
    assert "older than Stripe's 30-day event retention" in summary.note
    _assert_records_equal_truth(kafka_config, redis_url, settings, ["invoice"])


def test_late_and_out_of_order_events_are_not_lost(clean_slate, sim, kafka_config, redis_url, simulator_url):
    clean_slate(seed=9, objects=15)
    sim.post("/_admin/config", json={"stripe_events_lag_s": 5.0}).raise_for_status()
    settings = settings_for("stripe", kafka_config, redis_url, simulator_url)
    try:
        for collection in COLLECTIONS:
            run_backfill(settings, collection)
        began = sim.get("/_admin/clock").json()["now"]
        for _ in range(4):  # poll every 2 s while changes keep coming and surface up to 5 s late
            started = time.monotonic()
            for collection in COLLECTIONS:
                _mutate(sim, collection, 2, ["create", "update", "delete"])
                run_incremental(settings, collection)
            time.sleep(max(0.0, 2.0 - (time.monotonic() - started)))
        settle_stripe_events(sim)
        for collection in COLLECTIONS:
            run_incremental(settings, collection)
    finally:
        sim.post("/_admin/config", json={"stripe_events_lag_s": 3.0})
    assert sum(1 for e in stripe_events(sim) if e["created"] >= began) >= 20  # dozens of changes while polling
    _assert_records_equal_truth(kafka_config, redis_url, settings, COLLECTIONS)


def test_every_event_type_that_changes_an_object_reaches_the_records(
        clean_slate, sim, kafka_config, redis_url, simulator_url):
    clean_slate(seed=13, objects=20)
    settings = settings_for("stripe", kafka_config, redis_url, simulator_url)
    for collection in COLLECTIONS:
        run_backfill(settings, collection)
    for collection in COLLECTIONS:
        _mutate(sim, collection, 40, ["create", "update"])
    settle_stripe_events(sim)
    for collection in COLLECTIONS:
        run_incremental(settings, collection)
    types = {e["type"] for e in stripe_events(sim)}
    # not vacuous: the lifecycle beyond created/updated/deleted really happened upstream
    assert {"charge.failed", "invoice.finalized"} <= types, sorted(types)
    _assert_records_equal_truth(kafka_config, redis_url, settings, COLLECTIONS)


def test_a_canceled_subscription_is_a_record_with_status_canceled_on_every_path(
        clean_slate, sim, kafka_config, redis_url, simulator_url):
    clean_slate(seed=17, objects=12)
    settings = settings_for("stripe", kafka_config, redis_url, simulator_url)
    run_backfill(settings, "subscription")
    canceled = [m["id"] for m in _mutate(sim, "subscription", 3, ["delete"])]
    assert len(canceled) == 3
    settle_stripe_events(sim)
    run_incremental(settings, "subscription")
    ground = truth(simulator_url, "stripe")
    assert all(ground["objects"]["subscription"][i]["data"]["status"] == "canceled" for i in canceled)
    _assert_records_equal_truth(kafka_config, redis_url, settings, ["subscription"], ground)

    run_backfill(settings, "subscription", restart=True)  # the listing (status=all) agrees
    run_reconcile(settings, "subscription", dry_run=False)  # and reconcile finds nothing to delete
    _assert_records_equal_truth(kafka_config, redis_url, settings, ["subscription"], ground)
    events = history(kafka_config, "stripe.events")
    for object_id in canceled:
        kinds = [value["type"] for value, _v, _p in events[f"stripe.subscription.{object_id}"]]
        assert "status_changed" in kinds and "deleted" not in kinds, kinds


def test_two_contents_in_one_second_delivered_newest_first_end_at_the_servers_state(
        clean_slate, sim, kafka_config, redis_url, simulator_url):
    clean_slate(seed=21, objects=2)
    settings = settings_for("stripe", kafka_config, redis_url, simulator_url)
    run_backfill(settings, "customer")
    _mutate(sim, "customer", 8, ["update"])  # two customers, eight updates in about one second
    settle_stripe_events(sim)
    updates = [e for e in stripe_events(sim) if e["type"] == "customer.updated"]
    seconds = [(e["data"]["object"]["id"], e["created"]) for e in updates]
    assert len(seconds) > len(set(seconds)), "no object changed twice within one second"
    # with the discount and tax ID events: they change customers too (the parent gets no event of its own)
    changes = updates + [e for e in stripe_events(sim) if e["type"].startswith(("customer.discount.",
                                                                                 "customer.tax_id."))]
    producer = Producer(kafka_config)
    for event in sorted(changes, key=lambda e: e["created"], reverse=True):  # newest first: the wrong order
        obj = event["data"]["object"]
        key = f"stripe.customer.{obj.get('customer') or obj['id']}"
        producer.send(Outgoing("stripe.webhooks", key, orjson.dumps(event)))
    producer.flush()
    producer.close()
    _assert_records_equal_truth(kafka_config, redis_url, settings, ["customer"])


def test_records_keep_the_pinned_api_version_across_an_account_upgrade(
        clean_slate, sim, kafka_config, redis_url, simulator_url):
    clean_slate(seed=25, objects=10)
    settings = settings_for("stripe", kafka_config, redis_url, simulator_url, api_version="2024-06-20")
    _mutate(sim, "subscription", 4, ["update"])  # events rendered in 2024-06-20
    # The account upgrades: listings without Stripe-Version and new events now render in basil, where a
    # subscription has no top-level current_period_start/end any more.
    sim.post("/_admin/config", json={"stripe_api_version": "2025-03-31.basil"}).raise_for_status()
    _mutate(sim, "subscription", 4, ["update"])
    run_backfill(settings, "subscription")
    _mutate(sim, "subscription", 4, ["update"])
    settle_stripe_events(sim)
    run_incremental(settings, "subscription")
    versions = {e["api_version"] for e in stripe_events(sim) if e["type"].startswith("customer.subscription.")}
    assert versions == {"2024-06-20", "2025-03-31.basil"}
    pinned = sim.get("/_admin/truth/stripe", params={"api_version": "2024-06-20"}).json()
    assert all("current_period_end" in o["data"] for o in pinned["objects"]["subscription"].values())
    _assert_records_equal_truth(kafka_config, redis_url, settings, ["subscription"], pinned)


# ---- helpers ------------------------------------------------------------------------------------
def _stop_after_pages(pages: int):
    def report(progress) -> None:
        if progress.pages >= pages:
            raise Interrupted
    return report


def _mutate(sim: httpx.Client, collection: str, count: int, kinds: list[str]) -> list[dict]:
    reply = sim.post("/_admin/mutate", json={"api": "stripe", "collection": collection, "count": count,
                                             "kinds": kinds})
    reply.raise_for_status()
    return reply.json()["mutations"]


def _delete(sim: httpx.Client, resource: str, object_id: str) -> None:
    """Delete one named object for real (event, webhook, truth), through the simulator's fault hook."""
    sim.post("/_admin/faults", json={"kind": "delete_between_list_and_fetch", "api": "stripe",
                                     "path_prefix": f"/v1/{resource}/{object_id}", "count": 1}).raise_for_status()
    sim.get(f"/v1/{resource}/{object_id}", headers=STRIPE_AUTH)


def _changes(kafka_config) -> list[dict]:
    return [orjson.loads(m.value()) for m in settled_read(kafka_config, "stripe.changes")]


_consumed: dict[str, int] = {}  # what the normalizer group consumed so far, per test


def _assert_records_equal_truth(kafka_config, redis_url, settings, collections, ground=None) -> None:
    """Normalize everything (re-fetching like production), then compare records and events with the truth."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
    total = sum(len(settled_read(kafka_config, f"stripe.{t}")) for t in ("changes", "webhooks"))
    client = redis.Redis.from_url(redis_url)
    pending = total - _consumed.get(test, 0)
    assert normalize_until_consumed("stripe", kafka_config, client, pending, settings=settings) == pending
    _consumed[test] = total
    ground = ground or truth(settings.api.base_url, "stripe")
    assert record_problems("stripe", collections, history(kafka_config, "stripe.records"), ground) == []
    assert duplicate_event_ids(history(kafka_config, "stripe.events")) == []
