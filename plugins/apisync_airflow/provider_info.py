"""What Airflow learns about apisync as a provider (the `apache_airflow_provider` entry point).

One connection type per registered API (`apisync_<api>`, its form from connection_forms, its hook the
API's ApiConnectionHook subclass with a Test button that makes one cheap authenticated call), the alert
notifier and the plugin that mounts the webhook receiver. Built from the registry, so a registered API
gets its connection type without a line here. No Airflow import: `airflow providers list` reads it early.
"""

from __future__ import annotations

from typing import Any

from apisync._version import __version__
from apisync.connections import connection_type
from apisync_airflow.connection_forms import conn_fields, ui_field_behaviour

PACKAGE_NAME = "apisync"


def api_hook_class_name(api: str) -> str:
    """The hook class of one API's connection type, e.g. `StripeApiHook` (built on demand in hooks.py)."""
    return "".join(part.capitalize() for part in api.split("_")) + "ApiHook"


def connection_types() -> list[dict[str, Any]]:
    """One `apisync_<api>` connection type per registered API, with its form."""
    from apisync.registry import APIS

    return [{"connection-type": connection_type(api), "hook-name": f"apisync {api}",
             "hook-class-name": f"apisync_airflow.hooks.{api_hook_class_name(api)}",
             "conn-fields": conn_fields(api), "ui-field-behaviour": ui_field_behaviour(api)} for api in APIS]


def get_provider_info() -> dict[str, Any]:
    """The provider info dict Airflow's ProvidersManager validates and reads."""
    from apisync.registry import APIS

    return {
        "package-name": PACKAGE_NAME,
        "name": "apisync",
        "description": f"Third-party API data ({', '.join(APIS)}) into Kafka as records and events.",
        "versions": [__version__],
        "connection-types": connection_types(),
        "notifications": ["apisync_airflow.notifiers.ApisyncAlertNotifier"],
        # No "plugins" entry: Airflow loads a provider's plugins only with `lazy_discover_providers = False`
        # (not the default), so the plugin comes through the package's `airflow.plugins` entry point, which is
        # always loaded; declaring it here as well would register it twice and show a plugin import error.
    }
