"""The plugin: only plugin.py is loaded, it mounts the receiver at /apisync, Kafka is contacted lazily."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from airflow_secrets import connections_file_backend
from apisync_airflow.webhook_app import (
    ConnectionBackedSettings,
    LazyProducer,
    WebhookConfigError,
    api_connection_extras,
    create_webhook_app,
    receiver_kafka_config,
    receiver_settings,
)
from webhook_signing import sign_github

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
GITHUB_SECRET = "It's a Secret to Everybody"


class RecordingProducer:
    """Acknowledges every message when polled (or flushed), like Kafka would."""

    def __init__(self, config):
        self.config = dict(config)
        self.sent: list[tuple] = []
        self._pending: list = []
        self._lock = threading.Lock()

    def produce(self, topic, key, value, headers, on_delivery=None):
        self.sent.append((topic, key, value, dict(headers)))
        self._pending.append(lambda: on_delivery(None))

    def produce_reported(self, topic, key, value, headers, on_report, wait_for_room=True):
        with self._lock:
            self.sent.append((topic, key, value, dict(headers)))
            self._pending.append(lambda: on_report(None))

    def poll(self, timeout):
        with self._lock:
            pending, self._pending = self._pending, []
        for report in pending:
            report()
        if not pending:
            time.sleep(timeout)
        return len(pending)

    def flush(self, timeout=60.0):
        self.poll(0)


def test_only_plugin_py_is_executed_by_the_plugin_manager(monkeypatch):
    from airflow._shared.module_loading import find_path_from_directory
    from airflow._shared.plugins_manager.plugins_manager import _load_plugins_from_plugin_directory

    found = find_path_from_directory(str(PLUGINS), ".airflowignore")
    files = [Path(p).relative_to(PLUGINS).as_posix() for p in found]
    assert files == ["apisync_airflow/plugin.py"]
    monkeypatch.setenv("APISYNC_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # never contacted: the producer is lazy
    plugins, errors = _load_plugins_from_plugin_directory(str(PLUGINS))
    assert errors == {}
    (plugin,) = plugins
    (app,) = plugin.fastapi_apps
    assert app["url_prefix"] == "/apisync" and isinstance(app["app"], FastAPI)


def mounted(env: dict, factory=RecordingProducer) -> tuple[TestClient, list]:
    """The receiver mounted like the api-server does it; returns the client and the built producers."""
    built: list[RecordingProducer] = []

    def make(config):
        built.append(factory(config))
        return built[-1]

    server = FastAPI()
    server.mount("/apisync", create_webhook_app(env, producer_factory=make))
    return TestClient(server), built


def test_signed_github_webhook_is_stored_raw_under_apisync_prefix(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_DEFAULT",
                       json.dumps({"conn_type": "kafka", "extra": {"bootstrap.servers": "k:9092"}}))
    monkeypatch.setenv("AIRFLOW_CONN_GITHUB_DEFAULT",
                       json.dumps({"conn_type": "http", "extra": {"webhook_secrets": [GITHUB_SECRET]}}))
    client, built = mounted({})
    assert built == []  # nothing built before the first webhook
    body = b'{"action": "edited", "issue": {"number": 7, "updated_at": "2026-01-01T00:00:00Z"}}'
    answer = client.post("/apisync/webhooks/github", content=body, headers={
        "X-Hub-Signature-256": sign_github(GITHUB_SECRET, body), "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": "d-1", "Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    (producer,) = built
    assert producer.config["bootstrap.servers"] == "k:9092"
    ((topic, _key, value, headers),) = producer.sent
    assert (topic, value, headers["x-github-delivery"]) == ("github.webhooks", body, b"d-1")


@pytest.mark.parametrize("api, headers, status", [
    ("github", {"X-Hub-Signature-256": "sha256=" + "0" * 64}, 401),
    ("github", {}, 400),
    ("stripe", {}, 404),  # no stripe secret configured: no endpoint
])
def test_rejected_webhooks_produce_nothing(api, headers, status):
    client, built = mounted({"APISYNC_KAFKA_BOOTSTRAP": "k:1", "APISYNC_WEBHOOK_SECRETS_GITHUB": GITHUB_SECRET})
    assert client.post(f"/apisync/webhooks/{api}", content=b"{}", headers=headers).status_code == status
    assert all(not p.sent for p in built)


def test_no_kafka_config_answers_503_so_the_provider_retries(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_KAFKA_DEFAULT", raising=False)
    client, _ = mounted({"APISYNC_WEBHOOK_SECRETS_GITHUB": GITHUB_SECRET})
    body = b"{}"
    answer = client.post("/apisync/webhooks/github", content=body,
                         headers={"X-Hub-Signature-256": sign_github(GITHUB_SECRET, body)})
    assert answer.status_code == 503


def oauth_token(_config: str) -> tuple[str, float]:
    """A token callback for the connection's `oauth_cb` (allowlisted in the test)."""
    return "token", 0.0


