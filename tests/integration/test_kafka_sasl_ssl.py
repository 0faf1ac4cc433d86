"""SASL_SSL (SCRAM-SHA-512 over TLS, a CA made at start-up) on every component outside a task: the CLI,
the `normalize --follow` service and the standalone receiver from one client-config file (the password
from APISYNC_KAFKA_SASL_PASSWORD, not the file), and the api-server's receiver from the `kafka_default`
connection read through the Kafka provider's hook out of a secrets backend (a local-filesystem one: not
an AIRFLOW_CONN_* variable). The password never appears in any output or log; a wrong one fails at once.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
from sync_helpers import served, settled_read, wait_for

from airflow_secrets import connections_file_backend
from apisync.kafka.admin import admin_client, ensure
from apisync.kafka.reader import read_topic
from apisync.kafka.topics import declared_topics
from devstack.airflow import SIMULATOR_TOKENS
from devstack.kafka import SCRAM_MECHANISM, KafkaCluster
from webhook_signing import sign_stripe

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = f"scram-{secrets.token_hex(8)}"  # random: an assertion about its absence cannot pass by luck
WRONG = f"wrong-{secrets.token_hex(8)}"
WEBHOOK_SECRET = "whsec_sasl_ssl"
OBJECTS = 40
DEADLINE_S = 180.0  # generous: only a stuck process reaches it on a loaded 2-core machine


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    """One node whose client listener wants SASL_SSL with SCRAM-SHA-512 (the broker's own CA)."""
    small = {"offsets.topic.num.partitions": 1, "transaction.state.log.num.partitions": 1}
    cluster = KafkaCluster(tmp_path_factory.mktemp("kafka-sasl-ssl"), sasl_users={"apisync": PASSWORD},
                           properties=small, tls=True).start(timeout=300)
    yield cluster
    cluster.stop()


def client_settings(cluster: KafkaCluster) -> dict:
    """Everything but the password: what a deployer puts in the config file."""
    return {"bootstrap.servers": cluster.sasl_ssl_bootstrap, "security.protocol": "SASL_SSL",
            "sasl.mechanisms": SCRAM_MECHANISM, "sasl.username": "apisync", "ssl.ca.location": str(cluster.ca_file)}


@pytest.fixture(scope="module")
def config_file(tls_cluster, tmp_path_factory) -> Path:
    """A Java-style properties file, as a Kafka admin hands one out (no password in it)."""
    path = tmp_path_factory.mktemp("client") / "client.properties"
    path.write_text("".join(f"{key}={value}\n" for key, value in client_settings(tls_cluster).items()))
    return path


@pytest.fixture(scope="module")
def tls_config(tls_cluster) -> dict:
    """The full config for the test's own reads."""
    config = {**client_settings(tls_cluster), "sasl.password": PASSWORD}
    ensure(admin_client(config), declared_topics(apis=("stripe",)))
    return config


@pytest.fixture
def fresh(clean_slate):
    """An empty ledger and a re-seeded simulator with its default config (this module's broker is its own)."""
    clean_slate(seed=23, objects=OBJECTS, topics=False)


def service_env(redis_url: str, simulator_url: str, password: str = PASSWORD, **more: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APISYNC_", "AIRFLOW_CONN_"))}
    return {**env, "PYTHONPATH": f"{ROOT / 'include'}{os.pathsep}{ROOT / 'plugins'}",
            "APISYNC_KAFKA_SASL_PASSWORD": password, "APISYNC_REDIS_URL": redis_url,
            "APISYNC_STRIPE_URL": simulator_url, "APISYNC_STRIPE_TOKEN": SIMULATOR_TOKENS["stripe"], **more}


def cli(env: dict, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "apisync", *argv], env=env, capture_output=True, text=True,
                          timeout=DEADLINE_S)


def keys(config: dict, topic: str) -> set[str]:
    return {m.key().decode() for m in read_topic(config, topic, timeout=30) if m.value() is not None}


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text and WRONG not in text


def test_the_cli_and_the_follow_service_run_a_backfill_through_sasl_ssl(tls_config, config_file, fresh, redis_url,
                                                                         simulator_url, tmp_path):
    env = service_env(redis_url, simulator_url)
    # Every declared topic (about a hundred) on one loaded node: more than the default 30 s per call.
    ensured = cli(env, "--kafka-config", str(config_file), "--timeout", "150", "topics", "ensure")
    assert ensured.returncode == 0, ensured.stderr[-2000:]
    backfill = cli(env, "sync", "backfill", "stripe", "customer", "--restart", "--kafka-config", str(config_file))
    assert backfill.returncode == 0, backfill.stderr[-2000:]
    assert f"stripe customer backfill: {OBJECTS} records" in backfill.stdout
    assert len(keys(tls_config, "stripe.changes")) >= OBJECTS

    log = tmp_path / "follow.log"
    with open(log, "wb") as out:
        follower = subprocess.Popen([sys.executable, "-m", "apisync", "normalize", "stripe", "--follow",
                                     "--kafka-config", str(config_file), "--log-every", "2"],
                                    env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: len(keys(tls_config, "stripe.records")) >= OBJECTS or follower.poll() is not None,
                 "the follower writes every record", DEADLINE_S)
    finally:
        follower.send_signal(signal.SIGTERM)
        code = follower.wait(timeout=DEADLINE_S)
    output = log.read_text()
    assert code == 0, output[-3000:]
    assert len({m.key() for m in settled_read(tls_config, "stripe.records")}) == OBJECTS
    assert f"Kafka at {tls_config['bootstrap.servers']} (SASL_SSL; SCRAM-SHA-512 as user 'apisync'" in output
    assert_no_secret(ensured.stdout, ensured.stderr, backfill.stdout, backfill.stderr, output)


def test_a_wrong_password_fails_the_cli_at_once_in_one_line(tls_config, config_file, fresh, redis_url, simulator_url):
    env = service_env(redis_url, simulator_url, password=WRONG)
    started = time.monotonic()
    result = cli(env, "--kafka-config", str(config_file), "sync", "backfill", "stripe", "customer")
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert f"Kafka at {tls_config['bootstrap.servers']} refused the login (SASL_SSL, SCRAM-SHA-512 as user " \
           f"'apisync')" in line
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 60  # not librdkafka's endless retries ending in a timeout
    assert_no_secret(result.stdout, result.stderr)


def stripe_event(customer: str) -> bytes:
    """A signed-body-ready Stripe event (https://docs.stripe.com/api/events/object)."""
    return orjson.dumps({"id": f"evt_{secrets.token_hex(6)}", "object": "event", "type": "customer.updated",
                         "created": int(time.time()), "api_version": "2024-06-20",
                         "data": {"object": {"id": customer, "object": "customer", "created": 1_700_000_000}}})


def post_signed(base_url: str, body: bytes) -> httpx.Response:
    signature = sign_stripe(WEBHOOK_SECRET, body, int(time.time()))
    return httpx.post(f"{base_url}/webhooks/stripe", content=body, timeout=30,
                      headers={"Stripe-Signature": signature, "Content-Type": "application/json"})


def stored_webhooks(config: dict) -> set[bytes]:
    return {m.value() for m in read_topic(config, "stripe.webhooks", timeout=30)}


def test_the_standalone_receiver_stores_a_webhook_through_sasl_ssl(tls_config, config_file, redis_url, simulator_url,
                                                                   tmp_path):
    from devstack.process import free_port

    port, log = free_port(), tmp_path / "receiver.log"
    env = service_env(redis_url, simulator_url, APISYNC_WEBHOOK_SECRETS_STRIPE=WEBHOOK_SECRET)
    with open(log, "wb") as out:
        receiver = subprocess.Popen([sys.executable, "-m", "apisync.webhooks", "--port", str(port),
                                     "--kafka-config", str(config_file)], env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthy(base) or receiver.poll() is not None, "the receiver answers", DEADLINE_S)
        body = stripe_event("cus_standalone")
        answer = post_signed(base, body)
    finally:
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(timeout=DEADLINE_S)
    output = log.read_text()
    assert answer.status_code == 200, output[-3000:]
    assert body in stored_webhooks(tls_config)
    assert "producing to Kafka at" in output and "SASL_SSL; SCRAM-SHA-512 as user 'apisync'" in output
    assert_no_secret(output)


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/webhooks/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def connection_in_a_secrets_backend(tls_config, tmp_path, monkeypatch):
    """`kafka_default` only in a local-filesystem secrets backend, as with Vault or AWS Secrets Manager."""
    path = tmp_path / "connections.json"
    path.write_text(json.dumps({"kafka_default": {"conn_type": "kafka", "extra": json.dumps(tls_config)}}))
    with connections_file_backend(monkeypatch, path, ["kafka_default"]):
        yield


def test_the_api_server_receiver_reads_the_connection_from_a_secrets_backend(tls_config, tls_cluster,
                                                                             connection_in_a_secrets_backend,
                                                                             caplog, capfd):
    from apisync_airflow.webhook_app import create_webhook_app

    caplog.set_level(logging.DEBUG)
    app = create_webhook_app({"APISYNC_WEBHOOK_SECRETS_STRIPE": WEBHOOK_SECRET})  # no Kafka variable at all
    body = stripe_event("cus_api_server")
    with served(app) as base:
        answer = post_signed(base, body)
    assert answer.status_code == 200, answer.text
    assert body in stored_webhooks(tls_config)
    assert f"producing to Kafka at {tls_cluster.sasl_ssl_bootstrap} (SASL_SSL" in caplog.text
    out, err = capfd.readouterr()
    assert_no_secret(caplog.text, out, err, answer.text)
