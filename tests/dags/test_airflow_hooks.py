"""Hooks: each connection (the official providers' types) becomes exactly the settings include/apisync expects."""

from __future__ import annotations

import json

import pytest
import redis
from airflow.providers.redis.hooks.redis import RedisHook
from airflow.sdk import Connection
from airflow.sdk.exceptions import AirflowNotFoundException

from apisync.connections import base_url_from
from apisync_airflow.hooks import (
    ApiConnectionHook,
    ConnectionConfigError,
    KafkaConfigHook,
    RedisUrlHook,
    api_settings_from,
    connection_fields,
    redis_url_from,
    webhook_secrets_from,
)

SASL_PASSWORD = "s3cr3t-sasl"
SASL_PLAIN = {"bootstrap.servers": "broker-1:9093,broker-2:9093", "security.protocol": "SASL_SSL",
              "sasl.mechanism": "PLAIN", "sasl.username": "apisync", "sasl.password": SASL_PASSWORD,
              "ssl.ca.location": "/etc/ssl/certs/ca.pem"}


def conn(**kwargs) -> Connection:
    return Connection(conn_id=kwargs.pop("conn_id", "c"), **kwargs)


def env_conn(monkeypatch, conn_id: str, **fields) -> None:
    """A connection the Task SDK finds (AIRFLOW_CONN_*, JSON form), as a deployment would give it."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


@pytest.mark.parametrize("fields, url", [
    ({"host": "127.0.0.1", "port": 6380}, "redis://127.0.0.1:6380/0"),
    ({"host": "cache", "extra": '{"db": 4}'}, "redis://cache:6379/4"),
    ({"host": "cache", "port": 1, "password": "p@ss/w", "extra": '{"ssl": true}'}, "rediss://:p%40ss%2Fw@cache:1/0"),
    ({"host": "cache", "login": "apisync", "password": "pw"}, "redis://apisync:pw@cache:6379/0"),
    ({"host": "cache", "password": "None"}, "redis://cache:6379/0"),  # the provider's "no password"
    ({"host": "cache", "extra": '{"ssl": false, "ssl_cert_reqs": "required"}'}, "redis://cache:6379/0"),
    ({"host": "cache", "extra": '{"ssl": true, "ssl_cert_reqs": "none", "ssl_check_hostname": true}'},
     "rediss://cache:6379/0?ssl_cert_reqs=none&ssl_check_hostname=true"),
])
def test_redis_url(fields, url):
    assert redis_url_from(conn(conn_type="redis", **fields)) == url


@pytest.mark.parametrize("fields", [
    {"host": "cache", "port": 6390, "login": "apisync", "password": "p@ss/w", "extra": {"db": 2}},
    {"host": "cache", "extra": {"ssl": True, "ssl_cert_reqs": "optional", "ssl_ca_certs": "/etc/ssl/ca.pem",
                                "ssl_certfile": "/etc/ssl/c.pem", "ssl_keyfile": "/etc/ssl/k.pem",
                                "ssl_check_hostname": True}},
])
def test_the_url_gives_the_client_the_redis_provider_builds(monkeypatch, fields):
    env_conn(monkeypatch, "redis_x", conn_type="redis", **fields)
    provider = RedisHook("redis_x").get_conn().connection_pool
    ours = redis.Redis.from_url(RedisUrlHook("redis_x").get_url()).connection_pool
    keys = ("host", "port", "db", "username", "password", "ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile",
            "ssl_keyfile", "ssl_check_hostname")  # what a redis connection sets; ssl itself: the connection class
    defaults = {"port": 6379, "db": 0}  # what the provider leaves to redis-py when the connection has none
    assert ours.connection_class is provider.connection_class
    theirs = {k: provider.connection_kwargs.get(k) for k in keys}
    assert {k: ours.connection_kwargs.get(k) for k in keys} == {
        k: defaults.get(k) if value is None else value for k, value in theirs.items()}


@pytest.mark.parametrize("fields, url", [
    ({"host": "http://127.0.0.1:8765/"}, "http://127.0.0.1:8765"),
    ({"host": "api.stripe.com"}, "https://api.stripe.com"),
    ({"host": "api.stripe.com", "schema": "http", "port": 8080}, "http://api.stripe.com:8080"),
    ({"host": "example.my.salesforce.com", "port": 8443}, "https://example.my.salesforce.com:8443"),
    ({"host": "https://ghe.example.com/api/v3", "port": 8443}, "https://ghe.example.com:8443/api/v3"),
])
def test_base_url(fields, url):
    assert base_url_from(connection_fields(conn(conn_type="http", **fields), "stripe")) == url


@pytest.mark.parametrize("fields, url", [
    ({}, "https://api.github.com"),
    ({"host": "https://ghe.example.com/api/v3"}, "https://ghe.example.com/api/v3"),
])
def test_a_github_connection_of_the_providers_type(fields, url):
    settings = api_settings_from(conn(conn_type="github", password="ghp_x", extra='{"repos": ["o/a"]}', **fields),
                                 "github")
    assert (settings.base_url, settings.token, settings.extra) == (url, "ghp_x", {"repos": ["o/a"]})


def test_github_app_credentials_are_refused_and_never_kept():
    app = {"app_id": 1, "installation_id": 2, "private_key": "-----BEGIN KEY-----x"}
    with pytest.raises(ConnectionConfigError, match="GitHub App authentication is not supported") as raised:
        api_settings_from(conn(conn_type="github", extra=json.dumps(app)), "github")
    assert "BEGIN KEY" not in str(raised.value)
    settings = api_settings_from(conn(conn_type="github", password="ghp_x", extra=json.dumps(app)), "github")
    assert settings.extra == {}


@pytest.mark.parametrize("make, message", [
    (lambda: redis_url_from(conn(conn_id="redis_x", conn_type="redis")), "redis_x.*no host"),
    (lambda: redis_url_from(conn(conn_id="redis_x", conn_type="redis", host="h", extra='{"cluster": true}')),
     "redis_x.*cluster"),
    (lambda: api_settings_from(conn(conn_id="api_x", conn_type="http", password="x"), "stripe"), "api_x.*base URL"),
])
def test_incomplete_connections_name_the_connection_and_field(make, message):
    with pytest.raises(ConnectionConfigError, match=message):
        make()


@pytest.mark.parametrize("extra", [{"bootstrap.servers": "127.0.0.1:19092"}, SASL_PLAIN], ids=["plain", "sasl-plain"])
def test_the_kafka_hook_gives_the_connections_client_config(monkeypatch, extra):
    env_conn(monkeypatch, "kafka_x", conn_type="kafka", extra=extra)
    hook = KafkaConfigHook("kafka_x")
    config = hook.get_config()
    assert config == extra
    config["bootstrap.servers"] = "changed"  # a copy: callers add their own settings to it
    assert hook.get_config() == extra


def test_the_kafka_hook_is_the_providers_connection_handling(monkeypatch):
    # A callback given as a dotted path is resolved by the provider, only when it is allowlisted.
    env_conn(monkeypatch, "kafka_x", conn_type="kafka", extra={**SASL_PLAIN, "oauth_cb": "json.loads"})
    with pytest.raises(ConnectionConfigError, match="kafka_x.*callback_allowlist") as raised:
        KafkaConfigHook("kafka_x").get_config()
    assert SASL_PASSWORD not in str(raised.value)
    monkeypatch.setenv("AIRFLOW__APACHE_KAFKA__CALLBACK_ALLOWLIST", "json.loads")
    assert KafkaConfigHook("kafka_x").get_config()["oauth_cb"] is json.loads


def test_a_kafka_connection_without_bootstrap_servers_names_it(monkeypatch):
    env_conn(monkeypatch, "kafka_x", conn_type="kafka", extra={"sasl.password": SASL_PASSWORD})
    with pytest.raises(ConnectionConfigError, match="kafka_x.*bootstrap.servers") as raised:
        KafkaConfigHook("kafka_x").get_config()
    assert SASL_PASSWORD not in str(raised.value)


def test_hooks_read_the_env_connections(connections, engine):
    assert KafkaConfigHook().get_config() == {"bootstrap.servers": "127.0.0.1:19092"}
    assert RedisUrlHook().get_url() == "redis://127.0.0.1:16379/3"
    settings = ApiConnectionHook("stripe").get_settings()
    assert (settings.api, settings.base_url, settings.token) == ("stripe", "http://127.0.0.1:18765", "sk_test_unit")
    assert (settings.rate_per_s, settings.burst) == (20.0, 3)
    # apisync options are consumed by the hook; only source options stay in extra
    assert "webhook_secrets" not in settings.extra and "rate_per_s" not in settings.extra
    github = ApiConnectionHook("github").get_settings()
    assert github.extra == {"repos": ["apisync/demo"]} and github.rate_per_s is None and github.burst == 5
    assert github.base_url == "http://127.0.0.1:18765"


def test_api_connection_without_token_is_refused(monkeypatch, engine):
    monkeypatch.setenv("AIRFLOW_CONN_STRIPE_DEFAULT", '{"conn_type": "http", "host": "http://x"}')
    with pytest.raises(ConnectionConfigError, match="stripe_default.*token"):
        ApiConnectionHook("stripe").get_settings()


def test_missing_connection_raises_not_found(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_NOPE_DEFAULT", raising=False)
    with pytest.raises(AirflowNotFoundException):
        ApiConnectionHook("nope").get_settings()


@pytest.mark.parametrize("extra, secrets", [
    ({"webhook_secrets": ["a", " b ", ""]}, ("a", "b")),
    ({"webhook_secrets": "a, b"}, ("a", "b")),
    ({}, ()),
])
def test_webhook_secrets(extra, secrets):
    assert webhook_secrets_from(extra) == secrets
