"""The fault suite (`make test-faults`): SIGKILL at named points, a zombie normalizer, a Redis that loses
the ledger mid-run, API storms. Every scenario ends the same way: restart, catch up, then compare the
records and events topics with the simulator's truth and print one row of the "faults survived" table.

Real processes (`python -m apisync ...`), real Kafka, Redis and simulator; the crash points are armed
with `APISYNC_FAILPOINTS` (see `apisync.failpoints`), so each kill lands exactly between two effects.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
import redis
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from sync_helpers import (
    duplicate_event_ids,
    fault_row,
    history,
    normalize_until_idle,
    record_problems,
    served,
    settings_for,
    settle_stripe_events,
    settled_read,
    stripe_events,
    truth,
    wait_for,
    wait_until_webhooks_delivered,
)

from api_simulator.signing import stripe_signature
from apisync.kafka.admin import admin_client, ensure
from apisync.kafka.producer import Outgoing, Producer
from apisync.kafka.reader import read_topic
from apisync.kafka.topics import Layout, declared_topics
from apisync.webhooks.receiver import WebhookSettings, create_app
from devstack.airflow import SIMULATOR_TOKENS
from devstack.kafka import KafkaCluster
from devstack.process import free_port

pytestmark = [pytest.mark.integration, pytest.mark.faults]
ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ("customer", "invoice")
STORM_COLLECTIONS = {"stripe": COLLECTIONS, "github": ("issue", "issue_comment")}
SECRETS = (SIMULATOR_TOKENS["stripe"], SIMULATOR_TOKENS["github"])
KILLED = -signal.SIGKILL


@dataclass(frozen=True, slots=True)
class KillPoint:
    """Where a process of one job is killed: a failpoint name and which pass through it."""

    label: str
    job: str  # backfill | incremental | normalize | reconcile | rebuild
    failpoint: str  # name@pass

    @property
    def armed(self) -> str:
        name, _, nth = self.failpoint.partition("@")
        return f"{name}=kill@{nth or 1}"


KILL_POINTS = [
    KillPoint("backfill, before the start marker commits", "backfill", "page.before_produce@1"),
    KillPoint("backfill, before a page is produced", "backfill", "page.before_produce@3"),
    KillPoint("backfill, page produced, not committed", "backfill", "page.after_produce@2"),
    KillPoint("backfill, right after a page committed", "backfill", "page.after_commit@2"),
    KillPoint("backfill, between pages of the second collection", "backfill", "page.after_commit@6"),
    KillPoint("backfill, last page + hand-over produced, not committed", "backfill", "page.after_produce@4"),
    KillPoint("incremental, before the first page is produced", "incremental", "page.before_produce@1"),
    KillPoint("incremental, page produced, not committed", "incremental", "page.after_produce@1"),
    KillPoint("incremental, between collections", "incremental", "page.after_commit@1"),
    KillPoint("incremental, second collection produced, not committed", "incremental", "page.after_produce@2"),
    KillPoint("normalizer, right after it claimed its partitions", "normalize", "normalizer.claimed@1"),
    KillPoint("normalizer, batch consumed, before the fence", "normalize", "normalizer.consumed@1"),
    KillPoint("normalizer, fenced and produced, before the offsets", "normalize", "normalizer.fenced@1"),
    KillPoint("normalizer, produced, before the commit", "normalize", "normalizer.produced@1"),
    KillPoint("normalizer, right after the commit", "normalize", "normalizer.committed@1"),
    KillPoint("normalizer, second batch, fenced and produced, before the offsets", "normalize", "normalizer.fenced@2"),
    KillPoint("normalizer, second batch, produced, before the commit", "normalize", "normalizer.produced@2"),
    KillPoint("reconcile, deletes confirmed, none sent", "reconcile", "reconcile.confirmed@1"),
    KillPoint("reconcile, deletes queued, before the flush", "reconcile", "reconcile.sent@1"),
    KillPoint("ledger rebuild, halfway through", "rebuild", "ledger.rebuilding@200"),
    KillPoint("ledger rebuild, at its first record", "rebuild", "ledger.rebuilding@1"),
]


@pytest.fixture
def env(kafka_config, redis_url, simulator_url):
    """What the apisync CLI needs to reach the stack (the token only through the environment)."""
    return {**os.environ, "PYTHONPATH": f"{ROOT / 'include'}{os.pathsep}{ROOT / 'plugins'}",
            "APISYNC_KAFKA_BOOTSTRAP": kafka_config["bootstrap.servers"], "APISYNC_REDIS_URL": redis_url,
            "APISYNC_STRIPE_URL": simulator_url, "APISYNC_STRIPE_TOKEN": SIMULATOR_TOKENS["stripe"],
            "APISYNC_STRIPE_RATE": "200", "APISYNC_GITHUB_URL": simulator_url,
            "APISYNC_GITHUB_TOKEN": SIMULATOR_TOKENS["github"], "APISYNC_GITHUB_REPO": "apisync/demo,apisync/tools",
            "APISYNC_GITHUB_RATE": "200"}


class Stack:
    """One scenario's view of the stack: run jobs as processes, catch up, compare with the truth."""

    def __init__(self, env: dict, kafka_config: dict, redis_url: str, simulator_url: str,
                 api: str = "stripe") -> None:
        self.env, self.kafka_config, self.redis_url = env, kafka_config, redis_url
        self.sim = httpx.Client(base_url=simulator_url, timeout=30)
        self.api, self.collections = api, STORM_COLLECTIONS[api]
        self.settings = settings_for(api, kafka_config, redis_url, simulator_url)
        self.output: list[str] = []

    def on(self, api: str) -> Stack:
        """The same stack, driving another API (the storm scenarios)."""
        return Stack(self.env, self.kafka_config, self.redis_url, str(self.sim.base_url), api)

    def run(self, args: list[str], failpoints: str = "", expect: int = 0) -> None:
        """Run `python -m apisync <args>`; assert how it ended (KILLED proves the failpoint was reached)."""
        env = {**self.env, "APISYNC_FAILPOINTS": failpoints}
        done = subprocess.run([sys.executable, "-m", "apisync", *args], env=env, capture_output=True, text=True,
                              timeout=240)
        self.output.append(done.stdout + done.stderr)
        assert done.returncode == expect, f"{args} ended with {done.returncode}: {done.stderr[-2000:]}"

    def job(self, job: str, failpoints: str = "", expect: int = 0) -> None:
        api, collections = self.api, self.collections
        commands = {"backfill": ["sync", "backfill", api, *collections],
                    "incremental": ["sync", "incremental", api, *collections],
                    # batches of 200: the second-batch kill points need more than one batch
                    "normalize": ["normalize", api, "--max-seconds", "20", "--batch-size", "200"],
                    "reconcile": ["sync", "reconcile", api, *collections, "--apply"],
                    "rebuild": ["normalize", api, "--max-seconds", "10"]}
        self.run(commands[job], failpoints, expect)

    def mutate(self, count: int, kinds: list[str]) -> list[dict]:
        mutations = []
        for collection in self.collections:
            reply = self.sim.post("/_admin/mutate", json={"api": self.api, "collection": collection,
                                                          "count": count, "kinds": kinds})
            mutations += reply.json()["mutations"]
        return mutations

    def settle(self) -> None:
        if self.api == "stripe":
            settle_stripe_events(self.sim)
        else:
            time.sleep(1.1)  # whole-second versions: let the mutations' second close

    def catch_up(self) -> None:
        normalize_until_idle(self.api, self.kafka_config, self.redis_url, self.settings)

    def verdict(self, scenario: str, injected: str) -> tuple:
        problems = record_problems(self.api, self.collections, history(self.kafka_config, f"{self.api}.records"),
                                   truth(self.settings.api.base_url, self.api))
        duplicates = duplicate_event_ids(history(self.kafka_config, f"{self.api}.events"))
        secrets = sum(text.count(secret) for text in self.output for secret in SECRETS)
        row = fault_row(scenario, injected, problems, duplicates, secrets)
        assert row[2:] == (0, 0, 0, 0, 0), (row, problems[:10], duplicates[:5])
        return row


