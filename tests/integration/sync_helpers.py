"""Shared checks for the sync tests: read `<api>.changes`, fetch the simulator's ground truth."""

from __future__ import annotations

import contextlib
import time

import httpx
import orjson
from confluent_kafka import Consumer, TopicPartition

from apisync.apis.salesforce.source import OBJECTS as SALESFORCE_OBJECTS
from apisync.kafka.reader import read_topic, reader_config
from apisync.normalizer import open_normalizer, refetch_options
from apisync.settings import ApiSettings, SyncSettings
from devstack.airflow import SIMULATOR_TOKENS

# How long a wait for a condition may take before the run counts as stuck: generous, because a loaded
# 2-core machine is slow, and a condition that holds ends the wait at once.
PATIENCE_S = 180.0


def wait_for(condition, what: str, patience_s: float = PATIENCE_S, every_s: float = 0.25):
    """Poll `condition()` until it returns something truthy, and return that; fail naming `what` only
    once `patience_s` passed (a stuck run, not a slow one)."""
    deadline = time.monotonic() + patience_s
    while not (outcome := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {patience_s:.0f}s"
        time.sleep(every_s)
    return outcome


def settings_for(api: str, kafka_config: dict, redis_url: str, simulator_url: str, rate: float = 200,
                 page_size: int | None = None, **extra_options) -> SyncSettings:
    extra = {"repos": ["apisync/demo", "apisync/tools"], "page_size": page_size, **extra_options}
    return SyncSettings(kafka_config, redis_url,
                        ApiSettings(api, simulator_url, SIMULATOR_TOKENS[api], extra, rate_per_s=rate, burst=20))


def changes(kafka_config: dict, api: str) -> list[dict]:
    """Every committed observation on `<api>.changes`, in offset order per partition."""
    return [orjson.loads(m.value()) for m in settled_read(kafka_config, f"{api}.changes")]


def newest_per_key(observations: list[dict]) -> dict[str, dict]:
    """What the normalizer would keep: the highest version per key (later offset wins a tie)."""
    newest: dict[str, dict] = {}
    for obs in observations:
        current = newest.get(obs["key"])
        if current is None or obs["version"] >= current["version"]:
            newest[obs["key"]] = obs
    return newest


def normalize_until_consumed(api: str, kafka_config: dict, redis_client, expected: int,
                             settings: SyncSettings | None = None, patience_s: float = PATIENCE_S,
                             **options) -> int:
    """Run one normalizer until it consumed `expected` messages (or `patience_s` passed); returns the count.

    With `settings` it re-fetches thin webhooks and equal-version ties from the API, as in production.
    """
    with contextlib.ExitStack() as stack:
        if settings is not None:
            options.update(refetch_options(api, kafka_config, settings.redis_url, settings.api, stack))
        normalizer = open_normalizer(api, kafka_config, redis_client, poll_timeout=0.5, **options)
        stack.callback(normalizer.close)
        consumed, deadline = 0, time.monotonic() + patience_s
        while consumed < expected and time.monotonic() < deadline:
            consumed += normalizer.run(max_seconds=1.0).consumed
    return consumed


def truth(simulator_url: str, api: str) -> dict:
    return httpx.get(f"{simulator_url}/_admin/truth/{api}", timeout=30).json()


def comparable(api: str, collection: str, data: dict) -> dict:
    """Salesforce rows hold the declared fields only (SOQL has no SELECT *)."""
    if api == "salesforce":
        fields = SALESFORCE_OBJECTS[collection][1]
        return {f: data.get(f) for f in fields}
    return data


def differing(api: str, collection: str, observed: dict, truth_entry: dict) -> str:
    """Which fields differ and their versions, so a failure says what went stale (not just that it did)."""
    ours, theirs = comparable(api, collection, observed["data"]), comparable(api, collection, truth_entry["data"])
    fields = sorted(f for f in ours.keys() | theirs.keys() if ours.get(f) != theirs.get(f))
    return f" (fields {', '.join(fields)}; ours {observed.get('version')}, upstream {truth_entry.get('version')})"


def live_mismatches(api: str, collections, newest: dict[str, dict | None], ground: dict) -> list[str]:
    """Keys whose newest observation or record differs from the truth (missing, stale or wrongly deleted).

    `newest` maps record keys to an observation or a record value (None for a tombstone).
    """
    problems = []
    for collection in collections:
        for object_id, entry in ground["objects"].get(collection, {}).items():
            key = f"{api}.{collection}.{object_id}"
            obs = newest.get(key)
            if key not in newest:
                problems.append(f"missing {collection} {object_id}")
            elif obs is None or obs.get("deleted"):
                problems.append(f"{collection} {object_id} is live but observed deleted")
            elif comparable(api, collection, obs["data"]) != comparable(api, collection, entry["data"]):
                problems.append(f"stale {collection} {object_id}{differing(api, collection, obs, entry)}")
    return problems


def settled_read(kafka_config: dict, topic: str) -> list:
    """The topic read to its end once every transaction written to it is settled.

    A transaction's commit returns before its markers reach every partition, so a read_committed read
    right after a normalizer finished can stop short; it is whole once each partition's last stable
    offset has reached its high watermark (a transaction left open by a killed writer is aborted by the
    broker at its timeout, so this always comes).
    """
    wait_for(lambda: transactions_settled(kafka_config, topic), f"{topic}: every transaction settled")
    return read_topic(kafka_config, topic, timeout=60)


def transactions_settled(kafka_config: dict, topic: str) -> bool:
    """Whether no partition of `topic` has an open or unsettled transaction (last stable offset = high watermark)."""
    return _ends(kafka_config, topic, "read_committed") == _ends(kafka_config, topic, "read_uncommitted")


def _ends(kafka_config: dict, topic: str, isolation: str) -> list[int]:
    """Each partition's end as a consumer with `isolation` sees it: read_committed asks for the last
    stable offset, read_uncommitted for the high watermark."""
    consumer = Consumer(reader_config(kafka_config, isolation))
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions]
    finally:
        consumer.close()


