"""Partial ledger loss on the real broker and Redis: detected before a verdict, repaired, nothing doubled.

Redis with an AOF fsynced once a second, or a failover to a lagging replica, goes back in time while
Kafka keeps the commits; eviction drops single keys; compaction drops old tombstones from the records
topic a rebuild reads. Each test makes one of these happen for real (DUMP/RESTORE, DEL, DeleteRecords),
lets the normalizer go on with re-delivered, stale and new observations, and compares what Kafka holds
with the truth of what was observed.
"""

import logging
import random
import time
import uuid
from collections import Counter

import orjson
import pytest
import redis
from confluent_kafka import TopicPartition
from sync_helpers import PATIENCE_S, duplicate_event_ids, history, settled_read, wait_for

from apisync.events import observation_from_change
from apisync.fence import FencedOut, LedgerLost, SourcePosition, VersionFence
from apisync.kafka.admin import admin_client, ensure
from apisync.kafka.producer import Producer
from apisync.kafka.topics import Layout, TopicSpec, api_topics
from apisync.normalizer import open_normalizer
from apisync.registry import rule_event_types

pytestmark = [pytest.mark.integration, pytest.mark.volume]

BASE_MS = 1_795_704_812_000


def make_namespace(kafka_config, records_config=None):
    """Fresh stripe topics under a unique prefix; `records_config` overrides the records topic's configs."""
    ns = f"t{uuid.uuid4().hex[:8]}."
    specs = []
    for spec in api_topics("stripe", Layout(partitions=3), rule_event_types("stripe")):
        config = {**spec.config, **(records_config or {})} if spec.name == "stripe.records" else spec.config
        specs.append(TopicSpec(ns + spec.name, spec.partitions, spec.replication_factor, config))
    ensure(admin_client(kafka_config), specs)
    return ns


def change(ident, version, deleted=False):
    data = None if deleted else {"id": ident, "name": f"{ident} at {version}"}
    return {"key": f"stripe.customer.{ident}", "api": "stripe", "collection": "customer", "id": ident,
            "version": version, "updated_at": "", "source": "poll", "synced_at": "", "deleted": deleted,
            "data": data}


def produce(kafka_config, ns, observations, unreadable=0):
    """The observations, then `unreadable` messages that are dead letters (a batch may end with them)."""
    producer = Producer(kafka_config)
    for obs in observations:
        producer.produce(f"{ns}stripe.changes", obs["key"], obs)
    for n in range(unreadable):
        producer.produce(f"{ns}stripe.changes", f"stripe.customer.bad_{n}", b"not json")
    producer.flush()
    return len(observations) + unreadable


def drain(normalizer, expected):
    """Run one normalizer until it committed `expected` more messages (a stuck run fails after PATIENCE_S)."""
    consumed, deadline = 0, time.monotonic() + PATIENCE_S
    while consumed < expected and time.monotonic() < deadline:
        consumed += normalizer.run(max_seconds=1.0).consumed
    assert consumed == expected


def snapshot(client, prefix):
    """Every ledger key (states, offsets, key set, owners, marker) as Redis would persist it now."""
    return {key: client.dump(key) for key in client.scan_iter(match=f"{prefix}:*")}


def go_back_to(client, prefix, snap):
    """Redis loses every write since `snap`: newer keys vanish, older values come back (an AOF tail lost)."""
    for key in client.scan_iter(match=f"{prefix}:*"):
        if key not in snap:
            client.delete(key)
    for key, dumped in snap.items():
        client.restore(key, 0, dumped, replace=True)


def expected_state(observations):
    """Per key, what the records topic must end with: the newest version, a delete winning a tie."""
    newest = {}
    for obs in observations:
        current = newest.get(obs["key"])
        if current is None or (obs["version"], obs["deleted"]) > (current["version"], current["deleted"]):
            newest[obs["key"]] = obs
    return {key: None if obs["deleted"] else obs["data"] for key, obs in newest.items()}


def problems(kafka_config, ns, observations):
    """Records against the truth (final state, versions never backwards) and events (one `created` per
    key, no event id twice)."""
    records = history(kafka_config, f"{ns}stripe.records")
    found = []
    for key, data in expected_state(observations).items():
        past = records.get(key)
        final = past[-1][0] if past else None  # a key the compacted topic no longer holds is deleted
        if (final and final["data"]) != data:
            found.append(f"{key}: records end with {final!r}, the truth is {data!r}")
    for key, past in records.items():
        versions = [version for _value, version, _partition in past]
        if versions != sorted(versions):
            found.append(f"{key} went backwards: {versions}")
    events = history(kafka_config, f"{ns}stripe.events")
    created = Counter(key for key, past in events.items() for value, _v, _p in past if value["type"] == "created")
    found += [f"{key}: {n} created events" for key, n in created.items() if n > 1]
    found += [f"event {event_id} twice" for event_id in duplicate_event_ids(events)]
    return found