@pytest.fixture
def stack(clean_slate, env, kafka_config, redis_url, simulator_url):
    clean_slate(seed=41, objects=250)  # 3 pages of 100 per collection
    return Stack(env, kafka_config, redis_url, simulator_url)


@pytest.mark.parametrize("point", KILL_POINTS, ids=[f"{p.job}-{p.failpoint.replace('@', '-')}" for p in KILL_POINTS])
def test_sigkill_at_a_named_point_loses_nothing(stack, point):
    armed = lambda job: (point.armed, KILLED) if point.job == job else ("", 0)  # noqa: E731
    _killed_then_resumed(stack, "backfill", *armed("backfill"))
    stack.mutate(10, ["create", "update", "delete"])
    stack.settle()
    _killed_then_resumed(stack, "incremental", *armed("incremental"))
    if point.job == "normalize":
        stack.job("normalize", point.armed, KILLED)
    stack.catch_up()
    if point.job == "reconcile":
        # Deletes polling cannot see any more (no poll after them): reconcile must find them.
        stack.mutate(1, ["delete"])
        _killed_then_resumed(stack, "reconcile", point.armed, KILLED)
        stack.catch_up()
    if point.job == "rebuild":
        ledger = redis.Redis.from_url(stack.redis_url)
        ledger.delete(*ledger.keys("apisync:ledger:*"))  # Redis lost the ledger
        stack.mutate(5, ["update"])
        stack.settle()
        stack.job("incremental")
        stack.job("rebuild", point.armed, KILLED)  # the rebuild dies halfway; the marker stays absent
        stack.catch_up()  # the next normalizer rebuilds (after the dead one's lock expired) and goes on
    stack.verdict(f"kill: {point.label}", f"SIGKILL at {point.failpoint} ({point.job})")


