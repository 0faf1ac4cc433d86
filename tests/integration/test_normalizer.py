"""The normalizer on the real broker and Redis: order, dedup, events, deletes, dead letters, ledger rebuild."""

import base64
import dataclasses
import logging
import os
import random
import signal
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
import redis
from sync_helpers import PATIENCE_S, settled_read

from apisync.events import Observation, event_id
from apisync.fence import LedgerUnavailable, VersionFence
from apisync.http import RetriableError
from apisync.kafka.admin import admin_client, ensure
from apisync.kafka.producer import Producer
from apisync.kafka.topics import Layout, TopicSpec, api_topics
from apisync.ledger import rebuild_ledger
from apisync.normalizer import NormalizerSetupError, open_normalizer, opened_normalizer
from apisync.refetch_outcomes import DeferPolicy
from apisync.registry import rule_event_types

pytestmark = pytest.mark.integration

BASE_MS = 1_795_704_812_000


def make_namespace(kafka_config, api="stripe"):
    """Fresh copies of one api's topics under a unique prefix, so runs never see each other's data."""
    ns = f"t{uuid.uuid4().hex[:8]}."
    specs = [TopicSpec(ns + s.name, s.partitions, s.replication_factor, s.config)
             for s in api_topics(api, Layout(partitions=3), rule_event_types(api))]
    ensure(admin_client(kafka_config), specs)
    return ns


def change(collection, ident, version, data, deleted=False, source="poll"):
    return {"key": f"stripe.{collection}.{ident}", "api": "stripe", "collection": collection, "id": ident,
            "version": version, "updated_at": "", "source": source, "synced_at": "", "deleted": deleted,
            "data": data}


def stripe_webhook(kind, obj, created_s):
    return orjson.dumps({"id": f"evt_{uuid.uuid4().hex[:10]}", "object": "event", "type": kind,
                         "created": created_s, "data": {"object": obj}})


def produce(kafka_config, topic, items):
    producer = Producer(kafka_config)
    for key, value in items:
        producer.produce(topic, key, value)
    producer.flush()


def drain(kafka_config, ns, redis_client, ledger, expected, **options):
    """Run a normalizer until it consumed `expected` messages (a stuck one fails after PATIENCE_S)."""
    normalizer = open_normalizer("stripe", kafka_config, redis_client, namespace=ns, ledger_prefix=ledger,
                                 poll_timeout=0.5, **options)
    consumed, deadline = 0, time.monotonic() + PATIENCE_S
    try:
        while consumed < expected and time.monotonic() < deadline:
            consumed += normalizer.run(max_seconds=1.0).consumed
    finally:
        normalizer.close()
    assert consumed == expected
    return consumed


def records_by_key(kafka_config, ns):
    by_key = defaultdict(list)
    for msg in settled_read(kafka_config, f"{ns}stripe.records"):
        value = orjson.loads(msg.value()) if msg.value() is not None else None
        by_key[msg.key().decode()].append((msg.partition(), msg.offset(), value, dict(msg.headers() or [])))
    return by_key


def events_list(kafka_config, ns):
    return [(m.key().decode(), m.partition(), orjson.loads(m.value()))
            for m in settled_read(kafka_config, f"{ns}stripe.events")]


@pytest.fixture()
def redis_client(redis_url):
    return redis.Redis.from_url(redis_url)


@pytest.fixture()
def ledger(redis_client):
    prefix = f"test:ledger:{uuid.uuid4().hex}"
    yield prefix
    for key in redis_client.scan_iter(match=f"{prefix}:*"):
        redis_client.delete(key)