def history(kafka_config: dict, topic: str) -> dict[str, list[tuple[dict | None, int, int]]]:
    """Per key, in offset order: (value or None for a tombstone, apisync-version header, partition)."""
    per_key: dict[str, list] = {}
    for msg in settled_read(kafka_config, topic):
        value = orjson.loads(msg.value()) if msg.value() is not None else None
        version = int(dict(msg.headers() or []).get("apisync-version", b"0"))
        per_key.setdefault(msg.key().decode(), []).append((value, version, msg.partition()))
    return per_key


def record_problems(api: str, collections, records: dict[str, list], ground: dict) -> list[str]:
    """The records topic (read to its end) against the truth: missing, stale, wrongly live, versions backwards."""
    problems = []
    for collection in collections:
        for object_id, entry in ground["objects"].get(collection, {}).items():
            past = records.get(f"{api}.{collection}.{object_id}")
            if not past or past[-1][0] is None:
                problems.append(f"{collection} {object_id} is live upstream but {'tombstoned' if past else 'missing'}")
            elif comparable(api, collection, past[-1][0]["data"]) != comparable(api, collection, entry["data"]):
                problems.append(f"stale {collection} {object_id}{differing(api, collection, past[-1][0], entry)}")
        for object_id in ground["deleted"].get(collection, []):
            past = records.get(f"{api}.{collection}.{object_id}")
            if past and past[-1][0] is not None:
                problems.append(f"{collection} {object_id} is deleted upstream but live in records")
    for key, past in records.items():
        versions = [version for _value, version, _partition in past]
        if versions != sorted(versions):
            problems.append(f"{key} went backwards: {versions}")
    return problems


def duplicate_event_ids(events: dict[str, list]) -> list[str]:
    """Event ids that appear more than once on the events topic."""
    seen, duplicates = set(), []
    for past in events.values():
        for value, _version, _partition in past:
            if value["event_id"] in seen:
                duplicates.append(value["event_id"])
            seen.add(value["event_id"])
    return duplicates


def normalize_until_idle(api: str, kafka_config: dict, redis_url: str, settings: SyncSettings | None = None,
                         patience_s: float = PATIENCE_S) -> int:
    """Run one normalizer until it owns partitions and has read every one to its end (what is committed
    there now); returns how many messages it consumed. Call it once the writers are done."""
    import redis

    with contextlib.ExitStack() as stack:
        options = refetch_options(api, kafka_config, redis_url, settings.api, stack) if settings else {}
        normalizer = open_normalizer(api, kafka_config, redis.Redis.from_url(redis_url), poll_timeout=0.5, **options)
        stack.callback(normalizer.close)
        consumed, deadline = 0, time.monotonic() + patience_s
        # End-of-partition notices decide "caught up", not a quiet spell: a loaded machine can take
        # seconds to hand out partitions or answer a first fetch without anything being done.
        while not normalizer.caught_up():
            assert time.monotonic() < deadline, f"{api}: the normalizer did not catch up within {patience_s:.0f}s"
            consumed += normalizer.run(max_seconds=1.0, stop_when_idle=True).consumed
    return consumed