def rebuilds(caplog):
    return sum("rebuilding from" in r.getMessage() for r in caplog.records if r.name == "apisync.ledger")


@pytest.fixture()
def client(redis_url):
    return redis.Redis.from_url(redis_url)


@pytest.fixture()
def ledger(client):
    prefix = f"test:ledger:{uuid.uuid4().hex}"
    yield prefix
    for key in client.scan_iter(match=f"{prefix}:*"):
        client.delete(key)


def test_redis_losing_its_last_writes_is_detected_and_repaired_before_any_verdict(kafka_config, client, ledger,
                                                                                   caplog):
    caplog.set_level(logging.WARNING, logger="apisync.ledger")
    ns = make_namespace(kafka_config)
    first = [change(f"cus_a{n}", BASE_MS + 1000) for n in range(30)]
    second = ([change(f"cus_a{n}", BASE_MS + 2000) for n in range(10)]  # updated
              + [change(f"cus_a{n}", BASE_MS + 2000, deleted=True) for n in range(10, 15)]  # deleted
              + [change(f"cus_b{n}", BASE_MS + 1000) for n in range(10)])  # created
    # re-deliveries of what Redis forgot, stale versions, and new changes
    third = (second + [change(f"cus_a{n}", BASE_MS + 1500) for n in range(15)]
             + [change(f"cus_a{n}", BASE_MS + 3000) for n in range(20, 26)])
    normalizer = open_normalizer("stripe", kafka_config, client, namespace=ns, ledger_prefix=ledger,
                                 poll_timeout=0.5, batch_size=7)
    try:
        drain(normalizer, produce(kafka_config, ns, first, unreadable=5))
        before = snapshot(client, ledger)
        drain(normalizer, produce(kafka_config, ns, second, unreadable=5))  # committed in Kafka ...
        assert rebuilds(caplog) == 0  # batches ending in dead letters are judged to their end too
        go_back_to(client, ledger, before)  # ... and lost by Redis
        drain(normalizer, produce(kafka_config, ns, third))
    finally:
        normalizer.close()
    assert problems(kafka_config, ns, first + second + third) == []
    assert rebuilds(caplog) == 1


