"""Simulator → signed webhooks (shuffled, duplicated) → receiver (uvicorn) → Kafka → normalizer → records = truth."""

import base64
import time
import uuid
from collections import defaultdict

import httpx
import orjson
import pytest
import redis
from sync_helpers import normalize_until_consumed, served, settings_for, settled_read, wait_until_webhooks_delivered

from apisync.kafka.admin import admin_client, ensure
from apisync.kafka.producer import Producer
from apisync.kafka.reader import read_topic
from apisync.kafka.topics import Layout, TopicSpec, api_topics
from apisync.registry import rule_event_types
from apisync.webhooks.receiver import WebhookSettings, create_app

pytestmark = pytest.mark.integration

SECRETS = {"stripe": "whsec_e2e_secret",
           "salesforce": "whsec_" + base64.b64encode(b"e2e-key-32-bytes-long-abcdefghij").decode(),
           "github": "It's a Secret to Everybody"}


@pytest.fixture()
def receiver(kafka_config):
    """The real receiver app under uvicorn on a loopback port, writing to a fresh namespace."""
    ns = f"t{uuid.uuid4().hex[:8]}."
    specs = [TopicSpec(ns + s.name, s.partitions, s.replication_factor, s.config)
             for api in SECRETS for s in api_topics(api, Layout(partitions=3), rule_event_types(api))]
    ensure(admin_client(kafka_config), specs)
    settings = WebhookSettings(secrets={k: (v,) for k, v in SECRETS.items()}, topic_prefix=ns)
    with served(create_app(settings, Producer(kafka_config))) as base:
        yield ns, base


@pytest.mark.parametrize("api", ["stripe", "salesforce"])
def test_webhooks_converge_to_the_simulators_truth(kafka_config, redis_url, simulator_url, receiver, api):
    ns, base = receiver
    sim = httpx.Client(base_url=simulator_url, timeout=10)
    # few objects, so most mutations hit an object changed before: real per-key reordering
    sim.post("/_admin/reset", json={"seed": 42, "objects": 3}).raise_for_status()
    # the simulator's dispatcher applies a reset's "drop pending webhooks" on its next loop, so a
    # mutation right after the reset can lose its webhook: give the thread a moment
    time.sleep(0.5)
    sim.post("/_admin/config", json={
        "webhooks": {api: {"url": f"{base}/webhooks/{api}", "secrets": [SECRETS[api]]}},
        "webhook_chaos": {"shuffle": True, "duplicate_rate": 0.3, "max_attempts": 5}}).raise_for_status()
    touched = {}
    try:
        for _ in range(40):
            # one mutation per simulated second: versions are whole seconds, and two changes of one
            # object inside one second cannot be ordered by anyone (see the report)
            done = sim.post("/_admin/mutate", json={"api": api, "count": 1}).json()["mutations"]
            for m in done:
                touched[f"{api}.{m['collection']}.{m['id']}"] = m
            sim.post("/_admin/clock", json={"advance_s": 1}).raise_for_status()
        # Salesforce's open transactions (the simulator's default: a tenth commit 3 s late) commit now
        sim.post("/_admin/clock", json={"advance_s": 5}).raise_for_status()
        delivered = wait_until_webhooks_delivered(sim, api)["delivered"]
    finally:
        sim.post("/_admin/config", json={"webhooks": {api: {"url": None}},
                                         "webhook_chaos": {"shuffle": False, "duplicate_rate": 0.0}})
    assert delivered >= 40

    stored = len(read_topic(kafka_config, f"{ns}{api}.webhooks"))
    assert stored >= 40  # duplicates included
    client = redis.Redis.from_url(redis_url)
    ledger = f"test:ledger:{uuid.uuid4().hex}"
    # with the API connection: Stripe's sub-resource events (a dispute, a discount) are re-fetches of their parent
    settings = settings_for(api, kafka_config, redis_url, simulator_url)
    assert normalize_until_consumed(api, kafka_config, client, stored, settings=settings, namespace=ns,
                                    ledger_prefix=ledger) == stored

    truth = sim.get(f"/_admin/truth/{api}").json()
    history = defaultdict(list)
    for msg in settled_read(kafka_config, f"{ns}{api}.records"):
        value = orjson.loads(msg.value()) if msg.value() is not None else None
        history[msg.key().decode()].append((value, dict(msg.headers())))
    assert set(history) == set(touched), f"records differ from the touched objects: {set(history) ^ set(touched)}"
    for key in touched:
        _api, collection, ident = key.split(".", 2)
        last, headers = history[key][-1]
        if ident in truth["deleted"].get(collection, []):
            assert last is None, f"{key} is deleted upstream but not tombstoned"
        else:
            expected = truth["objects"][collection][ident]
            assert last["data"] == expected["data"], key
            # a Stripe object re-fetched for a sub-resource event is versioned by its response's Date − 1 ms
            refetched = api == "stripe" and last["version"] > expected["version"]
            assert last["version"] == expected["version"] or refetched, key
        versions = [int(h["apisync-version"]) for _v, h in history[key]]
        assert versions == sorted(versions), f"{key} went backwards: {versions}"
    events = [orjson.loads(m.value()) for m in settled_read(kafka_config, f"{ns}{api}.events")]
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids))



def test_github_pull_request_deliveries_leave_the_record_a_poll_lists(kafka_config, redis_url, simulator_url,
                                                                        receiver):
    """A `pull_request` delivery carries the full PR; its record holds the fields GET /pulls lists, as the truth
    (and every poll) does, so a webhook after a poll is no change."""
    ns, base = receiver
    sim = httpx.Client(base_url=simulator_url, timeout=10)
    sim.post("/_admin/reset", json={"seed": 42, "objects": 3}).raise_for_status()
    sim.post("/_admin/config", json={"webhooks": {"github": {"url": f"{base}/webhooks/github",
                                                             "secrets": [SECRETS["github"]]}}}).raise_for_status()
    touched = set()
    try:
        for _ in range(20):  # one PR change per simulated second: every one sends a `pull_request` delivery
            body = {"api": "github", "collection": "pull_request", "kinds": ["create", "update"], "count": 1}
            touched |= {m["id"] for m in sim.post("/_admin/mutate", json=body).json()["mutations"]}
            sim.post("/_admin/clock", json={"advance_s": 1}).raise_for_status()
        delivered = wait_until_webhooks_delivered(sim, "github")["delivered"]
    finally:
        sim.post("/_admin/config", json={"webhooks": {"github": {"url": None}}})
    assert delivered >= 20
    stored = len(read_topic(kafka_config, f"{ns}github.webhooks"))
    client, ledger = redis.Redis.from_url(redis_url), f"test:ledger:{uuid.uuid4().hex}"
    assert normalize_until_consumed("github", kafka_config, client, stored, namespace=ns,
                                    ledger_prefix=ledger) == stored
    truth = sim.get("/_admin/truth/github").json()["objects"]["pull_request"]
    records = settled_read(kafka_config, f"{ns}github.records")
    newest = {msg.key().decode(): orjson.loads(msg.value()) for msg in records}
    assert {f"github.pull_request.{i}" for i in touched} <= set(newest)
    for ident in touched:
        record = newest[f"github.pull_request.{ident}"]
        assert (record["version"], record["data"]) == (truth[ident]["version"], truth[ident]["data"]), ident
        assert "additions" not in record["data"] and "mergeable" not in record["data"]
