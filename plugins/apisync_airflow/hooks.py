"""Hooks: each turns one Airflow connection into the plain settings include/apisync expects.

Connections are read through the Task SDK (`BaseHook.get_connection`), only when a hook method is
called, i.e. inside `execute`, never at DAG-parse time. The `*_from` functions do the translation
and are pure, so they are tested without Airflow running.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseHook

# Keys of an API connection's extra that configure apisync rather than the source.
_API_EXTRA_RESERVED = ("rate_per_s", "burst", "webhook_secrets")


class ConnectionConfigError(ValueError):
    """A connection lacks something apisync needs; the message names the connection and the field."""


def kafka_config_from(conn: Any) -> dict[str, Any]:
    """The confluent client config held in a kafka connection's extra JSON."""
    extra = dict(conn.extra_dejson or {})
    if not str(extra.get("bootstrap.servers") or "").strip():
        raise ConnectionConfigError(f"connection {conn.conn_id!r}: extra has no 'bootstrap.servers'")
    return extra


def redis_url_from(conn: Any) -> str:
    """redis[s]://[:password@]host:port/db from a redis connection (db from extra, default 0)."""
    if not conn.host:
        raise ConnectionConfigError(f"connection {conn.conn_id!r}: no host")
    extra = conn.extra_dejson or {}
    scheme = "rediss" if str(extra.get("ssl", "")).lower() in ("true", "1") else "redis"
    auth = f":{quote(conn.password, safe='')}@" if conn.password else ""
    db = int(extra.get("db", 0) or 0)
    return f"{scheme}://{auth}{conn.host}:{conn.port or 6379}/{db}"


def base_url_from(conn: Any) -> str:
    """The API base URL: host as given when it has a scheme, else https://host[:port]."""
    host = (conn.host or "").strip().rstrip("/")
    if not host:
        raise ConnectionConfigError(f"connection {conn.conn_id!r}: no host (the API base URL)")
    if "://" in host:
        return host
    return f"https://{host}:{conn.port}" if conn.port else f"https://{host}"


def api_settings_from(conn: Any, api: str):
    """ApiSettings for one API: base URL from host, token from password, options from extra."""
    from apisync.settings import ApiSettings

    if api == "salesforce":
        from apisync_airflow.salesforce_connection import salesforce_settings_from

        try:
            return salesforce_settings_from(conn)
        except (ValueError, OSError) as exc:
            raise ConnectionConfigError(f"connection {conn.conn_id!r}: {exc}") from None
    if not conn.password:
        raise ConnectionConfigError(f"connection {conn.conn_id!r}: no API token (set the password field)")
    extra = dict(conn.extra_dejson or {})
    rate = extra.get("rate_per_s")
    return ApiSettings(
        api=api,
        base_url=base_url_from(conn),
        token=conn.password,
        extra={k: v for k, v in extra.items() if k not in _API_EXTRA_RESERVED},
        rate_per_s=float(rate) if rate not in (None, "") else None,
        burst=int(extra.get("burst", 5)),
    )


def webhook_secrets_from(extra: Mapping[str, Any]) -> tuple[str, ...]:
    """The `webhook_secrets` list of an API connection's extra (a comma-separated string works too)."""
    raw = extra.get("webhook_secrets") or ()
    items = raw.split(",") if isinstance(raw, str) else raw
    return tuple(str(s).strip() for s in items if str(s).strip())


class KafkaConfigHook(BaseHook):
    """Kafka connection → confluent client config dict."""

    conn_name_attr = "kafka_conn_id"
    default_conn_name = "kafka_default"
    conn_type = "kafka"
    hook_name = "apisync Kafka"

    def __init__(self, kafka_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.kafka_conn_id = kafka_conn_id

    def get_config(self) -> dict[str, Any]:
        """The client config (bootstrap.servers and any security settings)."""
        return kafka_config_from(self.get_connection(self.kafka_conn_id))


class RedisUrlHook(BaseHook):
    """Redis connection → redis:// URL."""

    conn_name_attr = "redis_conn_id"
    default_conn_name = "redis_default"
    conn_type = "redis"
    hook_name = "apisync Redis"

    def __init__(self, redis_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.redis_conn_id = redis_conn_id

    def get_url(self) -> str:
        """The URL the rate limiter and the version fence connect to."""
        return redis_url_from(self.get_connection(self.redis_conn_id))


class ApiConnectionHook(BaseHook):
    """Third-party API connection (`<api>_default`, conn type http) → ApiSettings."""

    conn_name_attr = "api_conn_id"
    conn_type = "http"
    hook_name = "apisync API"

    def __init__(self, api: str, api_conn_id: str | None = None) -> None:
        super().__init__()
        self.api = api
        self.api_conn_id = api_conn_id or f"{api}_default"

    def get_settings(self):
        """ApiSettings (the token stays inside it; it is never logged)."""
        return api_settings_from(self.get_connection(self.api_conn_id), self.api)
