"""A Salesforce connection through the plugin: the hook's errors name it, the receiver reads its extras,
and the official provider's form offers the fields apisync reads."""

from __future__ import annotations

import json

import pytest
from airflow.sdk import Connection

from apisync_airflow.hooks import ConnectionConfigError, api_settings_from
from apisync_airflow.webhook_app import receiver_settings

SECRET = "cs-s3cr3t"
INSTANCE = "https://acme.my.salesforce.com"


def sf(conn_type: str = "salesforce", **fields) -> Connection:
    extra = fields.pop("extra", {})
    return Connection(conn_id="salesforce_default", conn_type=conn_type, extra=json.dumps(extra), **fields)


@pytest.mark.parametrize("conn_type", ["salesforce", "apisync_salesforce"])
def test_the_hook_maps_the_connection_through_the_spec(conn_type):
    extra = {"instance_url": INSTANCE, "consumer_key": "ck", "consumer_secret": SECRET, "page_size": "500"}
    settings = api_settings_from(sf(conn_type, extra=extra), "salesforce")
    assert (settings.base_url, settings.oauth.flow, settings.extra["page_size"]) == (INSTANCE, "client_credentials",
                                                                                     500)
    assert "consumer_secret" not in settings.extra and SECRET not in repr(settings)


def test_an_unusable_connection_is_a_config_error_naming_it():
    with pytest.raises(ConnectionConfigError, match="salesforce_default.*instance_url") as raised:
        api_settings_from(sf(extra={"consumer_key": "ck", "consumer_secret": SECRET}), "salesforce")
    assert SECRET not in str(raised.value)


def test_the_receiver_accepts_the_connections_organization():
    conn = {"conn_type": "salesforce", "extra": {"organization_id": "00D5g000004ApisAAA"}}
    outbound = receiver_settings({"APISYNC_SALESFORCE_ORG_IDS": "00DOTHER0000001"},
                                 {"salesforce": conn["extra"]}).api_options["salesforce"]
    assert outbound["organization_ids"] == ("00DOTHER0000001", "00D5g000004ApisAAA")


@pytest.mark.parametrize("listed", [["om-path-secret", " "], "om-path-secret, "])
def test_the_outbound_messaging_path_secret_comes_from_the_connection_and_the_env(listed):
    conn = {"conn_type": "salesforce", "extra": {"instance_url": INSTANCE, "consumer_key": "ck",
                                                 "consumer_secret": SECRET, "outbound_message_secrets": listed}}
    env = {"APISYNC_SALESFORCE_OUTBOUND_SECRETS": "env-secret"}
    assert receiver_settings(env, {"salesforce": conn["extra"]}).api_options["salesforce"]["outbound_secrets"] == \
        ("env-secret", "om-path-secret")
    settings = api_settings_from(sf(extra=conn["extra"]), "salesforce")
    assert "outbound_message_secrets" not in settings.extra and "om-path-secret" not in repr(settings)


def test_every_connection_type_the_demo_uses_has_an_installed_provider_with_a_ui_form():
    """The UI offers a form only for connection types an installed provider registers (issue 13)."""
    import warnings

    from devstack.airflow import connection_env

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the UI's own registry; deprecated for task code only
        from airflow.providers_manager import ProvidersManager

        manager = ProvidersManager()
        hooks, widgets = manager.hooks, manager.connection_form_widgets
    env = connection_env("127.0.0.1:9092", "redis://127.0.0.1:6379/0", "http://127.0.0.1:8000")
    types = {json.loads(value)["conn_type"] for name, value in env.items() if name.startswith("AIRFLOW_CONN_")}
    assert {"kafka", "redis", "http", "github", "salesforce"} <= types
    assert [t for t in sorted(types) if hooks.get(t) is None] == []
    # the Salesforce form has the fields apisync reads (apisync/apis/salesforce/connection.py)
    assert {f"extra__salesforce__{f}" for f in ("consumer_key", "consumer_secret", "private_key", "instance_url",
                                                 "domain", "organization_id")} <= set(widgets)
