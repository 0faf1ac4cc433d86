"""A Salesforce connection → ApiSettings, reading the fields of the official Salesforce provider.

Users of `apache-airflow-providers-salesforce` already have a connection of type `salesforce` with
extras `consumer_key`, `consumer_secret`, `private_key` | `private_key_file_path`, `domain`,
`instance_url` | `instance`, `organization_id` (the provider's hook, `SalesforceHook.conn`, also
accepts them with the old `extra__salesforce__` prefix). Those work here unchanged; apisync adds
`refresh_token`, `auth_flow`, `token_url`, `audience` and `lookback_s`. The older apisync shape
(type `http`, host = instance URL, password = access token) still works, as a static token.

The flow is `auth_flow` when set, else decided in this order: a private key → jwt_bearer; a
refresh_token → refresh_token; consumer_key + consumer_secret → client_credentials; an `http`
connection's password → a static access token. The provider's username-password login (password +
security token) is not supported: Salesforce blocks it by default in new orgs.

With refresh-token rotation on in the org's app, the `refresh_token` extra is only where the chain starts:
every refresh returns a new token and invalidates the old one, so the newest lives in Redis, shared by
every worker (apisync.http.refresh_tokens); a re-authorised app's new `refresh_token` starts a new chain.
`instance_url` is where requests start; a token answer naming another instance (the org moved) wins.

The connection also feeds the receiver's Outbound Messaging endpoint (`outbound_options_from_connection`):
its `organization_id` and `outbound_message_secrets` join APISYNC_SALESFORCE_ORG_IDS and
APISYNC_SALESFORCE_OUTBOUND_SECRETS.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from apisync.connections import (
    APISYNC_EXTRAS,
    ConnectionFields,
    ConnectionSpec,
    FormField,
    base_url_from,
    listed,
    rate_from,
)
from apisync.settings import ApiSettings, OAuthSettings

LEGACY_PREFIX = "extra__salesforce__"  # the provider's older extra names
# Extras that are credentials: they go into OAuthSettings (never repr'd), never into `extra`.
SECRET_EXTRAS = ("consumer_secret", "private_key", "private_key_file_path", "refresh_token", "security_token")
_RESERVED = (*APISYNC_EXTRAS, "outbound_message_secrets", *SECRET_EXTRAS)

FORM_FIELDS = (
    FormField("instance_url", "Instance URL", "The org's My Domain URL, e.g. https://acme.my.salesforce.com."),
    FormField("auth_flow", "OAuth grant", "Empty: inferred from the fields set (private key, refresh "
              "token, consumer secret).", "choice", ("refresh_token", "client_credentials", "jwt_bearer")),
    FormField("consumer_key", "Consumer key", "The connected app's client id."),
    FormField("consumer_secret", "Consumer secret", "Client credentials and refresh-token grants.", "secret"),
    FormField("refresh_token", "Refresh token", "Refresh-token grant: where the token chain starts.", "secret"),
    FormField("private_key", "Private key (PEM)", "JWT-bearer grant: the RS256 signing key.", "secret"),
    FormField("private_key_file_path", "Private key file", "JWT-bearer grant: a PEM file on the workers."),
    FormField("domain", "Login domain", "login (production) or test (sandbox) for JWT bearer; or a "
              "My Domain URL."),
    FormField("token_url", "Token URL", "Empty: <instance URL>/services/oauth2/token."),
    FormField("audience", "JWT audience", "Empty: https://login.salesforce.com (test.salesforce.com for "
              "domain test)."),
    FormField("lookback_s", "Lookback (s)", "The smallest window re-read on every incremental run "
              "(late commits).", "number"),
)


def provider_field(extra: Mapping[str, Any], name: str) -> Any:
    """An extra by its short name, else by the provider's legacy `extra__salesforce__` name."""
    return extra.get(name) or extra.get(f"{LEGACY_PREFIX}{name}") or None


def instance_url_from(conn: ConnectionFields, extra: Mapping[str, Any]) -> str:
    """The org's instance (My Domain) URL: extra instance_url, else instance, else the host."""
    url = str(provider_field(extra, "instance_url") or provider_field(extra, "instance") or "").strip().rstrip("/")
    if url:
        return url if "://" in url else f"https://{url}"
    if not conn.host:
        raise ValueError("no instance URL: set extra instance_url (e.g. https://mycompany.my.salesforce.com)")
    return base_url_from(conn)


