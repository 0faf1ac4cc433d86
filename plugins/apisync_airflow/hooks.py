"""Hooks: each turns one Airflow connection into the plain settings include/apisync expects.

The connections are those of the official providers, read the way each provider reads them: Kafka
(`kafka`: the provider's `KafkaBaseHook` builds the client config, with SASL/SSL settings, allowed
callbacks and managed OAuth), Redis (`redis`: the Redis provider's fields), Stripe (`http`: the HTTP
provider's host/schema/port), GitHub (`github`: token and optional Enterprise URL), Salesforce
(`salesforce`: see salesforce_connection.py). apisync's own options (rate limits, `repos`, ...) are
JSON extras: these providers' forms cannot take fields from a plugin, and the extra stays editable.

Connections are read through the Task SDK (`BaseHook.get_connection`), only when a hook method is
called, i.e. inside `execute`, never at DAG-parse time. The `*_from` functions do the translation
and are pure, so they are tested without Airflow running.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook
from airflow.providers.redis.hooks.redis import RedisHook
from airflow.sdk import BaseHook

# Keys of an API connection's extra that configure apisync rather than the source.
_API_EXTRA_RESERVED = ("rate_per_s", "burst", "webhook_secrets")
# The GitHub provider's App-authentication extras: credentials, never passed on as source options.
_GITHUB_APP_EXTRAS = ("key_path", "private_key", "app_id", "installation_id", "token_permissions")
GITHUB_API_URL = "https://api.github.com"
# The Redis provider's TLS extras (RedisHook.get_conn passes exactly these to redis.Redis).
_REDIS_SSL_ARGS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_keyfile", "ssl_certfile", "ssl_check_hostname")


class ConnectionConfigError(ValueError):
    """A connection lacks something apisync needs; the message names the connection and the field."""


def _flag(value: Any) -> bool:
    """A boolean extra as the UI (JSON true) or a hand-written env var ("true", "1") gives it."""
    return value is True or str(value).strip().lower() in ("true", "1", "yes", "on")


def redis_url_from(conn: Any) -> str:
    """redis[s]://[user[:password]@]host:port/db[?ssl_*] from a connection of the Redis provider."""
    if not conn.host:
        raise ConnectionConfigError(f"connection {conn.conn_id!r}: no host")
    extra = conn.extra_dejson or {}
    if _flag(extra.get("cluster")):
        raise ConnectionConfigError(f"connection {conn.conn_id!r}: Redis cluster mode is not supported "
                                    "(the rate limiter and the version fence run multi-key Lua scripts)")
    # The provider's rule: a password "none"/"false"/"" means no password.
    password = None if str(conn.password).lower() in ("none", "false", "") else conn.password
    user = quote(conn.login or "", safe="")
    auth = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
    ssl = _flag(extra.get("ssl"))
    query = {k: (str(_flag(v)).lower() if k == "ssl_check_hostname" else v)
             for k, v in extra.items() if ssl and k in _REDIS_SSL_ARGS and v not in (None, "")}
    db = int(extra.get("db") or 0)
    url = f"{'rediss' if ssl else 'redis'}://{auth}{conn.host}:{conn.port or 6379}/{db}"
    return f"{url}?{urlencode(query)}" if query else url


def base_url_from(conn: Any) -> str:
    """The API base URL as the HTTP provider builds it from host, schema and port (https by default)."""
    host = (conn.host or "").strip().rstrip("/")
    if not host:
        raise ConnectionConfigError(f"connection {conn.conn_id!r}: no host (the API base URL)")
    # The provider defaults to http; an API token must not travel in clear text unless asked for.
    url = host if "://" in host else f"{(conn.schema or 'https').strip()}://{host}"
    parts = urlsplit(url)
    if conn.port and parts.port is None:
        parts = parts._replace(netloc=f"{parts.netloc}:{conn.port}")
    return urlunsplit(parts)


def github_base_url_from(conn: Any) -> str:
    """The GitHub provider's rule: the host (a GitHub Enterprise `.../api/v3` URL) or api.github.com."""
    return base_url_from(conn) if (conn.host or "").strip() else GITHUB_API_URL


def api_settings_from(conn: Any, api: str):
    """ApiSettings for one API: base URL from host, token from password, options from extra."""
    from apisync.settings import ApiSettings

    if api == "salesforce":
        from apisync_airflow.salesforce_connection import salesforce_settings_from

        try:
            return salesforce_settings_from(conn)
        except (ValueError, OSError) as exc:
            raise ConnectionConfigError(f"connection {conn.conn_id!r}: {exc}") from None
    extra = dict(conn.extra_dejson or {})
    is_github_type = api == "github" and conn.conn_type == "github"
    if not conn.password:
        hint = (" (GitHub App authentication is not supported: installation tokens expire within a sync)"
                if is_github_type and any(k in extra for k in _GITHUB_APP_EXTRAS) else "")
        raise ConnectionConfigError(f"connection {conn.conn_id!r}: no API token (set the password field){hint}")
    rate = extra.get("rate_per_s")
    dropped = _API_EXTRA_RESERVED + (_GITHUB_APP_EXTRAS if api == "github" else ())
    return ApiSettings(
        api=api,
        base_url=github_base_url_from(conn) if is_github_type else base_url_from(conn),
        token=conn.password,
        extra={k: v for k, v in extra.items() if k not in dropped},
        rate_per_s=float(rate) if rate not in (None, "") else None,
        burst=int(extra.get("burst", 5)),
    )


def webhook_secrets_from(extra: Mapping[str, Any]) -> tuple[str, ...]:
    """The `webhook_secrets` list of an API connection's extra (a comma-separated string works too)."""
    raw = extra.get("webhook_secrets") or ()
    items = raw.split(",") if isinstance(raw, str) else raw
    return tuple(str(s).strip() for s in items if str(s).strip())


class KafkaConfigHook(KafkaBaseHook):
    """kafka connection → the confluent client config dict, built by the Kafka provider.

    apisync builds its own idempotent/transactional producers and read_committed consumers, so the
    "client" of this hook is the config itself: the one `KafkaBaseHook` builds for its own clients and
    for the UI's connection test (SASL/SSL settings, allowlisted callbacks, Amazon MSK IAM and Google
    Managed Kafka OAuth callbacks).
    """

    def _get_client(self, config: dict[str, Any]) -> dict[str, Any]:
        return config

    def get_config(self) -> dict[str, Any]:
        """A fresh copy of the client config (it may hold callables, e.g. `oauth_cb`; never logged)."""
        try:
            return dict(self.get_conn)
        except ValueError as exc:  # no bootstrap.servers, a callback outside the allowlist
            raise ConnectionConfigError(f"connection {self.kafka_config_id!r}: {exc}") from None


class RedisUrlHook(RedisHook):
    """redis connection (the Redis provider's fields) → the redis:// URL apisync's processes connect with."""

    def get_url(self) -> str:
        """The URL the rate limiter and the version fence connect to."""
        return redis_url_from(self.get_connection(self.redis_conn_id))


class ApiConnectionHook(BaseHook):
    """Third-party API connection (`<api>_default`: http, github or salesforce type) → ApiSettings."""

    conn_name_attr = "api_conn_id"
    hook_name = "apisync API"

    def __init__(self, api: str, api_conn_id: str | None = None) -> None:
        super().__init__()
        self.api = api
        self.api_conn_id = api_conn_id or f"{api}_default"

    def get_settings(self):
        """ApiSettings (the token stays inside it; it is never logged)."""
        return api_settings_from(self.get_connection(self.api_conn_id), self.api)
