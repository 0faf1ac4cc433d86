"""Hooks: each Airflow connection becomes exactly the settings include/apisync expects."""

from __future__ import annotations

import pytest
from airflow.sdk import Connection
from airflow.sdk.exceptions import AirflowNotFoundException

from apisync_airflow.hooks import (
    ApiConnectionHook,
    ConnectionConfigError,
    KafkaConfigHook,
    RedisUrlHook,
    base_url_from,
    kafka_config_from,
    redis_url_from,
    webhook_secrets_from,
)


def conn(**kwargs) -> Connection:
    return Connection(conn_id=kwargs.pop("conn_id", "c"), **kwargs)


@pytest.mark.parametrize("fields, url", [
    ({"host": "127.0.0.1", "port": 6380}, "redis://127.0.0.1:6380/0"),
    ({"host": "cache", "extra": '{"db": 4}'}, "redis://cache:6379/4"),
    ({"host": "cache", "port": 1, "password": "p@ss/w", "extra": '{"ssl": true}'}, "rediss://:p%40ss%2Fw@cache:1/0"),
])
def test_redis_url(fields, url):
    assert redis_url_from(conn(conn_type="redis", **fields)) == url


@pytest.mark.parametrize("fields, url", [
    ({"host": "http://127.0.0.1:8765/"}, "http://127.0.0.1:8765"),
    ({"host": "api.stripe.com"}, "https://api.stripe.com"),
    ({"host": "example.my.salesforce.com", "port": 8443}, "https://example.my.salesforce.com:8443"),
])
def test_base_url(fields, url):
    assert base_url_from(conn(conn_type="http", **fields)) == url


@pytest.mark.parametrize("make, message", [
    (lambda: kafka_config_from(conn(conn_id="kafka_x", conn_type="kafka", extra="{}")), "kafka_x.*bootstrap.servers"),
    (lambda: redis_url_from(conn(conn_id="redis_x", conn_type="redis")), "redis_x.*no host"),
    (lambda: base_url_from(conn(conn_id="api_x", conn_type="http")), "api_x.*base URL"),
])
def test_incomplete_connections_name_the_connection_and_field(make, message):
    with pytest.raises(ConnectionConfigError, match=message):
        make()


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
