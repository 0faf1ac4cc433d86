"""Stripe sub-resource events end to end: the simulator changes customers and charges through discounts, tax IDs,
disputes and failed refunds (the event carries the sub-resource; the parent gets no event of its own) → signed
webhooks → receiver → Kafka → normalizer re-fetching each parent → customer and charge records equal to the
simulator's truth."""

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
SECRET = "whsec_subresource_e2e"
SUBRESOURCE_EVENTS = {"customer.discount.created", "customer.tax_id.created", "charge.dispute.created",
                      "charge.refund.updated"}


@pytest.fixture
def sim(clean_slate, simulator_url):
    clean_slate(seed=11, objects=6)
    with httpx.Client(base_url=simulator_url, timeout=30) as client:
        yield client
        client.post("/_admin/config", json={"webhooks": {"stripe": {"url": None, "secrets": []}}})


def _update_customers_and_charges(sim: httpx.Client, rounds: int) -> dict[str, dict]:
    """One customer and one charge update per simulated second (Stripe stamps whole seconds): the touched keys."""
    touched = {}
    for _ in range(rounds):
        for collection in ("customer", "charge"):
            body = {"api": "stripe", "count": 1, "kinds": ["update"], "collection": collection}
            for m in sim.post("/_admin/mutate", json=body).json()["mutations"]:
                touched[f"stripe.{m['collection']}.{m['id']}"] = m
        sim.post("/_admin/clock", json={"advance_s": 1}).raise_for_status()
    return touched


def test_parents_changed_by_sub_resources_end_equal_to_the_truth(sim, kafka_config, redis_url, simulator_url):
    with namespaced_receiver("stripe", kafka_config, secrets={"stripe": (SECRET,)}) as (ns, base):
        sim.post("/_admin/config", json={"webhooks": {"stripe": {"url": f"{base}/webhooks/stripe",
                                                                 "secrets": [SECRET]}}}).raise_for_status()
        touched = _update_customers_and_charges(sim, rounds=40)
        wait_until_webhooks_delivered(sim, "stripe")
        stored = read_topic(kafka_config, f"{ns}stripe.webhooks")
        kinds = {orjson.loads(m.value())["type"] for m in stored}
        assert SUBRESOURCE_EVENTS <= kinds, f"the run must change parents through every sub-resource: {kinds}"

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
    stale = []
    for key in touched:
        _api, collection, ident = key.split(".", 2)
        if ident in truth["deleted"].get(collection, []):
            continue
        records = history.get(key) or [None]
        if records[-1] is None or records[-1]["data"] != truth["objects"][collection][ident]["data"]:
            stale.append(key)
    assert not stale, f"{len(stale)} of {len(touched)} records differ from the simulator's truth: {stale[:5]}"
