"""An API connection as plain data, and what each API declares about its connection.

Wherever an API account is kept (an Airflow connection, `APISYNC_<API>_*` variables), the caller turns it
into `ConnectionFields` (the Airflow plugin does so in one place, `apisync_airflow.hooks.connection_fields`)
and `settings_from_connection` turns those into the `ApiSettings` a source runs with, the way the API's
`ConnectionSpec` (`ApiSpec.connection`) says: its form fields, its default base URL, the connection types
of the official providers it reads, the extras it refuses, or a mapping of its own. Names no API and
imports none; sits below the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from apisync.settings import ApiSettings

# Keys of an API connection's extra that configure apisync rather than the source.
APISYNC_EXTRAS = ("rate_per_s", "burst", "webhook_secrets")
# The standard fields of a connection form, in the order a form hides them.
STANDARD_FIELDS = ("schema", "port", "host", "login", "password")


@dataclass(frozen=True, slots=True)
class FormField:
    """One connection form field: an extra key, its label, its help and its type."""

    name: str
    label: str
    description: str
    kind: str = "string"  # string | integer | number | list (comma-separated) | secret | choice
    choices: tuple[str, ...] = ()

    def typed(self, value: Any) -> Any:
        """The value in the field's type (forms and environment variables give strings)."""
        if not isinstance(value, str):
            return value
        if self.kind == "integer":
            return int(value)
        if self.kind == "number":
            return float(value)
        if self.kind == "list":
            return [item.strip() for item in value.split(",") if item.strip()]
        return value


@dataclass(frozen=True, slots=True)
class ConnectionFields:
    """One connection's standard fields and its extra (UI prefixes removed), as plain data."""

    conn_id: str
    conn_type: str = ""
    host: str | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    port: int | None = None
    schema: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)


def _default_shown() -> dict[str, str]:
    return {"host": "API base URL", "password": "API token"}


@dataclass(frozen=True, slots=True)
class ConnectionSpec:
    """How one API's account is given: its form, and how a connection maps to its ApiSettings."""

    form_fields: tuple[FormField, ...] = ()  # its own options, stored in the extra (the common ones are added)
    # The standard fields its form shows, with their labels; the other STANDARD_FIELDS are hidden.
    shown_fields: Mapping[str, str] = field(default_factory=_default_shown)
    placeholders: Mapping[str, str] = field(default_factory=dict)  # {field or extra: an example value}
    default_base_url: str | None = None  # on a connection of its own types without a host
    # Connection types of official providers whose fields it reads (besides `apisync_<api>` and the HTTP
    # provider's `http`, which every API reads): its defaults and refusal hint apply to them too.
    provider_conn_types: tuple[str, ...] = ()
    # Extras of a provider's authentication apisync cannot use: never passed on, named by `refused_hint`
    # when the connection has no token.
    refused_extras: tuple[str, ...] = ()
    refused_hint: str = ""
    # A mapping of its own (ValueError naming a missing field), for an API whose connection reads differently.
    settings_from: Callable[[ConnectionFields], ApiSettings] | None = None
    # {suffix of an APISYNC_<API>_<SUFFIX> variable: the extra it sets}, in the form field's type if declared.
    env_extras: Mapping[str, str] = field(default_factory=dict)


def connection_type(api: str) -> str:
    """apisync's own connection type of one API, e.g. `apisync_<api>`."""
    return f"apisync_{api}"


def listed(value: Any) -> tuple[str, ...]:
    """A list extra's non-empty items: a list, or a comma-separated string."""
    items = value.split(",") if isinstance(value, str) else (value or ())
    return tuple(str(item).strip() for item in items if str(item).strip())


def rate_from(extra: Mapping[str, Any]) -> float | None:
    """The `rate_per_s` extra (empty: the API's default budget)."""
    rate = extra.get("rate_per_s")
    return float(rate) if rate not in (None, "") else None


def base_url_from(conn: ConnectionFields) -> str:
    """The API base URL as the HTTP provider builds it from host, schema and port (https by default)."""
    host = (conn.host or "").strip().rstrip("/")
    if not host:
        raise ValueError("no host (the API base URL)")
    # The provider defaults to http; an API token must not travel in clear text unless asked for.
    url = host if "://" in host else f"{(conn.schema or 'https').strip()}://{host}"
    parts = urlsplit(url)
    if conn.port and parts.port is None:
        parts = parts._replace(netloc=f"{parts.netloc}:{conn.port}")
    return urlunsplit(parts)


def settings_from_connection(api: str, spec: ConnectionSpec, conn: ConnectionFields) -> ApiSettings:
    """ApiSettings for one API: base URL from host, token from password, options from extra (ValueError
    naming what is missing)."""
    if spec.settings_from is not None:
        return spec.settings_from(conn)
    extra = dict(conn.extra)
    own_type = conn.conn_type in (connection_type(api), *spec.provider_conn_types)
    if not conn.password:
        refused = own_type and spec.refused_hint and any(name in extra for name in spec.refused_extras)
        raise ValueError("no API token (set the password field)" + (f" ({spec.refused_hint})" if refused else ""))
    default_url = spec.default_base_url if own_type and not (conn.host or "").strip() else None
    dropped = (*APISYNC_EXTRAS, *spec.refused_extras)
    return ApiSettings(api=api, base_url=default_url or base_url_from(conn), token=conn.password,
                       extra={k: v for k, v in extra.items() if k not in dropped}, rate_per_s=rate_from(extra),
                       burst=int(extra.get("burst", 5)))


def extras_from_env(spec: ConnectionSpec, env: Mapping[str, str], prefix: str) -> dict[str, Any]:
    """The extras an API reads from `<prefix><SUFFIX>` variables (`ConnectionSpec.env_extras`), typed."""
    declared = {f.name: f for f in spec.form_fields}
    extra = {}
    for suffix, name in spec.env_extras.items():
        raw = env.get(prefix + suffix, "").strip()
        value = declared[name].typed(raw) if raw and name in declared else raw
        if value not in ("", []):
            extra[name] = value
    return extra