def login_url_from(extra: Mapping[str, Any], instance_url: str) -> str:
    """Where tokens come from: extra token_url, else the provider's `domain`, else the instance."""
    if extra.get("token_url"):
        return str(extra["token_url"])
    domain = provider_field(extra, "domain")
    if not domain:
        return f"{instance_url}/services/oauth2/token"  # My Domain serves every flow
    base = domain if "://" in domain else f"https://{domain}.salesforce.com"  # simple-salesforce's rule
    return f"{base.rstrip('/')}/services/oauth2/token"


def choose_flow(conn: ConnectionFields, extra: Mapping[str, Any]) -> str:
    """The explicit `auth_flow`, else the documented inference order (module docstring)."""
    if extra.get("auth_flow"):
        return str(extra["auth_flow"])
    if provider_field(extra, "private_key") or provider_field(extra, "private_key_file_path"):
        return "jwt_bearer"
    if provider_field(extra, "refresh_token"):
        return "refresh_token"
    if provider_field(extra, "consumer_key") and provider_field(extra, "consumer_secret"):
        return "client_credentials"
    if conn.password and (conn.conn_type or "http") != "salesforce":
        return "access_token"
    raise ValueError("no usable credentials: set consumer_key with consumer_secret (client credentials), "
                     "refresh_token, or private_key (JWT bearer); username-password login is not supported")


def oauth_from(conn: ConnectionFields, extra: Mapping[str, Any], flow: str, instance_url: str) -> OAuthSettings:
    """OAuthSettings for one of the three grants (ValueError naming a missing field)."""
    key = provider_field(extra, "private_key")
    key_path = provider_field(extra, "private_key_file_path")
    if flow == "jwt_bearer" and not key and key_path:
        key = Path(key_path).read_text()  # read in the task, never at DAG-parse time
    domain = str(provider_field(extra, "domain") or "")
    audience = extra.get("audience") or ("https://test.salesforce.com" if domain == "test"
                                          else "https://login.salesforce.com")
    return OAuthSettings(flow=flow, token_url=login_url_from(extra, instance_url),
                         client_id=str(provider_field(extra, "consumer_key") or ""),
                         client_secret=str(provider_field(extra, "consumer_secret") or ""),
                         refresh_token=str(provider_field(extra, "refresh_token") or ""),
                         private_key=str(key or ""), username=str(conn.login or ""), audience=str(audience))


def salesforce_settings_from(conn: ConnectionFields) -> ApiSettings:
    """ApiSettings for a Salesforce connection (ValueError naming the field that is missing)."""
    extra = dict(conn.extra)
    instance_url = instance_url_from(conn, extra)
    flow = choose_flow(conn, extra)
    oauth = None if flow == "access_token" else oauth_from(conn, extra, flow, instance_url)
    kept = {k: v for k, v in extra.items() if k.removeprefix(LEGACY_PREFIX) not in _RESERVED}
    return ApiSettings(api="salesforce", base_url=instance_url, token=(conn.password or "") if oauth is None else "",
                       extra=kept, rate_per_s=rate_from(extra), burst=int(extra.get("burst", 5)), oauth=oauth)


def outbound_options_from_connection(extra: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """The Outbound Messaging endpoint's options a connection gives: its organisation, its path secrets."""
    org = str(provider_field(extra, "organization_id") or "").strip()
    return {"organization_ids": (org,) if org else (),
            "outbound_secrets": listed(extra.get("outbound_message_secrets"))}


CONNECTION = ConnectionSpec(
    form_fields=FORM_FIELDS,
    # The JWT-bearer grant signs the integration user's username (its `sub` claim): the login field.
    shown_fields={"login": "Username (JWT bearer)",
                  "password": "Access token (static; leave empty with an OAuth grant)"},
    placeholders={"instance_url": "https://acme.my.salesforce.com", "login": "integration@acme.com"},
    provider_conn_types=("salesforce",),
    settings_from=salesforce_settings_from,
)
