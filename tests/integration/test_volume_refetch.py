"""A backlog of webhooks that need a re-fetch, drained at a small budget with no aborted batch.

On the real simulator over HTTP, real Kafka and Redis: thousands of thin HubSpot webhooks (several per
object) and Stripe events rendered in another API version. The normalizer re-fetches before each
transaction, one read per object (HubSpot: batch reads of 100), cuts each batch at its re-fetch bound and
reads the rest next: no batch aborts, every record equals the truth, and each object is read about once.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid

import orjson
import pytest
import redis
from sync_helpers import history, record_problems, settings_for, truth

from apisync.http import ApiClient, RateLimitSpec, RedisRateLimiter, auth_for
from apisync.kafka.admin import admin_client, ensure
from apisync.kafka.producer import Producer
from apisync.kafka.topics import Layout, TopicSpec, api_topics
from apisync.normalizer import open_normalizer
from apisync.registry import build_source, rule_event_types, spec_for
from apisync.webhooks.refetch import source_refetcher

pytestmark = [pytest.mark.integration, pytest.mark.volume]

DEADLINE_S = 90.0  # the whole drain; re-fetching one by one inside transactions would take minutes


def namespace(kafka_config, api: str) -> str:
    ns = f"t{uuid.uuid4().hex[:8]}."
    specs = [TopicSpec(ns + s.name, s.partitions, s.replication_factor, s.config)
             for s in api_topics(api, Layout(partitions=3), rule_event_types(api))]
    ensure(admin_client(kafka_config), specs)
    return ns


def produce(kafka_config, topic: str, items) -> None:
    producer = Producer(kafka_config)
    for key, value in items:
        producer.produce(topic, key, value)
    producer.flush()


class CountingRefetch:
    """The production re-fetch, counting the requests it makes and the objects it reads."""

    def __init__(self, refetch):
        self._refetch, self.per_call, self.requests, self.objects = refetch, refetch.per_call, 0, 0

    def __call__(self, obs):
        self.requests, self.objects = self.requests + 1, self.objects + 1
        return self._refetch(obs)

    def many(self, observations):
        self.requests, self.objects = self.requests + 1, self.objects + len(observations)
        return self._refetch.many(observations)


@contextlib.contextmanager
def budgeted_refetch(api, kafka_config, redis_url, simulator_url, rate: float):
    """The source over an ApiClient on the webhook lane of a shared budget of `rate` requests/s."""
    settings = settings_for(api, kafka_config, redis_url, simulator_url)
    source = build_source(settings.api)
    limiter = RedisRateLimiter(redis.Redis.from_url(redis_url), api, f"refetch-{uuid.uuid4().hex[:6]}",
                               RateLimitSpec(rate=rate, burst=2))
    client = ApiClient(api, simulator_url, auth_for(api, settings.api.token, None), lane="webhook",
                       rate_limiter=limiter, headers=getattr(source, "headers", None), signals=spec_for(api).signals)
    with client:
        yield CountingRefetch(source_refetcher(source, client)), getattr(source, "webhook_options", None)


def drain(api, kafka_config, redis_url, ns, expected, refetch, webhook_options, max_requests) -> tuple[int, int, int]:
    """Run the normalizer until it consumed `expected` messages: (consumed, aborted, batches)."""
    normalizer = open_normalizer(api, kafka_config, redis.Redis.from_url(redis_url), namespace=ns,
                                 ledger_prefix=f"test:ledger:{uuid.uuid4().hex}", poll_timeout=0.5, refetch=refetch,
                                 webhook_options=webhook_options, max_refetch_requests=max_requests)
    consumed = aborted = batches = 0
    deadline = time.monotonic() + DEADLINE_S
    try:
        while consumed < expected and time.monotonic() < deadline:
            stats = normalizer.run(max_seconds=1.0)
            consumed, aborted, batches = consumed + stats.consumed, aborted + stats.aborted, batches + stats.batches
    finally:
        normalizer.close()
    return consumed, aborted, batches


def test_a_backlog_of_thin_hubspot_webhooks_drains_at_a_small_budget_without_an_aborted_batch(
        simulator_url, clean_slate, kafka_config, redis_url):
    clean_slate(seed=23, objects=300, topics=False)
    ns, ground = namespace(kafka_config, "hubspot"), truth(simulator_url, "hubspot")
    collections = ("contact", "company", "deal")
    objects = [(c, oid, entry["version"]) for c in collections for oid, entry in ground["objects"][c].items()]
    assert len(objects) >= 800
    events = [(c, oid, version - k * 1000) for c, oid, version in objects for k in range(3)]  # 3 thin webhooks each
    random.Random(5).shuffle(events)
    produce(kafka_config, f"{ns}hubspot.webhooks",
            [(f"hubspot.{c}.{oid}", orjson.dumps({"subscriptionType": f"{c}.propertyChange", "objectId": int(oid),
                                                  "occurredAt": occurred, "propertyName": "x"}))
             for c, oid, occurred in events])

    # 4 requests/s (HubSpot's default budget); 3 requests per batch: 300 objects, so the backlog needs cuts
    with budgeted_refetch("hubspot", kafka_config, redis_url, simulator_url, rate=4) as (refetch, options):
        consumed, aborted, batches = drain("hubspot", kafka_config, redis_url, ns, len(events), refetch, options,
                                           max_requests=3)

    assert consumed == len(events) and aborted == 0
    assert batches >= len(objects) // 300  # cut by the bound, the rest read next
    # one read per object, in batch reads of 100 (an object whose webhooks straddle a cut is read twice)
    assert refetch.objects <= 2 * len(objects) and refetch.requests <= 2 * (len(objects) // 100 + 3 * batches)
    records = history(kafka_config, f"{ns}hubspot.records")
    assert record_problems("hubspot", collections, records, truth(simulator_url, "hubspot")) == []


def test_stripe_events_in_another_api_version_drain_with_one_read_per_object(
        simulator_url, clean_slate, kafka_config, redis_url):
    clean_slate(seed=29, objects=150, topics=False)
    ns, ground = namespace(kafka_config, "stripe"), truth(simulator_url, "stripe")
    customers = ground["objects"]["customer"]
    assert len(customers) >= 100
    events = [(oid, entry, k) for oid, entry in customers.items() for k in range(3)]
    random.Random(7).shuffle(events)
    produce(kafka_config, f"{ns}stripe.webhooks", [
        (f"stripe.customer.{oid}", orjson.dumps({
            "id": f"evt_{uuid.uuid4().hex[:12]}", "object": "event", "type": "customer.updated",
            "created": entry["version"] // 1000 - k, "api_version": "2025-03-31.basil",
            "data": {"object": {**entry["data"], "name": f"rendered in another version {k}"}}}))
        for oid, entry, k in events])

    # 20 requests/s, 40 requests per batch: Stripe has no batch read, so each object is one GET
    with budgeted_refetch("stripe", kafka_config, redis_url, simulator_url, rate=20) as (refetch, options):
        consumed, aborted, batches = drain("stripe", kafka_config, redis_url, ns, len(events), refetch, options,
                                           max_requests=40)

    assert consumed == len(events) and aborted == 0 and batches >= len(customers) // 40
    assert refetch.requests < 1.5 * len(customers)  # coalesced: not one GET per event
    records = history(kafka_config, f"{ns}stripe.records")
    assert record_problems("stripe", ("customer",), records, truth(simulator_url, "stripe")) == []
