"""The connection form of each API: the fields of an `apisync_<api>` connection and how the UI shows them.

Airflow reads these declaratively from the provider info (`conn-fields`, `ui-field-behaviour`), so the
form needs no hook import and no wtforms. Every field is stored in the connection's extra; the hooks read
the same names (`apisync_airflow.hooks.plain_extra` also accepts the UI's `extra__<type>__<name>` keys
and turns the form's strings into the declared types). An API without a declaration here gets the
common fields only; its own options stay editable in the extra JSON.
No Airflow import: the provider info is built from this without starting Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FormField:
    """One connection form field: an extra key, its label, its help and its type."""

    name: str
    label: str
    description: str
    kind: str = "string"  # string | integer | number | list (comma-separated) | secret | choice
    choices: tuple[str, ...] = ()

    def schema(self) -> dict[str, Any]:
        """The field's JSON schema as Airflow's `conn-fields` takes it (a password format is masked)."""
        if self.kind in ("integer", "number"):
            return {"type": ["null", self.kind]}
        if self.kind == "secret":
            return {"type": ["null", "string"], "format": "password"}
        if self.kind == "choice":
            # the UI lists the empty choice by its label in values_display, else as the word "null"
            return {"type": ["null", "string"], "enum": [None, *self.choices],
                    "values_display": {"null": "(empty: inferred)"}}
        return {"type": ["null", "string"]}


COMMON_FIELDS = (
    FormField("page_size", "Page size", "Objects per list request (empty: the API's largest page).", "integer"),
    FormField("rate_per_s", "Requests per second", "The account's request budget shared by every worker "
              "(empty: apisync's default for this API).", "number"),
    FormField("burst", "Burst", "Requests allowed at once above the rate (default 5).", "integer"),
    FormField("webhook_secrets", "Webhook signing secrets", "Comma-separated; any one may match (rotation).",
              "secret"),
)

API_FIELDS: Mapping[str, tuple[FormField, ...]] = {
    "stripe": (
        FormField("api_version", "Stripe-Version", "The API version to pin every request to, e.g. 2024-06-20 "
                  "(empty: the account's default)."),
        FormField("settle_s", "Events settle window (s)", "Read /v1/events only up to now minus this: the "
                  "events list is eventually consistent.", "number"),
    ),
    "github": (
        FormField("repos", "Repositories", "Comma-separated owner/name, e.g. octo/app, octo/lib.", "list"),
    ),
    "salesforce": (
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
    ),
    "hubspot": (
        FormField("lookback_s", "Lookback (s)", "The window re-read on every incremental run (search lag).",
                  "number"),
    ),
}

# How the standard fields read for each API (the rest are hidden). The token is always the password field.
_HOST_HELP = {"stripe": "https://api.stripe.com", "github": "https://api.github.com (or GitHub Enterprise "
              ".../api/v3)", "hubspot": "https://api.hubapi.com"}


def fields_for(api: str) -> tuple[FormField, ...]:
    """The form fields of one API's connection type: its own, then the common ones."""
    return (*API_FIELDS.get(api, ()), *COMMON_FIELDS)


def connection_type(api: str) -> str:
    """The connection type of one API, e.g. `apisync_stripe`."""
    return f"apisync_{api}"


def ui_field_behaviour(api: str) -> dict[str, Any]:
    """Hidden, relabelled and placeholder standard fields, as Airflow's `ui-field-behaviour` takes them."""
    if api == "salesforce":
        # The JWT-bearer grant signs the integration user's username (its `sub` claim): the login field.
        return {"hidden-fields": ["schema", "port", "host"],
                "relabeling": {"login": "Username (JWT bearer)",
                               "password": "Access token (static; leave empty with an OAuth grant)"},
                "placeholders": {"instance_url": "https://acme.my.salesforce.com",
                                 "login": "integration@acme.com"}}
    return {"hidden-fields": ["schema", "port", "login"],
            "relabeling": {"host": "API base URL", "password": "API token"},
            "placeholders": {"host": _HOST_HELP.get(api, "https://...")}}


def conn_fields(api: str) -> dict[str, Any]:
    """The `conn-fields` of one API's connection type."""
    return {f.name: {"label": f.label, "description": f.description, "schema": f.schema()} for f in fields_for(api)}


def coerce(api: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    """The extra with each declared field in its declared type (the form stores strings); empty ones dropped."""
    declared = {f.name: f for f in fields_for(api)}
    typed: dict[str, Any] = {}
    for key, value in extra.items():
        field = declared.get(key)
        if field is not None and value in (None, ""):
            continue
        typed[key] = _typed(field, value) if field is not None else value
    return typed


def _typed(field: FormField, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if field.kind == "integer":
        return int(value)
    if field.kind == "number":
        return float(value)
    if field.kind == "list":
        return [item.strip() for item in value.split(",") if item.strip()]
    return value
