"""A re-fetch that fails transiently defers one object without freezing its partition, on the real simulator.

Real Kafka, Redis and the simulator over HTTP: a backlog of thin Stripe webhooks (Stripe's thin events
name the object and carry no snapshot, https://docs.stripe.com/event-destinations#thin-events) while the
simulator answers 503 for one customer's GET (Stripe documents 500/502/503/504 as its own transient
errors, https://docs.stripe.com/error-handling). The other objects' records land and every input offset
commits while it fails; once the fault clears, the deferred object's record lands; nothing reaches the
DLQ and the records equal the simulator's truth.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
import redis
from sync_helpers import STRIPE_AUTH, history, record_problems, truth
from test_volume_poison import change, customers_of, namespace, produce, quick_refetch, sim, thin_event  # noqa: F401

from apisync.kafka.groups import normalizer_group
from apisync.kafka.reader import read_topic
from apisync.ledger import committed_offsets
from apisync.normalizer import open_normalizer
from apisync.refetch_outcomes import DEFERRALS_HEADER, DeferPolicy

pytestmark = [pytest.mark.integration, pytest.mark.volume]

BATCH = 40
ROUNDS = 90  # normalizer runs of at most 1 s each; every wait below ends on what Kafka recorded, not on time
POLICY = DeferPolicy(first_delay_s=0.5, max_delay_s=1.0, give_up_s=600)  # small delays, no give-up here


def run_until(normalizer, done, stats) -> None:
    """Run the normalizer a second at a time until `done()` says so (on recorded state), adding up its stats."""
    for _ in range(ROUNDS):
        result = normalizer.run(max_seconds=1.0)
        for name in stats:
            stats[name] += getattr(result, name)
        if done():
            return
    raise AssertionError(f"not done after {ROUNDS} rounds: {stats}")


def test_a_transiently_failing_object_is_deferred_while_the_rest_of_its_partition_commits(
        sim, kafka_config, redis_url, simulator_url):  # noqa: F811 - the fixture
    ns, ledger = namespace(kafka_config), f"test:ledger:{uuid.uuid4().hex}"
    customers = customers_of(simulator_url)
    ids = sorted(customers)
    stuck = ids[5]
    # every customer but the stuck one as a full observation, then thin webhooks for 60, the stuck one among them
    produce(kafka_config, f"{ns}stripe.changes", [(f"stripe.customer.{i}", change(i, customers[i]["version"],
                                                                                  customers[i]["data"]))
                                                  for i in ids if i != stuck])
    created_s = max(c["version"] for c in customers.values()) // 1000
    produce(kafka_config, f"{ns}stripe.webhooks",
            [(f"stripe.customer.{i}", thin_event(i, created_s)) for i in ids[:60]])
    originals = Counter(m.partition() for m in read_topic(kafka_config, f"{ns}stripe.webhooks"))
    sim.post("/_admin/faults", json={"kind": "http_500", "api": "stripe", "path": f"/v1/customers/{stuck}",
                                     "count": None, "status": 503}).raise_for_status()
    group, topic = normalizer_group("stripe", ns), f"{ns}stripe.webhooks"

    def committed_past_originals() -> bool:
        offsets = committed_offsets(kafka_config, group, [topic])
        return all(offsets.get(f"{topic}:{p}", 0) >= count for p, count in originals.items())

    def keys_in_records() -> set[str]:
        return set(history(kafka_config, f"{ns}stripe.records"))

    stats = {"consumed": 0, "aborted": 0, "dead_letters": 0, "deferred": 0}
    with quick_refetch(kafka_config, redis_url, simulator_url) as options:
        normalizer = open_normalizer("stripe", kafka_config, redis.Redis.from_url(redis_url), namespace=ns,
                                     ledger_prefix=ledger, poll_timeout=0.5, batch_size=BATCH,
                                     **{**options, "defer_policy": POLICY})
        try:
            # While the fault holds: every other record lands and every original offset commits.
            run_until(normalizer, lambda: committed_past_originals()
                      and keys_in_records() == {f"stripe.customer.{i}" for i in ids if i != stuck}, stats)
            assert sim.get(f"/v1/customers/{stuck}", headers=STRIPE_AUTH).status_code == 503  # still failing
            assert stats["deferred"] >= 1 and stats["aborted"] == 0 and stats["dead_letters"] == 0
            written_back = [m for m in read_topic(kafka_config, topic) if m.offset() >= originals[m.partition()]]
            assert written_back and {m.key().decode() for m in written_back} == {f"stripe.customer.{stuck}"}
            assert all(DEFERRALS_HEADER in dict(m.headers() or []) for m in written_back)
            # The fault clears: the deferred object's record lands.
            sim.delete("/_admin/faults").raise_for_status()
            run_until(normalizer, lambda: f"stripe.customer.{stuck}" in keys_in_records(), stats)
        finally:
            normalizer.close()

    assert read_topic(kafka_config, f"{ns}stripe.dlq") == [] and stats["aborted"] == 0
    records = history(kafka_config, f"{ns}stripe.records")
    assert record_problems("stripe", ("customer",), records, truth(simulator_url, "stripe")) == []
