"""The connection form of each API: the fields of an `apisync_<api>` connection and how the UI shows them.

Airflow reads these declaratively from the provider info (`conn-fields`, `ui-field-behaviour`), so the
form needs no hook import and no wtforms. Each API declares its own fields and how the standard fields
read in its spec (`ApiSpec.connection`, an `apisync.connections.ConnectionSpec`); the common fields are
here. Every field is stored in the connection's extra; the hooks read the same names
(`apisync_airflow.hooks.plain_extra` also accepts the UI's `extra__<type>__<name>` keys and turns the
form's strings into the declared types).
No Airflow import: the provider info is built from this without starting Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apisync.connections import STANDARD_FIELDS, FormField
from apisync.registry import spec_for

COMMON_FIELDS = (
    FormField("page_size", "Page size", "Objects per list request (empty: the API's largest page).", "integer"),
    FormField("rate_per_s", "Requests per second", "The account's request budget shared by every worker "
              "(empty: apisync's default for this API).", "number"),
    FormField("burst", "Burst", "Requests allowed at once above the rate (default 5).", "integer"),
    FormField("webhook_secrets", "Webhook signing secrets", "Comma-separated; any one may match (rotation).",
              "secret"),
)


def field_schema(field: FormField) -> dict[str, Any]:
    """The field's JSON schema as Airflow's `conn-fields` takes it (a password format is masked)."""
    if field.kind in ("integer", "number"):
        return {"type": ["null", field.kind]}
    if field.kind == "secret":
        return {"type": ["null", "string"], "format": "password"}
    if field.kind == "choice":
        # the UI lists the empty choice by its label in values_display, else as the word "null"
        return {"type": ["null", "string"], "enum": [None, *field.choices],
                "values_display": {"null": "(empty: inferred)"}}
    return {"type": ["null", "string"]}


def fields_for(api: str) -> tuple[FormField, ...]:
    """The form fields of one API's connection type: its own, then the common ones."""
    return (*spec_for(api).connection.form_fields, *COMMON_FIELDS)


def ui_field_behaviour(api: str) -> dict[str, Any]:
    """Hidden, relabelled and placeholder standard fields, as Airflow's `ui-field-behaviour` takes them."""
    declared = spec_for(api).connection
    shown = dict(declared.shown_fields)
    placeholders = {"host": "https://..."} if "host" in shown else {}
    return {"hidden-fields": [name for name in STANDARD_FIELDS if name not in shown],
            "relabeling": shown,
            "placeholders": {**placeholders, **declared.placeholders}}


def conn_fields(api: str) -> dict[str, Any]:
    """The `conn-fields` of one API's connection type."""
    return {f.name: {"label": f.label, "description": f.description, "schema": field_schema(f)}
            for f in fields_for(api)}


def coerce(api: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    """The extra with each declared field in its declared type (the form stores strings); empty ones dropped."""
    declared = {f.name: f for f in fields_for(api)}
    typed: dict[str, Any] = {}
    for key, value in extra.items():
        field = declared.get(key)
        if field is not None and value in (None, ""):
            continue
        typed[key] = field.typed(value) if field is not None else value
    return typed
