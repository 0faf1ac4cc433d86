"""Backfill, polling and webhooks on the same keys, through one normalizer: records = ground truth.

The simulator mutates Stripe objects while the backfill pages, delivers every change as a signed
webhook (shuffled, 30% duplicated) to the real receiver, and incremental polls read the same changes
from /v1/events. The normalizer sees each change up to three times, in any order.
"""

from __future__ import annotations

import time

import httpx
import pytest
import redis
from sync_helpers import (
    duplicate_event_ids,
    history,
    normalize_until_consumed,
    record_problems,
    served,
    settings_for,
    settled_read,
    wait_until_webhooks_delivered,
)

from apisync.kafka.partitioning import partition_for
from apisync.kafka.producer import Producer
from apisync.sync import run_backfill, run_incremental
from apisync.webhooks.receiver import WebhookSettings, create_app

pytestmark = pytest.mark.integration
SECRET = "whsec_interleaved"
COLLECTIONS = ("customer", "subscription", "invoice", "charge")


@pytest.fixture
def receiver_url(kafka_config):
    with served(create_app(WebhookSettings(secrets={"stripe": (SECRET,)}), Producer(kafka_config))) as url:
        yield url


def test_three_paths_on_the_same_keys_converge(clean_slate, kafka_config, redis_url, simulator_url, receiver_url):
    clean_slate(seed=31, objects=25)
    sim = httpx.Client(base_url=simulator_url, timeout=30)
    time.sleep(0.5)  # the simulator drops a reset's pending webhooks on its dispatcher's next loop
    sim.post("/_admin/config", json={
        "webhooks": {"stripe": {"url": f"{receiver_url}/webhooks/stripe", "secrets": [SECRET]}},
        "webhook_chaos": {"shuffle": True, "duplicate_rate": 0.3, "max_attempts": 5}}).raise_for_status()
    settings = settings_for("stripe", kafka_config, redis_url, simulator_url, page_size=5)

    def mutate_a_little(progress=None):
        # One change per simulated second: whole-second versions cannot order two changes of one
        # object inside one second, for anyone (see the README's known limits).
        sim.post("/_admin/mutate", json={"api": "stripe", "count": 1}).raise_for_status()
        sim.post("/_admin/clock", json={"advance_s": 1}).raise_for_status()

    for collection in COLLECTIONS:
        run_backfill(settings, collection, on_progress=mutate_a_little)  # changes mid-backfill
    for _ in range(10):
        mutate_a_little()
    for collection in COLLECTIONS:
        run_incremental(settings, collection)
    wait_until_webhooks_delivered(sim)
    sim.post("/_admin/config", json={"webhooks": {"stripe": {"url": None}},
                                     "webhook_chaos": {"shuffle": False, "duplicate_rate": 0.0}})

    _normalize_everything(kafka_config, redis_url)
    ground = sim.get("/_admin/truth/stripe").json()
    assert record_problems("stripe", COLLECTIONS, history(kafka_config, "stripe.records"), ground) == []
    events = history(kafka_config, "stripe.events")
    assert duplicate_event_ids(events) == [], "an event was emitted twice"
    for key, past in events.items():
        assert {p for _value, _v, p in past} == {partition_for(key, 6)}
        assert all(value["key"] == key for value, _v, _p in past)


def _normalize_everything(kafka_config, redis_url) -> None:
    expected = sum(len(settled_read(kafka_config, f"stripe.{t}")) for t in ("changes", "webhooks"))
    assert normalize_until_consumed("stripe", kafka_config, redis.Redis.from_url(redis_url), expected) == expected