def test_a_random_one_percent_of_ledger_keys_lost_is_detected_and_repaired(kafka_config, client, ledger, caplog):
    caplog.set_level(logging.WARNING, logger="apisync.ledger")
    ns = make_namespace(kafka_config)
    idents = [f"cus_{n}" for n in range(300)]
    first = [change(ident, BASE_MS + 1000) for ident in idents] + [change(ident, BASE_MS + 2000) for ident in idents]
    # every object observed again: the older version (a lookback) and, for some, a newer one
    second = [change(ident, BASE_MS + 1000) for ident in idents] + [change(ident, BASE_MS + 3000)
                                                                    for ident in idents[::10]]
    normalizer = open_normalizer("stripe", kafka_config, client, namespace=ns, ledger_prefix=ledger,
                                 poll_timeout=0.5, batch_size=100)
    try:
        drain(normalizer, produce(kafka_config, ns, first))
        evicted = random.Random(11).sample(idents, len(idents) // 100)
        assert client.delete(*(f"{ledger}:stripe.customer.{ident}" for ident in evicted)) == len(evicted)
        drain(normalizer, produce(kafka_config, ns, second))
    finally:
        normalizer.close()
    assert problems(kafka_config, ns, first + second) == []
    assert rebuilds(caplog) == 1


def test_a_ledger_from_before_judged_offsets_is_rebuilt_once_then_trusted(kafka_config, client, ledger, caplog):
    caplog.set_level(logging.WARNING, logger="apisync.ledger")
    ns = make_namespace(kafka_config)
    first = [change(f"cus_{n}", BASE_MS + 1000) for n in range(20)]
    second = first + [change(f"cus_{n}", BASE_MS + 2000) for n in range(10)]
    third = [change(f"cus_{n}", BASE_MS + 3000) for n in range(20)]
    normalizer = open_normalizer("stripe", kafka_config, client, namespace=ns, ledger_prefix=ledger,
                                 poll_timeout=0.5, batch_size=7)
    try:
        drain(normalizer, produce(kafka_config, ns, first))
        client.delete(f"{ledger}:~judged:stripe", f"{ledger}:~keys:stripe")  # as an older apisync wrote it
        drain(normalizer, produce(kafka_config, ns, second))
        assert rebuilds(caplog) == 1
        drain(normalizer, produce(kafka_config, ns, third))
    finally:
        normalizer.close()
    assert problems(kafka_config, ns, first + second + third) == []
    assert rebuilds(caplog) == 1


def test_a_deleted_objects_late_stale_observation_after_a_rebuild_does_not_revive_it(kafka_config, client, ledger):
    # DeleteRecords needs the delete policy next to compaction; it stands for compaction having
    # removed the object's record and tombstone (past delete.retention.ms) from the records topic.
    ns = make_namespace(kafka_config, {"cleanup.policy": "compact,delete", "retention.ms": "-1"})
    gone = [change("cus_gone", BASE_MS + 1000), change("cus_gone", BASE_MS + 2000, deleted=True)]
    others = [change(f"cus_{n}", BASE_MS + 1000) for n in range(20)]
    normalizer = open_normalizer("stripe", kafka_config, client, namespace=ns, ledger_prefix=ledger,
                                 poll_timeout=0.5)
    try:
        drain(normalizer, produce(kafka_config, ns, gone))
        drain(normalizer, produce(kafka_config, ns, others))
        forget_the_records_of(kafka_config, f"{ns}stripe.records", "stripe.customer.cus_gone")
        client.delete(f"{ledger}:stripe.customer.cus_7")  # a key evicted: the ledger is rebuilt
        late = [change("cus_gone", BASE_MS + 1000), change("cus_7", BASE_MS + 1000)]
        drain(normalizer, produce(kafka_config, ns, late))
    finally:
        normalizer.close()
    assert problems(kafka_config, ns, gone + others + late) == []
    events = history(kafka_config, f"{ns}stripe.events")["stripe.customer.cus_gone"]
    assert [value["type"] for value, _v, _p in events] == ["created", "deleted"]


def forget_the_records_of(kafka_config, topic, key):
    """Delete the records topic's messages up to and including the last one of `key`, so a rebuild never
    sees the key (it is written first on its partition)."""
    mine = [m for m in settled_read(kafka_config, topic) if m.key().decode() == key]
    assert mine and mine[-1].value() is None  # its record and its tombstone
    partition, last = mine[-1].partition(), mine[-1].offset()
    admin = admin_client(kafka_config)  # kept referenced until the answer came
    for future in admin.delete_records([TopicPartition(topic, partition, last + 1)]).values():
        future.result(timeout=60)
    assert not [m for m in settled_read(kafka_config, topic) if m.key().decode() == key]


def customer(ident, version):
    return observation_from_change(orjson.dumps(change(ident, version)))


@pytest.fixture()
def fence(client, ledger):
    fence = VersionFence(client, ledger)
    fence.mark_generation("stripe", "test", {"stripe.changes:0": 0})
    return fence


def redis_ms(client):
    seconds, micros = client.time()
    return seconds * 1000 + micros // 1000


def test_an_owner_epoch_that_went_back_is_a_loss_and_an_older_one_a_zombie(fence, client):
    at = SourcePosition("stripe.changes", 0, 0)
    epochs = fence.claim(["stripe.changes:0"])
    client.delete(fence.owner_key("stripe.changes:0"))  # Redis lost the claim (the partition's first)
    with pytest.raises(LedgerLost, match="owner epoch went back"):
        fence.check_many([(customer("cus_1", BASE_MS), at)], "a", {"stripe.changes:0": 0}, epochs=epochs)
    assert not fence.has_generation("stripe")
    fence.mark_generation("stripe", "rebuilt")
    # a Redis restart takes more than a millisecond: the next claim is never the lost one
    wait_for(lambda: redis_ms(client) > epochs["stripe.changes:0"], "Redis's clock past the lost epoch")
    successor = fence.claim(["stripe.changes:0"])
    with pytest.raises(FencedOut):
        fence.check_many([(customer("cus_1", BASE_MS), at)], "a", {"stripe.changes:0": 0}, epochs=epochs)
    assert fence.check_many([(customer("cus_1", BASE_MS), at)], "b", {"stripe.changes:0": 0},
                            epochs=successor)[0].accepted


@pytest.mark.parametrize("gone", ["~judged:stripe", "~keys:stripe"])
def test_the_offsets_or_the_key_set_evicted_is_a_loss(fence, client, ledger, gone):
    client.delete(f"{ledger}:{gone}")
    with pytest.raises(LedgerLost):
        fence.check(customer("cus_1", BASE_MS), SourcePosition("stripe.changes", 0, 0), "a", {"stripe.changes:0": 0})
    assert not fence.has_generation("stripe")
