"""A poison object among many good ones, on the real simulator over HTTP, real Kafka and Redis.

An object the API refuses (403) whenever the normalizer re-fetches it (a thin webhook, a payload in
another API version than the pinned one, an equal-version tie) goes to `<api>.dlq` with its reason and
its partition moves on; one that fails transiently is deferred (written back to its topic, the batch
commits past it) and dead-lettered once deferring passes the give-up time; a transient hiccup is deferred
once and then lands. Every other record ends equal to the simulator's
truth, and the normalizer never stops.
"""

from __future__ import annotations

import base64
import contextlib
import uuid

import httpx
import orjson
import pytest
import redis
from sync_helpers import STRIPE_AUTH, history, record_problems, settings_for, truth

from apisync.http import ApiClient, Backoff, FatalError, RateLimitSpec, RedisRateLimiter, auth_for
from apisync.kafka.admin import admin_client, ensure
from apisync.kafka.producer import Producer
from apisync.kafka.reader import read_topic
from apisync.kafka.topics import Layout, TopicSpec, api_topics
from apisync.normalizer import open_normalizer
from apisync.refetch_outcomes import DeferPolicy
from apisync.registry import build_source, rule_event_types, spec_for
from apisync.webhooks.refetch import source_refetcher

pytestmark = [pytest.mark.integration, pytest.mark.volume]

OBJECTS = 400  # the simulator's dataset size: a few hundred customers
BATCH = 40  # several batches, so the poison shares its batch with good objects and others follow it
OTHER_VERSION = "2025-03-31.basil"  # not the pinned 2024-06-20: the payload is re-fetched
QUICK_DEFERRALS = DeferPolicy(first_delay_s=0.5, max_delay_s=1.0)  # deferrals due within the test


@pytest.fixture
def sim(simulator_url, clean_slate):
    clean_slate(seed=11, objects=OBJECTS, topics=False)
    with httpx.Client(base_url=simulator_url, timeout=30) as client:
        yield client
        client.delete("/_admin/faults")


def namespace(kafka_config) -> str:
    """Fresh copies of Stripe's topics under a unique prefix."""
    ns = f"t{uuid.uuid4().hex[:8]}."
    specs = [TopicSpec(ns + s.name, s.partitions, s.replication_factor, s.config)
             for s in api_topics("stripe", Layout(partitions=3), rule_event_types("stripe"))]
    ensure(admin_client(kafka_config), specs)
    return ns


def change(ident: str, version: int, data: dict) -> bytes:
    return orjson.dumps({"key": f"stripe.customer.{ident}", "api": "stripe", "collection": "customer", "id": ident,
                         "version": version, "updated_at": "", "source": "backfill", "synced_at": "",
                         "deleted": False, "data": data})


def thin_event(ident: str, created_s: int) -> bytes:
    """A Stripe thin event: it names the object and carries no snapshot."""
    return orjson.dumps({"id": f"evt_{uuid.uuid4().hex[:12]}", "object": "event", "type": "customer.updated",
                         "created": created_s, "related_object": {"id": ident, "type": "customer",
                                                                   "url": f"/v1/customers/{ident}"}})


def other_version_event(ident: str, created_s: int, data: dict) -> bytes:
    """A full event rendered in another API version than the pinned one (the payload is not trusted)."""
    return orjson.dumps({"id": f"evt_{uuid.uuid4().hex[:12]}", "object": "event", "type": "customer.updated",
                         "created": created_s, "api_version": OTHER_VERSION, "data": {"object": data}})


def produce(kafka_config, topic: str, items) -> None:
    producer = Producer(kafka_config)
    for key, value in items:
        producer.produce(topic, key, value)
    producer.flush()


def refuse(sim: httpx.Client, ident: str, kind: str = "refused", **spec) -> None:
    """Every GET of this one customer answers as the fault says, until the faults are cleared."""
    sim.post("/_admin/faults", json={"kind": kind, "api": "stripe", "path": f"/v1/customers/{ident}",
                                     "count": None, **spec}).raise_for_status()