def test_out_of_order_duplicates_converge_with_ordered_versions_and_unique_events(kafka_config, redis_client, ledger):
    ns = make_namespace(kafka_config)
    rng = random.Random(7)
    truth, changes, hooks = {}, [], []
    for n in range(12):
        ident = f"sub_{n}"
        versions = [BASE_MS + 1000 * v for v in range(1, 6)]
        for i, version in enumerate(versions):
            data = {"id": ident, "object": "subscription", "status": ["trialing", "active", "past_due",
                                                                      "active", "canceled"][i], "rev": i}
            truth[f"stripe.subscription.{ident}"] = (version, data)
            item = (f"stripe.subscription.{ident}", change("subscription", ident, version, data))
            changes += [item] * rng.choice([1, 1, 2])  # duplicates
            if i % 2:  # the same version arrives again as a webhook
                hooks.append((f"stripe.subscription.{ident}",
                              stripe_webhook("customer.subscription.updated", data, version // 1000)))
    rng.shuffle(changes)
    rng.shuffle(hooks)
    produce(kafka_config, f"{ns}stripe.changes", changes)
    produce(kafka_config, f"{ns}stripe.webhooks", hooks)
    drain(kafka_config, ns, redis_client, ledger, len(changes) + len(hooks), batch_size=7)

    records = records_by_key(kafka_config, ns)
    assert set(records) == set(truth)
    for key, history in records.items():
        versions = [value["version"] for _p, _o, value, _h in history]
        assert versions == sorted(versions), f"{key} went backwards: {versions}"
        assert (history[-1][2]["version"], history[-1][2]["data"]) == truth[key]
        assert len({p for p, *_ in history}) == 1
    events = events_list(kafka_config, ns)
    ids = [e["event_id"] for _k, _p, e in events]
    assert len(ids) == len(set(ids)), "an event_id appeared twice"
    record_partition = {key: history[0][0] for key, history in records.items()}
    for key, partition, event in events:
        assert key == event["key"] == event["record"]["key"]
        assert partition == record_partition[key]
        data = event["record"]["data"] if event["type"] != "deleted" else None
        content = Observation("x", "x", "x", 0, "poll", "", data, data is None).content_hash()
        assert event["event_id"] == event_id(key, event["version"], event["type"], content)
    created = [e for _k, _p, e in events if e["type"] == "created"]
    assert len(created) == 12  # one per object, whatever version happened to arrive first


def test_delete_gives_one_deleted_event_and_a_tombstone(kafka_config, redis_client, ledger):
    ns = make_namespace(kafka_config)
    key = "stripe.customer.cus_gone"
    obj = {"id": "cus_gone", "object": "customer", "email": "x@y.z"}
    hooks = [(key, stripe_webhook("customer.created", obj, BASE_MS // 1000)),
             (key, stripe_webhook("customer.deleted", {**obj, "deleted": True}, BASE_MS // 1000 + 5))]
    hooks.append(hooks[-1])  # the provider retried the delete
    hooks.append(hooks[0])  # and a late duplicate of the creation
    produce(kafka_config, f"{ns}stripe.webhooks", hooks)
    drain(kafka_config, ns, redis_client, ledger, len(hooks))
    history = records_by_key(kafka_config, ns)[key]
    assert [value is None for _p, _o, value, _h in history] == [False, True]
    assert history[-1][3]["apisync-version"] == str(BASE_MS + 5000).encode()
    kinds = [e["type"] for k, _p, e in events_list(kafka_config, ns) if k == key]
    assert kinds == ["created", "deleted"]
    secondary = settled_read(kafka_config, f"{ns}stripe.customer.deleted")
    assert [orjson.loads(m.value())["record"]["data"]["email"] for m in secondary] == ["x@y.z"]
    assert [m.value() for m in settled_read(kafka_config, f"{ns}stripe.customer")][-1] is None


def test_rule_events_and_secondary_topics(kafka_config, redis_client, ledger):
    ns = make_namespace(kafka_config)
    key = "stripe.invoice.in_1"
    amounts = [500, 1500, 2500, 700, 1200]
    items = [(key, change("invoice", "in_1", BASE_MS + i * 1000, {"id": "in_1", "amount_due": a}))
             for i, a in enumerate(amounts)]
    produce(kafka_config, f"{ns}stripe.changes", items)
    drain(kafka_config, ns, redis_client, ledger, len(items))
    crossed_topic = f"{ns}stripe.invoice.amount_due_crossed_1000"
    crossed = [orjson.loads(m.value()) for m in settled_read(kafka_config, crossed_topic)]
    assert [e["record"]["data"]["amount_due"] for e in crossed] == [1500, 1200]
    updated = [orjson.loads(m.value()) for m in settled_read(kafka_config, f"{ns}stripe.invoice.updated")]
    assert updated[0]["changes"] == {"amount_due": [500, 1500]}


def test_malformed_observations_go_to_the_dlq_and_the_rest_flows(kafka_config, redis_client, ledger):
    ns = make_namespace(kafka_config)
    good = change("customer", "cus_ok", BASE_MS, {"id": "cus_ok"})
    items = [("k1", b"{not json"), ("stripe.widget.w1", change("widget", "w1", BASE_MS, {})),
             ("stripe.customer.cus_ok", good)]
    produce(kafka_config, f"{ns}stripe.changes", items)
    produce(kafka_config, f"{ns}stripe.webhooks", [("d1", b'{"type": "invoice.updated"}')])
    drain(kafka_config, ns, redis_client, ledger, 4)
    dead = [orjson.loads(m.value()) for m in settled_read(kafka_config, f"{ns}stripe.dlq")]
    reasons = sorted(d["reason"] for d in dead)
    assert len(dead) == 3
    assert any("not JSON" in r for r in reasons) and any("widget" in r for r in reasons)
    assert any("created" in r for r in reasons)  # the webhook without `created`
    originals = {base64.b64decode(d["value"]) for d in dead}
    assert originals == {b"{not json", b'{"type": "invoice.updated"}', orjson.dumps(items[1][1])}
    assert list(records_by_key(kafka_config, ns)) == ["stripe.customer.cus_ok"]


def test_a_lost_ledger_is_detected_and_rebuilt_from_the_records_topic(kafka_config, redis_client, ledger):
    ns = make_namespace(kafka_config)
    items = [("stripe.customer.cus_r", change("customer", "cus_r", BASE_MS + 10_000, {"id": "cus_r", "n": 1})),
             ("stripe.customer.cus_d", change("customer", "cus_d", BASE_MS, {"id": "cus_d"})),
             ("stripe.customer.cus_d", change("customer", "cus_d", BASE_MS + 20_000, None, deleted=True))]
    produce(kafka_config, f"{ns}stripe.changes", items)
    drain(kafka_config, ns, redis_client, ledger, 3)
    for key in redis_client.scan_iter(match=f"{ledger}:*"):
        redis_client.delete(key)  # Redis lost the ledger; nobody runs `ledger rebuild` by hand
    later = [("stripe.customer.cus_r", change("customer", "cus_r", BASE_MS, {"id": "cus_r", "n": 0})),  # older
             ("stripe.customer.cus_d", change("customer", "cus_d", BASE_MS + 1000, {"id": "cus_d"})),  # older
             ("stripe.customer.cus_r", change("customer", "cus_r", BASE_MS + 30_000, {"id": "cus_r", "n": 2}))]
    produce(kafka_config, f"{ns}stripe.changes", later)
    drain(kafka_config, ns, redis_client, ledger, 3)
    events = [e for _k, _p, e in events_list(kafka_config, ns)]
    assert [(e["key"], e["type"]) for e in events][-1] == ("stripe.customer.cus_r", "updated")
    assert events[-1]["changes"] == {"n": [1, 2]}  # diffed against the rebuilt data
    assert len(events) == 4  # created r, created d, deleted d, updated r: the older ones emitted nothing


def test_ledger_rebuild_streams_every_record_state(kafka_config, redis_client, ledger):
    ns = make_namespace(kafka_config)
    items = [("stripe.customer.cus_r", change("customer", "cus_r", BASE_MS, {"id": "cus_r"})),
             ("stripe.customer.cus_d", change("customer", "cus_d", BASE_MS + 20_000, None, deleted=True))]
    produce(kafka_config, f"{ns}stripe.changes", items)
    drain(kafka_config, ns, redis_client, ledger, 2)
    assert rebuild_ledger("stripe", kafka_config, redis_client, namespace=ns, ledger_prefix=ledger) == 2
    fence = VersionFence(redis_client, ledger)
    assert fence.has_generation("stripe")
    assert fence.current("stripe.customer.cus_d") == {"version": BASE_MS + 20_000, "deleted": True, "data": None}


def test_missing_output_topics_stop_the_start_with_one_clear_line(kafka_config, redis_client):
    ns = f"t{uuid.uuid4().hex[:8]}."
    specs = [TopicSpec(ns + s.name, s.partitions, s.replication_factor, s.config)
             for s in api_topics("stripe", Layout(partitions=1))]  # rule event topics not declared
    ensure(admin_client(kafka_config), specs)
    with pytest.raises(NormalizerSetupError) as caught:
        open_normalizer("stripe", kafka_config, redis_client, namespace=ns)
    message = str(caught.value)
    assert f"{ns}stripe.subscription.status_changed" in message and "topics ensure" in message
    assert f"{ns}stripe.records" not in message and "\n" not in message


def test_a_thin_webhook_whose_refetch_fails_transiently_is_deferred_and_retried_not_dead_lettered(
        kafka_config, redis_client, ledger):
    """A 503 while re-fetching writes the webhook back to be tried again (due at once here), never to the DLQ."""
    ns = make_namespace(kafka_config)
    thin = orjson.dumps({"id": "evt_thin_1", "object": "event", "type": "invoice.updated", "created": BASE_MS // 1000,
                         "related_object": {"id": "in_1", "type": "invoice", "url": "/v1/invoices/in_1"}})
    produce(kafka_config, f"{ns}stripe.webhooks", [("stripe.invoice.in_1", thin)])
    calls = []

    def refetch(obs):
        calls.append(obs.key)
        if len(calls) == 1:
            raise RetriableError("stripe", "GET", "/v1/invoices/in_1", 503, "Service Unavailable")
        return dataclasses.replace(obs, data={"id": "in_1", "status": "paid"}, thin=False)

    # the webhook, then its written-back copy
    drain(kafka_config, ns, redis_client, ledger, 2, refetch=refetch, defer_policy=DeferPolicy(first_delay_s=0.0))
    assert calls == ["stripe.invoice.in_1"] * 2  # tried again, not given up
    assert settled_read(kafka_config, f"{ns}stripe.dlq") == []
    assert records_by_key(kafka_config, ns)["stripe.invoice.in_1"][-1][2]["data"] == {"id": "in_1", "status": "paid"}


def test_a_fence_reply_lost_aborts_the_batch_which_is_read_again_and_loses_nothing(
        kafka_config, redis_client, ledger, monkeypatch):
    # The script ran and wrote its states, then the connection died before the reply came back. The
    # batch must be aborted and read again under a new attempt (a repeat of the same call would read its
    # own states as "unchanged" and commit the batch without its records).
    ns = make_namespace(kafka_config)
    customers = {f"cus_{i}": {"id": f"cus_{i}", "name": f"Customer {i}"} for i in range(20)}
    produce(kafka_config, f"{ns}stripe.changes",
            [(f"stripe.customer.{ident}", orjson.dumps(change("customer", ident, BASE_MS, data)))
             for ident, data in customers.items()])
    real, dropped = redis.connection.Connection.read_response, []

    def drop_the_first_fence_reply(self, *args, **kwargs):
        reply = real(self, *args, **kwargs)
        if not dropped and isinstance(reply, bytes) and reply.startswith(b"[["):  # a fence script's verdicts
            dropped.append(reply)
            raise redis.exceptions.ConnectionError("connection reset by peer")
        return reply

    monkeypatch.setattr(redis.connection.Connection, "read_response", drop_the_first_fence_reply)
    drain(kafka_config, ns, redis_client, ledger, len(customers))
    assert dropped, "a fence reply was lost"
    records = records_by_key(kafka_config, ns)
    assert {key: values[-1][2]["data"] for key, values in records.items()} == {
        f"stripe.customer.{ident}": data for ident, data in customers.items()}
    created = [key for key, _partition, event in events_list(kafka_config, ns) if event["type"] == "created"]
    assert sorted(created) == sorted(f"stripe.customer.{ident}" for ident in customers)


def test_a_script_lost_mid_batch_is_judged_again_whole_and_nothing_is_doubled(
        kafka_config, redis_client, ledger, monkeypatch, caplog):
    # Chunks are produced as Redis judges them; a later chunk that Redis answers NOSCRIPT (its scripts
    # flushed meanwhile) voids that transaction. The batch is judged again as a whole: every record
    # once, no event twice.
    monkeypatch.setattr("apisync.normalizer.loop.FENCE_CHUNK", 4)
    ns = make_namespace(kafka_config)
    customers = {f"cus_{i}": {"id": f"cus_{i}", "name": f"Customer {i}"} for i in range(20)}
    VersionFence(redis_client, ledger).mark_generation("stripe", "test")
    batch, lost = VersionFence._batch, []

    def losing_the_script_at_cus_17(fence, items, *args):
        if not lost and any(obs.id == "cus_17" for obs, _source in items):
            lost.append(1)
            fence._script.sha = "0" * 40  # a script Redis does not know, until the fence loads it again
        return batch(fence, items, *args)

    monkeypatch.setattr(VersionFence, "_batch", losing_the_script_at_cus_17)
    produce(kafka_config, f"{ns}stripe.changes",
            [(f"stripe.customer.{ident}", orjson.dumps(change("customer", ident, BASE_MS, data)))
               for ident, data in customers.items()])
    caplog.set_level(logging.INFO, logger="apisync.normalizer")
    drain(kafka_config, ns, redis_client, ledger, len(customers))
    assert "no longer knows the fence script; judging the batch again as a whole" in caplog.text
    records = records_by_key(kafka_config, ns)
    assert {key: [value["data"] for _p, _o, value, _h in values] for key, values in records.items()} == {
        f"stripe.customer.{ident}": [data] for ident, data in customers.items()}
    events = events_list(kafka_config, ns)
    assert sorted((key, event["type"]) for key, _partition, event in events) == sorted(
        (f"stripe.customer.{ident}", "created") for ident in customers)


def _local_redis_pid(client) -> int:
    """The pid of the test Redis, to stop it (skips when it is not a process of this machine)."""
    pid = int(client.info("server")["process_id"])
    comm = Path(f"/proc/{pid}/comm")
    if not comm.exists() or "redis" not in comm.read_text():
        pytest.skip("the test Redis is not a local process")
    return pid


def test_a_stalled_redis_aborts_batches_in_bounded_time_and_loses_nothing(
        kafka_config, redis_url, redis_client, ledger, monkeypatch):
    # A Redis that stops answering (SIGSTOP here; a hung host): after redis-py's socket timeout (5 s by
    # default; 1 s from the URL here) each batch is aborted and read again, and after three in a row the
    # normalizer stops with a line naming Redis, instead of hanging until Airflow's timeout. The fence calls
    # sent meanwhile run when Redis wakes up; the ledger rolls their states back for the batch's next reader.
    monkeypatch.setattr("apisync.normalizer.setup.tune_gc", lambda: None)  # this is the test process
    ns = make_namespace(kafka_config)
    customers = {f"cus_{i}": {"id": f"cus_{i}", "name": f"Customer {i}"} for i in range(30)}
    messages = [(f"stripe.customer.{ident}", orjson.dumps(change("customer", ident, BASE_MS, data)))
                for ident, data in customers.items()]
    produce(kafka_config, f"{ns}stripe.changes", messages[:10])
    pid = _local_redis_pid(redis_client)
    with opened_normalizer("stripe", kafka_config, f"{redis_url}?socket_timeout=1", namespace=ns,
                           ledger_prefix=ledger, poll_timeout=0.5) as normalizer:
        consumed, deadline = 0, time.monotonic() + PATIENCE_S
        while consumed < 10 and time.monotonic() < deadline:  # owns its partitions and committed the first ten
            consumed += normalizer.run(max_seconds=1.0).consumed
        assert consumed == 10
        produce(kafka_config, f"{ns}stripe.changes", messages[10:])
        os.kill(pid, signal.SIGSTOP)
        # Three 1 s socket timeouts in a row take seconds; the run's bound only catches a hang.
        guard = threading.Timer(120, os.kill, (pid, signal.SIGCONT))  # with no timeout: wake it, end the run
        guard.start()
        try:
            with pytest.raises(LedgerUnavailable, match="the Redis ledger did not answer"):
                normalizer.run(max_seconds=100)
        finally:
            guard.cancel()
            os.kill(pid, signal.SIGCONT)
    drain(kafka_config, ns, redis_client, ledger, 20)  # the next normalizer reads the aborted batches again
    records = records_by_key(kafka_config, ns)
    assert {key: [value["data"] for _p, _o, value, _h in values] for key, values in records.items()} == {
        f"stripe.customer.{ident}": [data] for ident, data in customers.items()}
    created = sorted(key for key, _partition, event in events_list(kafka_config, ns) if event["type"] == "created")
    assert created == sorted(f"stripe.customer.{ident}" for ident in customers)
