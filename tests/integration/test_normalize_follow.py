"""`python -m apisync normalize stripe --follow` as a real process: a signed webhook becomes a record while
it runs, SIGTERM stops it cleanly (exit 0), and what arrives while it is stopped is normalized after a restart.

Real Kafka, Redis, the simulator over HTTP and the real receiver app: the simulator signs and delivers
the webhooks, the receiver verifies them and writes `stripe.webhooks`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
from sync_helpers import served, settled_read, transactions_settled, wait_for

from apisync.kafka.producer import Producer
from apisync.kafka.reader import read_topic
from apisync.webhooks.receiver import WebhookSettings, create_app
from devstack.airflow import SIMULATOR_TOKENS

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_follow_secret"
# Generous: the process joins the group and the simulator delivers within seconds, but a loaded 2-core
# machine can stretch that many times over; only a stuck run reaches it.
DEADLINE_S = 120.0


@pytest.fixture
def stack(clean_slate, kafka_config, redis_url, simulator_url):
    """Fresh topics and ledger, the receiver serving, the simulator's Stripe webhooks pointed at it."""
    clean_slate(seed=11, objects=5)
    _wait_for_leaders(kafka_config, ["stripe.records", "stripe.changes", "stripe.webhooks"])
    sim = httpx.Client(base_url=simulator_url, timeout=10)
    settings = WebhookSettings(secrets={"stripe": (SECRET,)})
    with served(create_app(settings, Producer(kafka_config))) as base:
        sim.post("/_admin/config", json={"webhooks": {"stripe": {"url": f"{base}/webhooks/stripe",
                                                                 "secrets": [SECRET]}}}).raise_for_status()
        try:
            yield sim
        finally:
            sim.post("/_admin/config", json={"webhooks": {"stripe": {"url": None}}})


def _wait_for_leaders(kafka_config: dict, topics: list[str]) -> None:
    """Freshly recreated topics answer "not leader" for a moment; the follower's start should not race that."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({**kafka_config, "group.id": "follow-test-probe"})
    try:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            try:
                for topic in topics:
                    for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                        consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                return
            except KafkaException:
                time.sleep(0.5)
    finally:
        consumer.close()


def _env(kafka_config: dict, redis_url: str, simulator_url: str) -> dict:
    return {**os.environ, "PYTHONPATH": f"{ROOT / 'include'}{os.pathsep}{ROOT / 'plugins'}",
            "APISYNC_KAFKA_BOOTSTRAP": kafka_config["bootstrap.servers"], "APISYNC_REDIS_URL": redis_url,
            "APISYNC_STRIPE_URL": simulator_url, "APISYNC_STRIPE_TOKEN": SIMULATOR_TOKENS["stripe"]}


def _start(env: dict, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "apisync", "normalize", "stripe", "--follow",
                                 "--log-every", "2", "--heartbeat", str(log.with_suffix(".alive"))],
                                env=env, stdout=out, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen, log: Path) -> int:
    """SIGTERM, then the exit code (a process still alive after DEADLINE_S is killed and fails the test)."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"the follower ignored SIGTERM for {DEADLINE_S:.0f} s:\n{log.read_text()[-3000:]}")


def _mutate(sim: httpx.Client) -> str:
    """Update one customer upstream (the simulator signs and sends its webhook); returns the record key."""
    done = sim.post("/_admin/mutate", json={"api": "stripe", "count": 1, "kinds": ["update"],
                                            "collection": "customer"}).json()["mutations"]
    assert len(done) == 1
    return f"stripe.customer.{done[0]['id']}"


def _records(kafka_config: dict) -> dict[str, dict | None]:
    """The newest value per key on stripe.records (None for a tombstone)."""
    newest = {}
    for msg in read_topic(kafka_config, "stripe.records", timeout=30):
        newest[msg.key().decode()] = orjson.loads(msg.value()) if msg.value() is not None else None
    return newest