@contextlib.contextmanager
def quick_refetch(kafka_config, redis_url, simulator_url, token: str | None = None):
    """The production re-fetch (the source over an ApiClient on the webhook lane), with a short backoff."""
    settings = settings_for("stripe", kafka_config, redis_url, simulator_url)
    source = build_source(settings.api)
    # below the simulated Stripe's 25 requests/s, so no 429 adds an abort the test does not expect
    limiter = RedisRateLimiter(redis.Redis.from_url(redis_url), "stripe", f"poison-{uuid.uuid4().hex[:6]}",
                               RateLimitSpec(rate=20, burst=5))
    client = ApiClient("stripe", simulator_url, auth_for("stripe", token or settings.api.token, None), lane="webhook",
                       rate_limiter=limiter, headers=getattr(source, "headers", None),
                       signals=spec_for("stripe").signals, max_retries=2, backoff=Backoff(base_s=0.02, cap_s=0.1))
    with client:
        yield {"refetch": source_refetcher(source, client), "webhook_options": source.webhook_options,
               "defer_policy": QUICK_DEFERRALS}


def normalize(kafka_config, redis_url, ns, ledger, expected, options) -> tuple[int, int, int]:
    """Run the normalizer until it consumed `expected` messages and every message it wrote back (a deferral):
    (consumed originals, aborted batches, dead letters). Any exception escaping run() fails the test: the
    normalizer must not stop on a poison object."""
    normalizer = open_normalizer("stripe", kafka_config, redis.Redis.from_url(redis_url), namespace=ns,
                                 ledger_prefix=ledger, poll_timeout=0.5, batch_size=BATCH, **options)
    consumed = aborted = dead = deferred = 0
    try:
        for _ in range(120):
            stats = normalizer.run(max_seconds=1.0)
            consumed, aborted, dead = consumed + stats.consumed, aborted + stats.aborted, dead + stats.dead_letters
            deferred += stats.deferred
            if consumed >= expected + deferred:
                break
    finally:
        normalizer.close()
    return consumed - deferred, aborted, dead


def dead_letters(kafka_config, ns) -> dict[str, dict]:
    """The dead letters by record key (one per key is expected)."""
    letters = [(m.key().decode(), orjson.loads(m.value())) for m in read_topic(kafka_config, f"{ns}stripe.dlq")]
    assert len({key for key, _letter in letters}) == len(letters), f"a key dead-lettered twice: {letters}"
    return dict(letters)


def customers_of(simulator_url) -> dict[str, dict]:
    customers = truth(simulator_url, "stripe")["objects"]["customer"]
    assert len(customers) >= 60, "the dataset is too small for this test"
    return customers


def test_a_refused_object_is_dead_lettered_and_everything_else_reaches_the_records(
        sim, kafka_config, redis_url, simulator_url):
    ns, ledger = namespace(kafka_config), f"test:ledger:{uuid.uuid4().hex}"
    customers = customers_of(simulator_url)
    ids = sorted(customers)
    tie_poison, thin_poison, version_poison = ids[0], ids[1], ids[2]
    ties, thins, versions = ids[0:60:3], ids[1:60:3], ids[2:60:3]  # each poison among 19 good ones
    # Every customer once; then, at the same version with other content, a second observation of some
    # (versions are the API's stamps: two reads within one stamp can differ), which only the server decides.
    changes = [(f"stripe.customer.{i}", change(i, customers[i]["version"], customers[i]["data"])) for i in ids]
    changes += [(f"stripe.customer.{i}", change(i, customers[i]["version"], {**customers[i]["data"],
                                                                             "name": "an older name"}))
                for i in ties]
    created_s = max(c["version"] for c in customers.values()) // 1000
    webhooks = [(f"stripe.customer.{i}", thin_event(i, created_s)) for i in thins]
    webhooks += [(f"stripe.customer.{i}", other_version_event(i, created_s, customers[i]["data"])) for i in versions]
    produce(kafka_config, f"{ns}stripe.changes", changes)
    produce(kafka_config, f"{ns}stripe.webhooks", webhooks)
    for poison in (tie_poison, thin_poison, version_poison):
        refuse(sim, poison)
    # one good object fails transiently through all of one request's retries: it is deferred once, then lands
    hiccup = ids[6]  # a tie
    sim.post("/_admin/faults", json={"kind": "http_500", "api": "stripe", "path": f"/v1/customers/{hiccup}",
                                     "count": 3, "status": 503}).raise_for_status()
    refused = sim.get(f"/v1/customers/{tie_poison}", headers=STRIPE_AUTH)
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "invalid_request_error"
    assert sim.get(f"/v1/customers/{ids[3]}", headers=STRIPE_AUTH).status_code == 200  # one object only

    with quick_refetch(kafka_config, redis_url, simulator_url) as options:
        consumed, aborted, dead = normalize(kafka_config, redis_url, ns, ledger, len(changes) + len(webhooks),
                                            options)

    assert consumed == len(changes) + len(webhooks)
    assert aborted == 0  # neither a refused object nor a hiccup aborts a batch
    letters = dead_letters(kafka_config, ns)
    assert dead == 3 and set(letters) == {f"stripe.customer.{p}" for p in (tie_poison, thin_poison, version_poison)}
    for key, letter in letters.items():
        assert letter["reason"].startswith("re-fetch refused: stripe GET /v1/customers/")
        assert "HTTP 403" in letter["reason"] and key.rsplit(".", 1)[1] in letter["reason"]
        assert STRIPE_AUTH["Authorization"].split()[1] not in letter["reason"]
    assert orjson.loads(base64.b64decode(letters[f"stripe.customer.{tie_poison}"]["value"]))["data"]["name"] == \
        "an older name"  # the dead letter holds the message as it was read, for a replay
    assert letters[f"stripe.customer.{thin_poison}"]["topic"] == f"{ns}stripe.webhooks"
    records = history(kafka_config, f"{ns}stripe.records")
    assert record_problems("stripe", ("customer",), records, truth(simulator_url, "stripe")) == []