def kafka_connection(monkeypatch, extra) -> None:
    """`kafka_default` as the Kafka provider's connection, from the environment secrets backend."""
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_DEFAULT", json.dumps({"conn_type": "kafka", "extra": extra}))


@pytest.mark.parametrize("extra", [
    {"bootstrap.servers": "a:1"},
    json.dumps({"bootstrap.servers": "a:1"}),  # the extra as a JSON string, as the UI stores it
])
def test_receiver_kafka_config_is_the_connection_as_the_provider_builds_it(monkeypatch, extra):
    kafka_connection(monkeypatch, extra)
    assert receiver_kafka_config({"APISYNC_KAFKA_BOOTSTRAP": "not:used"})["bootstrap.servers"] == "a:1"


def test_receiver_kafka_config_resolves_the_providers_allowlisted_callbacks(monkeypatch):
    path = f"{__name__}.oauth_token"
    monkeypatch.setenv("AIRFLOW__APACHE_KAFKA__CALLBACK_ALLOWLIST", path)
    kafka_connection(monkeypatch, {"bootstrap.servers": "a:1", "security.protocol": "SASL_SSL",
                                   "sasl.mechanisms": "OAUTHBEARER", "oauth_cb": path})
    assert receiver_kafka_config({})["oauth_cb"] is oauth_token


def test_receiver_kafka_config_refuses_a_callback_outside_the_allowlist(monkeypatch):
    monkeypatch.delenv("AIRFLOW__APACHE_KAFKA__CALLBACK_ALLOWLIST", raising=False)
    kafka_connection(monkeypatch, {"bootstrap.servers": "a:1", "oauth_cb": "os.system"})
    with pytest.raises(WebhookConfigError, match="Refusing to resolve Kafka callback"):
        receiver_kafka_config({})


def test_receiver_kafka_config_without_the_connection_reads_the_apisync_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("AIRFLOW_CONN_KAFKA_DEFAULT", raising=False)
    (tmp_path / "kafka.json").write_text(json.dumps({"bootstrap.servers": "f:1", "security.protocol": "SASL_SSL"}))
    config = receiver_kafka_config({"APISYNC_KAFKA_CONFIG": str(tmp_path / "kafka.json"),
                                    "APISYNC_KAFKA_SASL_PASSWORD": "pw"})
    assert (config["bootstrap.servers"], config["security.protocol"], config["sasl.password"]) == \
        ("f:1", "SASL_SSL", "pw")
    assert receiver_kafka_config({"APISYNC_KAFKA_BOOTSTRAP": "e:5"}) == {"bootstrap.servers": "e:5"}


