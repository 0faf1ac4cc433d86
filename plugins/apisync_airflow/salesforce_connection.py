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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apisync.settings import ApiSettings, OAuthSettings

# Extras that are credentials: they go into OAuthSettings (never repr'd), never into `extra`.
SECRET_EXTRAS = ("consumer_secret", "private_key", "private_key_file_path", "refresh_token", "security_token")
_RESERVED = ("rate_per_s", "burst", "webhook_secrets", "outbound_message_secrets", *SECRET_EXTRAS)


def provider_field(extra: dict[str, Any], name: str) -> Any:
    """An extra by its short name, else by the provider's legacy `extra__salesforce__` name."""
    return extra.get(name) or extra.get(f"extra__salesforce__{name}") or None


def instance_url_from(conn: Any, extra: dict[str, Any]) -> str:
    """The org's instance (My Domain) URL: extra instance_url, else instance, else the host."""
    url = str(provider_field(extra, "instance_url") or provider_field(extra, "instance") or "").strip().rstrip("/")
    if url:
        return url if "://" in url else f"https://{url}"
    if not conn.host:
        raise ValueError("no instance URL: set extra instance_url (e.g. https://mycompany.my.salesforce.com)")
    from apisync_airflow.hooks import base_url_from

    return base_url_from(conn)


def login_url_from(extra: dict[str, Any], instance_url: str) -> str:
    """Where tokens come from: extra token_url, else the provider's `domain`, else the instance."""
    if extra.get("token_url"):
        return str(extra["token_url"])
    domain = provider_field(extra, "domain")
    if not domain:
        return f"{instance_url}/services/oauth2/token"  # My Domain serves every flow
    base = domain if "://" in domain else f"https://{domain}.salesforce.com"  # simple-salesforce's rule
    return f"{base.rstrip('/')}/services/oauth2/token"


def choose_flow(conn: Any, extra: dict[str, Any]) -> str:
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


def oauth_from(conn: Any, extra: dict[str, Any], flow: str, instance_url: str) -> OAuthSettings:
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


def salesforce_settings_from(conn: Any) -> ApiSettings:
    """ApiSettings for a Salesforce connection (ValueError naming the field that is missing)."""
    extra = dict(conn.extra_dejson or {})
    instance_url = instance_url_from(conn, extra)
    flow = choose_flow(conn, extra)
    oauth = None if flow == "access_token" else oauth_from(conn, extra, flow, instance_url)
    rate = extra.get("rate_per_s")
    kept = {k: v for k, v in extra.items() if k.removeprefix("extra__salesforce__") not in _RESERVED}
    return ApiSettings(api="salesforce", base_url=instance_url, token=(conn.password or "") if oauth is None else "",
                       extra=kept, rate_per_s=float(rate) if rate not in (None, "") else None,
                       burst=int(extra.get("burst", 5)), oauth=oauth)