def test_an_object_failing_transiently_forever_is_dead_lettered_once_deferring_passes_the_give_up_time(
        sim, kafka_config, redis_url, simulator_url):
    ns, ledger = namespace(kafka_config), f"test:ledger:{uuid.uuid4().hex}"
    customers = customers_of(simulator_url)
    ids = sorted(customers)
    stuck = ids[7]
    changes = [(f"stripe.customer.{i}", change(i, customers[i]["version"], customers[i]["data"])) for i in ids]
    created_s = max(c["version"] for c in customers.values()) // 1000
    webhooks = [(f"stripe.customer.{i}", thin_event(i, created_s)) for i in ids[:30]]
    produce(kafka_config, f"{ns}stripe.changes", changes)
    produce(kafka_config, f"{ns}stripe.webhooks", webhooks)
    sim.post("/_admin/faults", json={"kind": "http_500", "api": "stripe", "path": f"/v1/customers/{stuck}",
                                     "count": None, "status": 503}).raise_for_status()

    with quick_refetch(kafka_config, redis_url, simulator_url) as options:
        options["defer_policy"] = DeferPolicy(first_delay_s=0.5, max_delay_s=1.0, give_up_s=3.0)
        consumed, aborted, dead = normalize(kafka_config, redis_url, ns, ledger, len(changes) + len(webhooks),
                                            options)

    assert consumed == len(changes) + len(webhooks)
    assert aborted == 0  # deferred, never a batch read again, never a stop
    letters = dead_letters(kafka_config, ns)
    assert dead == 1 and list(letters) == [f"stripe.customer.{stuck}"]
    reason = letters[f"stripe.customer.{stuck}"]["reason"]
    assert reason.startswith("gave up after ") and " deferrals: re-fetch failed transiently: " in reason
    assert "HTTP 503" in reason
    records = history(kafka_config, f"{ns}stripe.records")
    assert record_problems("stripe", ("customer",), records, truth(simulator_url, "stripe")) == []


def test_a_refused_credential_stops_the_normalizer_instead_of_dead_lettering_every_webhook(
        sim, kafka_config, redis_url, simulator_url):
    ns, ledger = namespace(kafka_config), f"test:ledger:{uuid.uuid4().hex}"
    ids = sorted(customers_of(simulator_url))[:10]
    produce(kafka_config, f"{ns}stripe.webhooks", [(f"stripe.customer.{i}", thin_event(i, 1_700_000_000)) for i in ids])

    with quick_refetch(kafka_config, redis_url, simulator_url, token="sk_test_revoked_key") as options, \
            pytest.raises(FatalError) as stopped:
        normalize(kafka_config, redis_url, ns, ledger, len(ids), options)

    assert stopped.value.status == 401 and "revoked" not in str(stopped.value)  # the key never in the line
    assert read_topic(kafka_config, f"{ns}stripe.dlq") == []
