"""Stripe thin events (an event destination with `event_payload: thin`): simulator → signed thin events →
receiver → Kafka → normalizer (re-fetching each related object) → records equal to the simulator's truth."""

import uuid
from collections import defaultdict

import httpx
import orjson
import pytest
import redis
from sync_helpers import (
    namespaced_receiver,
    normalize_until_consumed,
    settings_for,
    settled_read,
    wait_until_webhooks_delivered,
)

from apisync.kafka.reader import read_topic

pytestmark = pytest.mark.integration
SECRET = "whsec_thin_e2e"


@pytest.fixture
def sim(clean_slate, simulator_url):
    clean_slate(seed=5, objects=4)  # also the simulator's config: an earlier test may have upgraded the account
    with httpx.Client(base_url=simulator_url, timeout=30) as client:
        share = client.get("/_admin/config").json()["stripe_subresource_share"]
        yield client
        client.post("/_admin/config", json={"stripe_subresource_share": share})
        client.post("/_admin/stripe/event_destination", json={"event_payload": "snapshot"})
        client.post("/_admin/config", json={"webhooks": {"stripe": {"url": None, "secrets": []}}})


def test_thin_events_end_as_records_equal_to_the_truth(sim, kafka_config, redis_url, simulator_url):
    with namespaced_receiver("stripe", kafka_config, secrets={"stripe": (SECRET,)}) as (ns, base):
        sim.post("/_admin/stripe/event_destination", json={"event_payload": "thin"}).raise_for_status()
        # A thin event of a sub-resource (dispute, refund, discount) names no parent to re-fetch: the webhook path
        # skips it and the polled event window brings the parent (test_stripe_subresources covers that path).
        sim.post("/_admin/config", json={"stripe_subresource_share": 0.0}).raise_for_status()
        sim.post("/_admin/config", json={"webhooks": {"stripe": {"url": f"{base}/webhooks/stripe",
                                                                 "secrets": [SECRET]}}}).raise_for_status()
        touched = {}
        for _ in range(25):  # one mutation per simulated second: Stripe stamps whole seconds
            for m in sim.post("/_admin/mutate", json={"api": "stripe", "count": 1}).json()["mutations"]:
                touched[f"stripe.{m['collection']}.{m['id']}"] = m
            sim.post("/_admin/clock", json={"advance_s": 1}).raise_for_status()
        assert wait_until_webhooks_delivered(sim, "stripe")["delivered"] >= 25
        stored = read_topic(kafka_config, f"{ns}stripe.webhooks")
        assert stored and all(orjson.loads(m.value())["object"] == "v2.core.event" for m in stored)

        settings = settings_for("stripe", kafka_config, redis_url, simulator_url)
        consumed = normalize_until_consumed("stripe", kafka_config, redis.Redis.from_url(redis_url), len(stored),
                                            settings=settings, namespace=ns,
                                            ledger_prefix=f"test:ledger:{uuid.uuid4().hex}")
        assert consumed == len(stored)
        assert read_topic(kafka_config, f"{ns}stripe.dlq", timeout=5) == []

        truth = sim.get("/_admin/truth/stripe").json()
        history = defaultdict(list)
        for msg in settled_read(kafka_config, f"{ns}stripe.records"):
            value = orjson.loads(msg.value()) if msg.value() is not None else None
            history[msg.key().decode()].append(value)
    assert set(history) == set(touched)
    for key in touched:
        _api, collection, ident = key.split(".", 2)
        last = history[key][-1]
        if ident in truth["deleted"].get(collection, []):
            assert last is None, f"{key} is deleted upstream but not tombstoned"
        else:
            assert last["data"] == truth["objects"][collection][ident]["data"], key
            assert last["source"] == "webhook"
        versions = [v["version"] for v in history[key] if v is not None]
        assert versions == sorted(versions), f"{key} went backwards: {versions}"