def test_a_zombie_normalizer_cannot_roll_its_successor_back(stack, clean_slate):
    clean_slate(seed=43, objects=6)  # few objects: every round of updates touches the same keys again
    stack.job("backfill")
    _poll_a_round(stack)
    zombie = subprocess.Popen([sys.executable, "-m", "apisync", "normalize", "stripe", "--max-seconds", "90",
                               "--instance", "zombie"],
                              env={**stack.env, "APISYNC_FAILPOINTS": "normalizer.consumed=stop@2"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # The zombie-to-be commits everything so far (or, had a first fetch split it, stops at the rest).
        wait_for(lambda: _stopped(zombie.pid) or _group_consumed_everything(stack, "stripe.changes"),
                 "the zombie's first batch committed")
        _poll_a_round(stack)  # its second batch: it stops right after consuming it, before the fence
        wait_for(lambda: _stopped(zombie.pid), "the zombie reaching its failpoint")
        # Past session.timeout.ms (10 s) the group takes the zombie's partitions away; were it slower,
        # the successor's join would just wait for it (catch_up waits until the successor owns them all).
        time.sleep(12)
        _poll_a_round(stack)
        stack.catch_up()  # the successor claims the partitions (new owner epochs) and commits both rounds
        os.kill(zombie.pid, signal.SIGCONT)  # the zombie wakes with its old batch and old positions
        out, _ = zombie.communicate(timeout=150)
        stack.output.append(out)
    finally:
        if zombie.poll() is None:
            zombie.kill()
    _replay_old_observations(stack)  # had the zombie rolled the ledger back, the newest would count twice
    stack.catch_up()
    stack.verdict("zombie normalizer", "SIGSTOP before the fence past the session timeout, SIGCONT after a successor")


def test_redis_losing_the_ledger_mid_run_is_rebuilt_before_anything_is_accepted(stack):
    stack.job("backfill")
    stack.mutate(20, ["update"])
    stack.settle()
    stack.job("incremental")
    normalizer = subprocess.Popen([sys.executable, "-m", "apisync", "normalize", "stripe", "--max-seconds", "45"],
                                  env={**stack.env, "APISYNC_FAILPOINTS": ""}, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_records(stack, minimum=400)  # it is running and has written most of the backlog
        redis.Redis.from_url(stack.redis_url).flushdb()  # Redis restarted without its data, under its feet
        _replay_old_observations(stack)  # every observation again: none may change a record
        out, _ = normalizer.communicate(timeout=180)
    finally:
        if normalizer.poll() is None:
            normalizer.kill()
    stack.output.append(out)
    assert normalizer.returncode == 0, out[-2000:]
    assert "rebuilding from stripe.records" in out  # noticed by the running normalizer, not by a restart
    stack.catch_up()
    stack.verdict("Redis loses the ledger mid-run", "FLUSHDB under a running normalizer, every observation replayed")


def _group_consumed_everything(stack: Stack, topic: str) -> bool:
    """Whether the normalizer group's committed offsets are past every message now on `topic`."""
    ends: dict[int, int] = {}
    for msg in read_topic(stack.kafka_config, topic, timeout=60):
        ends[msg.partition()] = msg.offset() + 1
    consumer = Consumer({**stack.kafka_config, "group.id": f"apisync.normalizer.{stack.api}"})  # never joins
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in ends], timeout=30)
    finally:
        consumer.close()
    return all(tp.offset >= ends[tp.partition] for tp in committed)


def _wait_for_records(stack: Stack, minimum: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while len(read_topic(stack.kafka_config, "stripe.records", timeout=60)) < minimum:
        assert time.monotonic() < deadline, "the normalizer wrote no records"
        time.sleep(1)


def test_a_broker_restart_mid_run_loses_nothing(stack, kafka_cluster):
    if kafka_cluster is None:
        pytest.skip("needs the suite's own broker (APISYNC_KAFKA_BOOTSTRAP points at someone else's)")
    _backfill_across_an_outage(stack, lambda: 1, kafka_cluster, down_s=5)
    stack.verdict("Kafka broker restart mid-backfill", "SIGKILL of the broker for 5 s, then a restart")


@pytest.mark.parametrize("point", ["webhook.verified@4", "webhook.acked@4"])
def test_sigkill_of_the_webhook_receiver_loses_no_delivery(stack, point):
    """Webhooks are the only path here (no polling after the backfill): the provider's retries must do."""
    stack.job("backfill")
    stack.catch_up()
    port, secret = free_port(), "whsec_fault_receiver"
    name, _, nth = point.partition("@")
    env = {**stack.env, "APISYNC_WEBHOOK_SECRETS_STRIPE": secret}
    receiver = _start_receiver(env, port, f"{name}=kill@{nth}")
    stack.sim.post("/_admin/config", json={
        "webhooks": {"stripe": {"url": f"http://127.0.0.1:{port}/webhooks/stripe", "secrets": [secret]}},
        "webhook_chaos": {"max_attempts": 30, "retry_base_s": 0.2}}).raise_for_status()
    try:
        stack.mutate(10, ["create", "update", "delete"])
        assert receiver.wait(timeout=60) == KILLED  # died at the failpoint, mid-delivery
        stack.output.append(receiver.stdout.read())
        receiver = _start_receiver(env, port, "")  # back; the simulator retries what was not answered
        wait_until_webhooks_delivered(stack.sim)
    finally:
        stack.sim.post("/_admin/config", json={"webhooks": {"stripe": {"url": None}}})
        receiver.kill()
        stack.output.append(receiver.communicate()[0])
    stack.catch_up()
    stack.verdict(f"kill: webhook receiver at {name}", f"SIGKILL at {point} (receiver)")


def _start_receiver(env: dict, port: int, failpoints: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "apisync.webhooks", "--port", str(port)],
                               env={**env, "APISYNC_FAILPOINTS": failpoints}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120  # a Python process importing FastAPI and Kafka: slow on a loaded machine
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/webhooks/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("the webhook receiver did not start")


def test_hostile_webhooks_are_rejected_or_absorbed(stack):
    """Forged, replayed, oversized, wrong type, 1,000 duplicates and a flood: the good ones become records."""
    stack.job("backfill")
    began = stack.sim.get("/_admin/clock").json()["now"]
    stack.mutate(25, ["update"])  # webhooks off: the test delivers the events itself
    stack.settle()
    events = [e for e in stripe_events(stack.sim) if e["created"] >= int(began)]
    secret = "whsec_fault_suite"
    settings = WebhookSettings(secrets={"stripe": (secret,)}, max_body_bytes=64_000)
    now = int(time.time())
    good = [orjson.dumps(e) for e in events]
    bad = [(good[0], {"Stripe-Signature": stripe_signature(good[0], ["whsec_forged"], now)}, 401),
           (good[0], {"Stripe-Signature": stripe_signature(good[0], [secret], now - 3600)}, 401),  # replayed
           (b"{" + b" " * 70_000 + b"}", {"Stripe-Signature": stripe_signature(b"{}", [secret], now)}, 413),
           (b"not json", {"Stripe-Signature": stripe_signature(b"not json", [secret], now)}, 200)]
    # 1,000 deliveries: every event many times, shuffled, from 10 threads at once (a flood)
    deliveries = [body for body in good for _ in range(max(1, 1000 // len(good)))]
    random.Random(7).shuffle(deliveries)

    def deliver(client: httpx.Client, url: str, body: bytes) -> int:
        signature = stripe_signature(body, [secret], int(time.time()))
        return client.post(url, content=body, headers={"Stripe-Signature": signature,
                                                       "Content-Type": "application/json"}).status_code

    with served(create_app(settings, Producer(stack.kafka_config))) as base, httpx.Client(timeout=30) as client:
        url = f"{base}/webhooks/stripe"
        answers = [client.post(url, content=body, headers={**h, "Content-Type": "text/plain"}).status_code
                   for body, h, _expected in bad]
        with ThreadPoolExecutor(10) as pool:
            statuses = list(pool.map(lambda body: deliver(client, url, body), deliveries))
    assert answers == [expected for *_, expected in bad], answers  # forged, replayed, oversized; "not json" kept
    assert set(statuses) == {200}, sorted(set(statuses))
    accepted = len(read_topic(stack.kafka_config, "stripe.webhooks", timeout=60))
    assert accepted == len(deliveries) + 1  # the rejected ones produced nothing; "not json" is kept for the DLQ
    stack.catch_up()  # the unparseable body goes to the dead-letter topic, the rest become records
    stack.verdict("hostile webhooks", f"3 rejected kinds, {len(deliveries)} duplicated deliveries at once")


@pytest.fixture(scope="module")
def replicated_cluster(tmp_path_factory):
    """Three brokers; the apisync topics with replication factor 3 and min ISR 2."""
    cluster = KafkaCluster(tmp_path_factory.mktemp("rf3"), size=3, heap="384m").start(timeout=180)
    config = {"bootstrap.servers": cluster.bootstrap}
    ensure(admin_client(config), declared_topics(Layout(replication_factor=3)))
    yield cluster
    cluster.stop()


def test_a_partition_leader_killed_on_three_brokers_loses_nothing(clean_slate, replicated_cluster, env, redis_url,
                                                                   simulator_url):
    clean_slate(seed=47, objects=250)  # Redis and the simulator; the topics live on the three brokers
    config = {"bootstrap.servers": replicated_cluster.bootstrap}
    stack = Stack({**env, "APISYNC_KAFKA_BOOTSTRAP": replicated_cluster.bootstrap}, config, redis_url, simulator_url)

    def leader() -> int:
        topic = AdminClient(config).list_topics("stripe.changes", timeout=30).topics["stripe.changes"]
        return topic.partitions[0].leader

    killed = _backfill_across_an_outage(stack, leader, replicated_cluster, down_s=8)
    stack.verdict("leader of stripe.changes[0] killed, 3 brokers, RF 3", f"SIGKILL of broker {killed} for 8 s")


def _backfill_across_an_outage(stack: Stack, node: Callable[[], int], cluster: KafkaCluster, down_s: float) -> int:
    """A slowed backfill loses broker `node()` for `down_s` seconds mid-run; then everything catches up."""
    stack.sim.post("/_admin/faults", json={"kind": "slow", "api": "stripe", "path_prefix": "/v1/",
                                           "delay_s": 0.5, "count": None})
    backfill = subprocess.Popen([sys.executable, "-m", "apisync", "sync", "backfill", "stripe", *COLLECTIONS],
                                env={**stack.env, "APISYNC_FAILPOINTS": ""}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    # A page or two in (the slow fault keeps the rest of the walk running for seconds after that).
    wait_for(lambda: read_topic(stack.kafka_config, "stripe.changes", timeout=60), "the backfill's first page")
    victim = node()
    cluster.stop_node(victim, kill=True)
    time.sleep(down_s)
    cluster.start_node(victim)
    out, _ = backfill.communicate(timeout=240)
    stack.output.append(out)
    stack.sim.delete("/_admin/faults")
    if backfill.returncode != 0:  # the broker was away longer than the producer waits: run it again
        stack.job("backfill")
    stack.mutate(10, ["create", "update", "delete"])
    stack.settle()
    stack.job("incremental")
    stack.catch_up()
    return victim


STORMS = [
    ("stripe", "5xx burst longer than one retry budget", {"kind": "http_500", "status": 503, "count": 8}),
    ("stripe", "timeouts", {"kind": "timeout", "delay_s": 2, "count": 2}),
    ("stripe", "connection resets", {"kind": "reset", "count": 4}),
    ("stripe", "malformed JSON pages", {"kind": "malformed_json", "count": 3}),
    ("stripe", "truncated pages", {"kind": "truncated", "count": 3}),
    ("stripe", "429 storm without Retry-After (Stripe)", {"kind": "rate_limited", "count": 6}),
    ("github", "429 storm with Retry-After (GitHub secondary limit)",
     {"kind": "rate_limited", "limit": "secondary", "retry_after_s": 2, "count": 4}),
    ("github", "403 quota exhausted until x-ratelimit-reset (GitHub primary limit)",
     {"kind": "rate_limited", "limit": "primary", "retry_after_s": 3, "count": 2}),
]
STORM_PATHS = {"stripe": "/v1/customers", "github": "/repos/"}


@pytest.mark.parametrize(("api", "label", "fault"), STORMS, ids=[label for _, label, _ in STORMS])
def test_api_storms_end_with_the_truth(stack, api, label, fault):
    stack = stack.on(api)
    injected = {"api": api, "path_prefix": STORM_PATHS[api], **fault}
    stack.sim.post("/_admin/faults", json=injected).raise_for_status()  # a refused spec injects nothing
    first = subprocess.run([sys.executable, "-m", "apisync", "sync", "backfill", api, *stack.collections],
                           env={**stack.env, "APISYNC_FAILPOINTS": ""}, capture_output=True, text=True, timeout=240)
    stack.output.append(first.stdout + first.stderr)
    left = stack.sim.get("/_admin/faults").json()["faults"]
    stack.sim.delete("/_admin/faults")
    assert not left or first.returncode != 0, f"the backfill ended well before the storm did: {left}"
    if first.returncode != 0:  # the storm outlasted the retries: the operator (Airflow) runs it again
        assert "Traceback" not in first.stderr.splitlines()[-1], first.stderr[-500:]
        stack.job("backfill")
    # GitHub deletes reach records through webhooks and reconcile, not polls: storms mutate without them
    stack.mutate(10, ["create", "update", "delete"] if api == "stripe" else ["create", "update"])
    stack.settle()
    stack.job("incremental")
    stack.catch_up()
    if "status" in fault:
        kind = f"HTTP {fault['status']}"
    else:
        kind = f"{fault['kind']} ({fault['limit']})" if "limit" in fault else fault["kind"]
    stack.verdict(f"API storm: {label}", f"{kind} x{fault['count']} on {api} {STORM_PATHS[api]}")


def _poll_a_round(stack: Stack) -> None:
    stack.mutate(6, ["update"])
    stack.settle()
    stack.job("incremental")


def _replay_old_observations(stack: Stack) -> None:
    """Every observation so far arrives again (a replayed page, a late webhook retry): none may change a record."""
    producer = Producer(stack.kafka_config)
    for msg in settled_read(stack.kafka_config, "stripe.changes"):
        producer.send(Outgoing("stripe.changes", msg.key().decode(), msg.value()))
    producer.flush()
    producer.close()


def _killed_then_resumed(stack: Stack, job: str, armed: str, expect: int) -> None:
    stack.job(job, armed, expect)
    if expect == KILLED:
        stack.job(job)


def _stopped(pid: int) -> bool:
    """Whether the process is stopped (SIGSTOP, state T)."""
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "T"
