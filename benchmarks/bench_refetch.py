"""Re-fetch throughput at a small budget: a backlog of thin HubSpot webhooks (3 per object) drained by
the normalizer at HubSpot's default budget (4 requests/s, webhook lane).

The normalizer re-fetches before each transaction, one read per object (its webhooks coalesced), in
batch reads of 100 ids; measured twice: with the batch read, and one GET per object (a re-fetch
without a list call, as for Stripe). Re-fetching one GET per webhook (no coalescing) would drain at
the budget itself: 4 webhooks/s, the baseline of the ratio.
"""

from __future__ import annotations

import time
import uuid

import httpx
import orjson
import redis
from common import Row, Stack

RATE = 4.0  # HubSpot's default budget, requests/s
OBJECTS = 200
PER_OBJECT = 3


class OneByOne:
    """The production re-fetch without its list call: one GET per object."""

    def __init__(self, refetch):
        self._refetch = refetch

    def __call__(self, obs):
        return self._refetch(obs)


def drain(stack: Stack, one_by_one: bool) -> tuple[float, int]:
    """(seconds to drain the backlog, batches) for a fresh namespace and budget."""
    from apisync.http import ApiClient, RateLimitSpec, RedisRateLimiter, auth_for
    from apisync.kafka.producer import Producer
    from apisync.normalizer import open_normalizer
    from apisync.registry import build_source, spec_for
    from apisync.settings import ApiSettings
    from apisync.webhooks.refetch import source_refetcher
    from devstack.airflow import SIMULATOR_TOKENS

    # An earlier path may have reset the simulator to fewer objects (bursts keeps 10 per collection).
    httpx.post(f"{stack.simulator_url}/_admin/reset", json={"objects": OBJECTS},
               timeout=60).raise_for_status()
    contacts = sorted(httpx.get(f"{stack.simulator_url}/_admin/truth/hubspot", timeout=60).json()
                      ["objects"]["contact"].items())[:OBJECTS]
    if len(contacts) < OBJECTS:
        raise RuntimeError(f"the simulator holds {len(contacts)} HubSpot contacts, the bench needs {OBJECTS}")
    ns = stack.namespace("hubspot", partitions=3)
    producer = Producer(stack.kafka_config)
    for k in range(PER_OBJECT):
        for oid, entry in contacts:
            producer.produce(f"{ns}hubspot.webhooks", f"hubspot.contact.{oid}", orjson.dumps({
                "subscriptionType": "contact.propertyChange", "objectId": int(oid),
                "occurredAt": entry["version"] - k, "propertyName": "email"}))
    producer.flush()
    expected = len(contacts) * PER_OBJECT
    settings = ApiSettings("hubspot", stack.simulator_url, SIMULATOR_TOKENS["hubspot"], {}, rate_per_s=RATE)
    source = build_source(settings)
    limiter = RedisRateLimiter(redis.Redis.from_url(stack.redis_url), "hubspot", f"bench-{uuid.uuid4().hex[:6]}",
                               RateLimitSpec(rate=RATE, burst=1))
    with ApiClient("hubspot", stack.simulator_url, auth_for("hubspot", settings.token, None), lane="webhook",
                   rate_limiter=limiter, signals=spec_for("hubspot").signals) as client:
        refetch = source_refetcher(source, client)
        normalizer = open_normalizer("hubspot", stack.kafka_config, redis.Redis.from_url(stack.redis_url),
                                     namespace=ns, ledger_prefix=f"bench:ledger:{uuid.uuid4().hex}",
                                     refetch=OneByOne(refetch) if one_by_one else refetch, poll_timeout=0.5)
        consumed = batches = 0
        started = time.monotonic()
        try:
            while consumed < expected and time.monotonic() - started < 600:
                stats = normalizer.run(max_seconds=1.0)
                consumed, batches = consumed + stats.consumed, batches + stats.batches
            elapsed = time.monotonic() - started
        finally:
            normalizer.close()
            stack.drop(ns)
    if consumed < expected:
        raise RuntimeError(f"drained {consumed} of {expected} webhooks in 600 s")
    return elapsed, batches


def run(stack: Stack) -> list[Row]:
    rows, webhooks = [], OBJECTS * PER_OBJECT
    for label, one_by_one in (("batch read, 100 ids", False), ("one GET per object", True)):
        seconds, batches = drain(stack, one_by_one)
        rate = webhooks / seconds
        rows.append(Row(f"re-fetch: hubspot, {label}", f"{webhooks} thin webhooks ({OBJECTS} objects x {PER_OBJECT}) "
                        f"at {RATE:g} req/s", f"{rate:.0f} webhooks/s, {OBJECTS / seconds:.0f} objects/s "
                        f"({batches} batches)", f"{rate / RATE:.1f}x one GET per webhook",
                        f">= {PER_OBJECT}x (coalesced)", rate >= 0.8 * PER_OBJECT * RATE))
    return rows
