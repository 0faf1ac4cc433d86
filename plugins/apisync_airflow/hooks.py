"""Hooks: each turns one Airflow connection into the plain settings include/apisync expects.

The connections are those of the official providers, read the way each provider reads them: Kafka
(`kafka`: the provider's `KafkaBaseHook` builds the client config, with SASL/SSL settings, allowed
callbacks and managed OAuth), Redis (`redis`: the Redis provider's fields), and an API account as the
HTTP provider's `http` (host/schema/port, token as password) or the type of the API's own official
provider, read as its spec declares (`ApiSpec.connection`, an `apisync.connections.ConnectionSpec`:
e.g. GitHub's default URL, Salesforce's OAuth grants in `apisync.apis.salesforce.connection`).
`connection_fields` is the one place an Airflow connection becomes the plain data the core maps.
apisync's own connection types (`apisync_<api>`, one per registered API, forms in connection_forms.py)
store apisync's options (rate limits, `repos`, ...) as named form fields; on the official types they are
JSON extras. The HTTP provider's `proxies`, `cert` and `verify` extras are refused with the environment
variable that does the job instead (httpx honours HTTPS_PROXY / NO_PROXY and SSL_CERT_FILE), never ignored.

Connections are read through the Task SDK (`BaseHook.get_connection`), only when a hook method is
called, i.e. inside `execute`, never at DAG-parse time. The `*_from` functions do the translation
and are pure, so they are tested without Airflow running.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook
from airflow.providers.redis.hooks.redis import RedisHook
from airflow.sdk import BaseHook

from apisync.connections import ConnectionFields, connection_type, listed, settings_from_connection
from apisync.errors import FatalError
from apisync_airflow.connection_forms import coerce
from apisync_airflow.provider_info import api_hook_class_name

# The Redis provider's TLS extras (RedisHook.get_conn passes exactly these to redis.Redis).
_REDIS_SSL_ARGS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_keyfile", "ssl_certfile", "ssl_check_hostname")


class ConnectionConfigError(FatalError, ValueError):
    """A connection lacks something apisync needs; the message names the connection and the field."""


# The HTTP provider's transport extras apisync's client cannot take: each refused with what works instead.
_UNSUPPORTED_HTTP_EXTRAS = {
    "proxies": "set HTTPS_PROXY / HTTP_PROXY / NO_PROXY in the workers' environment (httpx reads them)",
    "cert": "client certificates are not supported",
    "verify": "certificate checks stay on; for a private CA set SSL_CERT_FILE in the workers' environment",
}


def refuse_unsupported_http_extras(conn_id: str, extra: Mapping[str, Any]) -> None:
    """Raise ConnectionConfigError for a transport extra that would otherwise be silently ignored."""
    for name, instead in _UNSUPPORTED_HTTP_EXTRAS.items():
        if name == "verify" and extra.get(name) in (None, True, "true", "True"):
            continue
        if extra.get(name) not in (None, "", {}):
            raise ConnectionConfigError(f"connection {conn_id!r}: extra {name!r} is not supported: {instead}")


def plain_extra(conn: Any, api: str) -> dict[str, Any]:
    """The extra with the UI's `extra__<conn type>__` prefixes removed and form fields in their types."""
    extra = dict(conn.extra_dejson or {})
    prefix = f"extra__{conn.conn_type}__"
    plain = {key.removeprefix(prefix): value for key, value in extra.items()}
    try:
        return coerce(api, plain)
    except ValueError as exc:
        raise ConnectionConfigError(f"connection {conn.conn_id!r}: a form field has the wrong type: {exc}") from None


def connection_fields(conn: Any, api: str) -> ConnectionFields:
    """The one place an Airflow connection becomes plain data: its standard fields and its plain_extra."""
    return ConnectionFields(conn_id=conn.conn_id, conn_type=conn.conn_type or "", host=conn.host, login=conn.login,
                            password=conn.password, port=conn.port, schema=conn.schema,
                            extra=plain_extra(conn, api))


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


def api_settings_from(conn: Any, api: str):
    """ApiSettings for one API, mapped from its connection as the API's spec declares (`ApiSpec.connection`)."""
    from apisync.registry import spec_for

    fields = connection_fields(conn, api)
    refuse_unsupported_http_extras(fields.conn_id, fields.extra)
    try:
        return settings_from_connection(api, spec_for(api).connection, fields)
    except (ValueError, OSError) as exc:  # the mapping names what is missing, never a secret
        raise ConnectionConfigError(f"connection {fields.conn_id!r}: {exc}") from None


def webhook_secrets_from(extra: Mapping[str, Any]) -> tuple[str, ...]:
    """The `webhook_secrets` list of an API connection's extra (a comma-separated string works too)."""
    return listed(extra.get("webhook_secrets"))


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
    """Third-party API connection (`<api>_default`: apisync_<api>, http or its provider's type) → ApiSettings."""

    conn_name_attr = "api_conn_id"
    hook_name = "apisync API"
    api = ""  # each API's connection type has a subclass naming it (api_hook_class)

    def __init__(self, api: str | None = None, api_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api = api or self.api
        self.api_conn_id = api_conn_id or f"{self.api}_default"

    def get_settings(self):
        """ApiSettings (the token stays inside it; it is never logged)."""
        return api_settings_from(self.get_connection(self.api_conn_id), self.api)

    def test_connection(self) -> tuple[bool, str]:
        """The UI's Test button: one cheap authenticated call to the API, and a line saying how it went."""
        try:
            return True, probe_api(self.get_settings(), _redis_url_or_none())
        except Exception as exc:  # the button shows the reason; the error types are the library's own
            return False, f"{self.api_conn_id}: {type(exc).__name__}: {exc}"


def probe_api(settings: Any, redis_url: str | None = None, transport: Any = None) -> str:
    """List the first page of the API's first collection (auth included, no retries); raise if refused."""
    from apisync.http import ApiClient, auth_for
    from apisync.registry import build_source, spec_for

    source = build_source(settings)
    collection = next(iter(source.collections))
    auth = auth_for(settings.api, settings.token, settings.oauth, base_url=settings.base_url, redis_url=redis_url)
    with ApiClient(settings.api, settings.base_url, auth, transport=transport, max_retries=0,
                   headers=getattr(source, "headers", None), signals=spec_for(settings.api).signals) as client:
        next(iter(source.list_ids(client, collection)), None)
    return f"{settings.api}: authenticated at {settings.base_url}, listed {collection}"


def _redis_url_or_none() -> str | None:
    # A rotating refresh token's newest link lives in Redis: a test must use it, or it would break the chain.
    try:
        return RedisUrlHook("redis_default").get_url()
    except Exception:  # no Redis connection where the test runs: tokens that do not rotate still work
        return None


def api_hook_class(api: str) -> type[ApiConnectionHook]:
    """The hook of the `apisync_<api>` connection type (Airflow builds it with `api_conn_id=` only)."""
    return type(api_hook_class_name(api), (ApiConnectionHook,), {
        "__module__": __name__, "__doc__": f"`{connection_type(api)}` connection → {api} ApiSettings.",
        "api": api, "conn_type": connection_type(api), "default_conn_name": f"{api}_default",
        "hook_name": f"apisync {api}"})


def __getattr__(name: str) -> type[ApiConnectionHook]:
    """`<Api>ApiHook` for every registered API, built on first use (the provider info names them)."""
    from apisync.registry import APIS

    for api in APIS:
        if api_hook_class_name(api) == name:
            globals()[name] = api_hook_class(api)
            return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