def _matches_truth(kafka_config: dict, sim: httpx.Client, key: str) -> dict | None:
    """The record of `key` if it equals the simulator's object (data, and a version at least the truth's: a
    customer changed through a sub-resource, e.g. a discount, is re-fetched, versioned by the response's Date
    − 1 ms), else None."""
    expected = sim.get("/_admin/truth/stripe").json()["objects"]["customer"][key.split(".", 2)[2]]
    record = _records(kafka_config).get(key)
    if record and record["data"] == expected["data"] and record["version"] >= expected["version"]:
        return record
    return None


def _wait_for_truth(kafka_config: dict, sim: httpx.Client, key: str, process: subprocess.Popen, log: Path) -> dict:
    """The record of `key` once it equals the simulator's object, within the deadline."""
    deadline, record = time.monotonic() + DEADLINE_S, None
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the follower exited with {process.poll()}:\n{log.read_text()[-3000:]}"
        if record := _matches_truth(kafka_config, sim, key):
            return record
        time.sleep(0.5)
    pytest.fail(f"{key} did not reach stripe.records within {DEADLINE_S:.0f}s:\n"
                f"{log.read_text()[-3000:]}")


def _delivered(sim: httpx.Client, at_least: int) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if sim.get("/_admin/stats").json()["webhooks"].get("stripe", {}).get("delivered", 0) >= at_least:
            return
        time.sleep(0.25)
    pytest.fail(f"the simulator delivered fewer than {at_least} stripe webhooks")


def test_follow_normalizes_webhooks_until_sigterm_and_loses_nothing_across_a_restart(
        stack, kafka_config, redis_url, simulator_url, tmp_path):
    sim, log, env = stack, tmp_path / "follow.log", _env(kafka_config, redis_url, simulator_url)
    follower = _start(env, log)
    try:
        first = _mutate(sim)
        record = _wait_for_truth(kafka_config, sim, first, follower, log)
        assert record["source"] == "webhook"
    finally:
        code = _stop(follower, log)
    output = log.read_text()
    assert code == 0, output[-3000:]
    assert "received SIGTERM" in output and "normalizer stripe: stopped" in output
    assert "normalizer stripe: last " in output  # the periodic progress line
    assert log.with_suffix(".alive").exists()  # the container healthcheck's heartbeat
    assert "Traceback" not in output

    # Sent while nothing normalizes: it waits in stripe.webhooks for the restarted follower.
    second = _mutate(sim)
    _delivered(sim, at_least=2)
    assert not _matches_truth(kafka_config, sim, second)  # nothing normalized it yet
    follower = _start(env, log)
    try:
        _wait_for_truth(kafka_config, sim, second, follower, log)
    finally:
        assert _stop(follower, log) == 0, log.read_text()[-3000:]
    events = [orjson.loads(m.value()) for m in settled_read(kafka_config, "stripe.events")]
    assert {e["key"] for e in events} >= {first, second}
    assert len({e["event_id"] for e in events}) == len(events)  # the restart re-emitted nothing


def test_until_idle_normalizes_what_is_waiting_and_then_exits(stack, kafka_config, redis_url, simulator_url):
    """What an asset-triggered run does: everything committed so far, then exit 0 by itself."""
    sim = stack
    keys = {_mutate(sim) for _ in range(3)}
    _delivered(sim, at_least=3)
    done = subprocess.run([sys.executable, "-m", "apisync", "normalize", "stripe", "--until-idle"],
                          env=_env(kafka_config, redis_url, simulator_url), capture_output=True, text=True,
                          timeout=DEADLINE_S * 2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "consumed=" in done.stdout and "consumed=0," not in done.stdout, done.stdout
    # a commit returns before its markers reach every partition: read once they have
    wait_for(lambda: transactions_settled(kafka_config, "stripe.records"), "stripe.records settled", DEADLINE_S)
    assert all(_matches_truth(kafka_config, sim, key) for key in keys), done.stdout + done.stderr[-3000:]
