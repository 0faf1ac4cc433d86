"""Backfill, polling and webhooks on the same keys, through one normalizer: records = ground truth.

The simulator mutates Stripe objects while the backfill pages, delivers every change as a signed
webhook (shuffled, 30% duplicated) to the real receiver, and incremental polls read the same changes
from /v1/events. The normalizer sees each change up to three times, in any order.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import redis
import uvicorn
from sync_helpers import duplicate_event_ids, history, normalize_until_consumed, record_problems, settings_for

from apisync.kafka.partitioning import partition_for
from apisync.kafka.producer import Producer
from apisync.kafka.reader import read_topic
from apisync.sync import run_backfill, run_incremental
from apisync.webhooks.receiver import WebhookSettings, create_app
from devstack.process import free_port

pytestmark = pytest.mark.integration
SECRET = "whsec_interleaved"
COLLECTIONS = ("customer", "subscription", "invoice", "charge")


@pytest.fixture
def receiver_url(kafka_config):
    app = create_app(WebhookSettings(secrets={"stripe": (SECRET,)}), Producer(kafka_config))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(10)


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
    _wait_until_webhooks_settle(sim)
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


def _wait_until_webhooks_settle(sim: httpx.Client, quiet_polls: int = 6) -> None:
    last, stable = -1, 0
    for _ in range(120):
        attempts = sim.get("/_admin/stats").json()["webhooks"].get("stripe", {}).get("attempts", 0)
        stable = stable + 1 if attempts == last else 0
        if stable >= quiet_polls:
            return
        last = attempts
        time.sleep(0.25)


def _normalize_everything(kafka_config, redis_url) -> None:
    expected = sum(len(read_topic(kafka_config, f"stripe.{t}")) for t in ("changes", "webhooks"))
    assert normalize_until_consumed("stripe", kafka_config, redis.Redis.from_url(redis_url), expected) == expected