FAULT_ROWS: list[tuple] = []  # (scenario, injected, lost, stale, backwards, duplicate ids, secrets): the suite's table


def fault_row(scenario: str, injected: str, problems: list[str], duplicates: list[str], secrets: int) -> tuple:
    """One row of the fault table from a truth comparison."""
    lost = sum(1 for p in problems if "missing" in p or "tombstoned" in p)
    stale = sum(1 for p in problems if p.startswith("stale") or "live in records" in p)
    backwards = sum(1 for p in problems if "went backwards" in p)
    row = (scenario, injected, lost, stale, backwards, len(duplicates), secrets)
    FAULT_ROWS.append(row)
    return row


def normalize_all_and_check(api: str, kafka_config: dict, redis_url: str, settings: SyncSettings,
                            collections, simulator_url: str) -> dict[str, list]:
    """Normalize everything on `<api>.changes` (re-fetching like production), then assert the records equal
    the simulator's truth and no event id repeats; returns the events topic's history."""
    import redis

    stored = len(settled_read(kafka_config, f"{api}.changes"))
    consumed = 0
    for _ in range(3):  # a fresh broker's group coordinator can take a while to hand out partitions
        consumed += normalize_until_consumed(api, kafka_config, redis.Redis.from_url(redis_url), stored - consumed,
                                             settings=settings)
        if consumed >= stored:
            break
    assert consumed == stored
    records = history(kafka_config, f"{api}.records")
    assert record_problems(api, collections, records, truth(simulator_url, api)) == []
    events = history(kafka_config, f"{api}.events")
    assert duplicate_event_ids(events) == []
    return events


@contextlib.contextmanager
def namespaced_receiver(api: str, kafka_config: dict, **webhook_settings):
    """The real webhook receiver under uvicorn, writing to a fresh topic namespace; yields (namespace, URL)."""
    import uuid

    from apisync.kafka.admin import admin_client, ensure
    from apisync.kafka.producer import Producer
    from apisync.kafka.topics import Layout, TopicSpec, api_topics
    from apisync.registry import rule_event_types
    from apisync.webhooks.receiver import WebhookSettings, create_app

    ns = f"t{uuid.uuid4().hex[:8]}."
    specs = [TopicSpec(ns + s.name, s.partitions, s.replication_factor, s.config)
             for s in api_topics(api, Layout(partitions=3), rule_event_types(api))]
    ensure(admin_client(kafka_config), specs)
    settings = WebhookSettings(topic_prefix=ns, **webhook_settings)
    with served(create_app(settings, Producer(kafka_config))) as base:
        yield ns, base


@contextlib.contextmanager
def served(app, timeout: float = 120.0):
    """Serve an ASGI app with uvicorn in a thread on a free loopback port; yields its base URL."""
    import threading

    import uvicorn

    from devstack.process import free_port

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the app did not start serving"
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(10)


def wait_until_webhooks_delivered(sim: httpx.Client, api: str = "stripe") -> dict:
    """Until every webhook the simulator queued for `api` since its last reset is delivered (or given up
    after its attempts); returns the delivery counts. The simulator's own count decides, not a quiet spell:
    a retry's backoff or a slow receiver can pause deliveries for longer than any fixed spell."""
    def finished():
        stats = sim.get("/_admin/stats").json()
        return stats["webhooks"].get(api, {"delivered": 0}) if stats["webhooks_pending"].get(api, 0) == 0 else None

    return wait_for(finished, f"the simulator's {api} webhooks delivered")


STRIPE_AUTH = {"Authorization": f"Bearer {SIMULATOR_TOKENS['stripe']}"}


def stripe_events(sim: httpx.Client) -> list[dict]:
    """Every event the simulated Stripe lists now, newest first."""
    events, after = [], None
    while True:
        params = {"limit": 100, **({"starting_after": after} if after else {})}
        page = sim.get("/v1/events", params=params, headers=STRIPE_AUTH).json()
        events += page["data"]
        if not page["has_more"]:
            return events
        after = page["data"][-1]["id"]


def settle_stripe_events(sim: httpx.Client) -> None:
    """Wait until every event created so far is visible in /v1/events (the simulator lags like Stripe)."""
    # Each event's delay is drawn from [0, lag] on the simulator's clock: once `lag` has passed, all are visible.
    time.sleep(float(sim.get("/_admin/config").json()["stripe_events_lag_s"]) + 1.0)