def test_kafka_config_missing_says_what_to_set(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_KAFKA_DEFAULT", raising=False)
    with pytest.raises(WebhookConfigError, match="define the 'kafka_default' connection or set APISYNC_KAFKA_CONFIG"):
        receiver_kafka_config({})


def test_secrets_from_env_and_connection_are_merged_without_duplicates(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_STRIPE_DEFAULT",
                       json.dumps({"conn_type": "http", "extra": {"webhook_secrets": ["whsec_old", "whsec_x"]}}))
    monkeypatch.setenv("AIRFLOW_CONN_GITHUB_DEFAULT", "not json at all {")
    settings = receiver_settings({"APISYNC_WEBHOOK_SECRETS_STRIPE": "whsec_new,whsec_old"}, api_connection_extras())
    assert settings.secrets == {"stripe": ("whsec_new", "whsec_old", "whsec_x")}
    assert "whsec" not in repr(settings)


@pytest.fixture
def api_connections_in_a_secrets_backend(tmp_path, monkeypatch):
    """Writes `<api>_default` connections into a local-filesystem secrets backend (as with Vault or AWS
    Secrets Manager: no AIRFLOW_CONN_* variable); call it again to change them."""
    def write(**extras):
        path.write_text(json.dumps({f"{api}_default": {"conn_type": "http", "extra": json.dumps(extra)}
                                    for api, extra in extras.items()}))

    apis = ("stripe", "github", "salesforce", "hubspot")
    with connections_file_backend(monkeypatch, tmp_path / "connections.json", [f"{a}_default" for a in apis]) as path:
        write()
        yield write


def post_github(client, secret, body=b'{"action": "edited"}'):
    return client.post("/apisync/webhooks/github", content=body, headers={
        "X-Hub-Signature-256": sign_github(secret, body), "X-GitHub-Event": "issues", "X-GitHub-Delivery": "d-9"})


def test_the_receiver_reads_webhook_secrets_from_a_connection_in_a_secrets_backend(
        api_connections_in_a_secrets_backend, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_KAFKA_DEFAULT", raising=False)
    api_connections_in_a_secrets_backend(github={"webhook_secrets": [GITHUB_SECRET]})
    client, built = mounted({"APISYNC_KAFKA_BOOTSTRAP": "k:1"})
    assert post_github(client, GITHUB_SECRET).status_code == 200
    assert post_github(client, "not the secret").status_code == 401
    assert [value for p in built for _topic, _key, value, _headers in p.sent] == [b'{"action": "edited"}']


def test_a_secret_rotated_in_the_connection_takes_effect_at_the_next_refresh(api_connections_in_a_secrets_backend):
    now, started = [1000.0], []
    current = ConnectionBackedSettings({}, refresh_s=60, clock=lambda: now[0], start=started.append)
    api_connections_in_a_secrets_backend(github={"webhook_secrets": ["first"]})
    assert current().secrets == {"github": ("first",)}  # the first read: the first request waits for it
    api_connections_in_a_secrets_backend(github={"webhook_secrets": ["second"]}, stripe={"webhook_secrets": ["s"]})
    now[0] += 59
    assert current().secrets == {"github": ("first",)} and started == []  # read at most once a minute
    now[0] += 1
    assert current().secrets == {"github": ("first",)}  # the read starts beside the request, not in it
    (read,) = started
    assert current().secrets == {"github": ("first",)} and len(started) == 1  # one read at a time
    read()
    assert current().secrets == {"github": ("second",), "stripe": ("s",)}
    api_connections_in_a_secrets_backend()  # the connections deleted: their endpoints go with them
    now[0] += 60
    current()
    started[-1]()
    assert current().secrets == {}


def test_a_read_that_fails_keeps_the_settings_read_before(caplog):
    extras = [{"github": {"webhook_secrets": ["kept"]}}]

    def read():
        if isinstance(extras[0], Exception):
            raise extras[0]
        return extras[0]

    now, started = [0.0], []
    current = ConnectionBackedSettings({}, refresh_s=60, extras=read, clock=lambda: now[0], start=started.append)
    assert current().secrets == {"github": ("kept",)}
    extras[0] = TypeError("secret-in-the-message")
    now[0] += 60
    current()
    with caplog.at_level(logging.ERROR, logger="apisync.webhooks"):
        started[-1]()
    assert current().secrets == {"github": ("kept",)}
    assert "could not be read (TypeError); the settings read before stay" in caplog.text
    assert "secret-in-the-message" not in caplog.text


def test_a_connection_that_cannot_be_read_is_one_line_and_the_others_still_count(monkeypatch, caplog):
    from airflow.sdk import BaseHook

    def get_connection(conn_id):
        if conn_id == "github_default":
            raise RuntimeError("vault sealed; token=hvs.SECRET")
        return real(conn_id)

    real = BaseHook.get_connection
    monkeypatch.setattr(BaseHook, "get_connection", get_connection)
    monkeypatch.setenv("AIRFLOW_CONN_STRIPE_DEFAULT",
                       json.dumps({"conn_type": "http", "extra": {"webhook_secrets": ["whsec_x"]}}))
    with caplog.at_level(logging.WARNING, logger="apisync.webhooks"):
        extras = api_connection_extras(("stripe", "github"))
    assert extras == {"stripe": {"webhook_secrets": ["whsec_x"]}}
    assert [r.getMessage() for r in caplog.records] == [
        "connection github_default could not be read (RuntimeError); no webhook settings from it"]


def test_lazy_producer_builds_once():
    made = []
    lazy = LazyProducer(lambda: {"bootstrap.servers": "x"}, lambda cfg: made.append(RecordingProducer(cfg)) or made[-1])
    lazy.produce("t", "k", b"v", [], on_delivery=lambda _m: None)
    lazy.flush(1)
    lazy.produce("t", "k2", b"v", [], on_delivery=lambda _m: None)
    assert len(made) == 1 and [m[1] for m in made[0].sent] == ["k", "k2"]
