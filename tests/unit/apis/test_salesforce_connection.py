"""Salesforce connections: the official provider's fields (and the older http shape) become ApiSettings."""

from __future__ import annotations

import json

import pytest
from airflow.sdk import Connection

from apisync_airflow.hooks import ConnectionConfigError, api_settings_from
from apisync_airflow.webhook_app import webhook_settings_from_env

SECRET, REFRESH, KEY = "cs-s3cr3t", "rt-r3fr3sh", "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n"
INSTANCE = "https://acme.my.salesforce.com"


def sf(conn_type: str = "salesforce", **fields) -> Connection:
    extra = fields.pop("extra", {})
    return Connection(conn_id="salesforce_default", conn_type=conn_type, extra=json.dumps(extra), **fields)


@pytest.mark.parametrize(("conn", "flow", "token_url", "audience"), [
    (sf(extra={"instance_url": INSTANCE, "consumer_key": "ck", "consumer_secret": SECRET}),
     "client_credentials", f"{INSTANCE}/services/oauth2/token", "https://login.salesforce.com"),
    (sf(extra={"instance_url": INSTANCE, "consumer_key": "ck", "refresh_token": REFRESH, "domain": "test"}),
     "refresh_token", "https://test.salesforce.com/services/oauth2/token", "https://test.salesforce.com"),
    (sf(login="int@acme", extra={"extra__salesforce__instance_url": INSTANCE, "extra__salesforce__consumer_key": "ck",
                                 "extra__salesforce__private_key": KEY}),
     "jwt_bearer", f"{INSTANCE}/services/oauth2/token", "https://login.salesforce.com"),
    (sf(login="int@acme", extra={"instance": "acme.my.salesforce.com", "consumer_key": "ck", "private_key": KEY,
                                 "consumer_secret": SECRET, "domain": "acme.my"}),
     "jwt_bearer", "https://acme.my.salesforce.com/services/oauth2/token", "https://login.salesforce.com"),
])
def test_provider_connections_choose_their_flow(conn, flow, token_url, audience):
    settings = api_settings_from(conn, "salesforce")
    assert (settings.base_url, settings.oauth.flow, settings.oauth.token_url) == (INSTANCE, flow, token_url)
    assert settings.oauth.client_id == "ck"
    if flow == "jwt_bearer":
        oauth = settings.oauth
        assert (oauth.username, oauth.audience, oauth.private_key) == ("int@acme", audience, KEY)
    shown = repr(settings) + str(settings.extra)
    assert SECRET not in shown and REFRESH not in shown and "abc" not in shown


def test_a_private_key_file_is_read_when_settings_are_built(tmp_path):
    path = tmp_path / "server.key"
    path.write_text(KEY)
    settings = api_settings_from(sf(login="u", extra={"instance_url": INSTANCE, "consumer_key": "ck",
                                                      "private_key_file_path": str(path)}), "salesforce")
    assert settings.oauth.private_key == KEY and "private_key_file_path" not in settings.extra


def test_the_older_http_connection_is_a_static_token_and_keeps_options():
    settings = api_settings_from(sf("http", host=INSTANCE, password="00Dx!tok",
                                    extra={"lookback_s": 600, "rate_per_s": 3}), "salesforce")
    assert (settings.oauth, settings.token, settings.base_url, settings.rate_per_s) == (None, "00Dx!tok", INSTANCE, 3.0)
    assert settings.extra["lookback_s"] == 600


@pytest.mark.parametrize(("conn", "says"), [
    (sf(login="u", password="pw", extra={"instance_url": INSTANCE, "security_token": "st"}), "username-password"),
    (sf(extra={"consumer_key": "ck", "consumer_secret": SECRET}), "instance_url"),
    (sf(extra={"instance_url": INSTANCE, "consumer_key": "ck", "private_key": KEY}), "username"),
    (sf(extra={"instance_url": INSTANCE, "auth_flow": "password", "consumer_key": "ck"}), "unknown OAuth flow"),
])
def test_unusable_connections_say_what_is_missing(conn, says):
    with pytest.raises(ConnectionConfigError, match=says) as raised:
        api_settings_from(conn, "salesforce")
    assert SECRET not in str(raised.value) and "salesforce_default" in str(raised.value)


def test_the_receiver_accepts_the_connections_organization():
    conn = {"conn_type": "salesforce", "extra": {"organization_id": "00D5g000004ApisAAA"}}
    env = {"AIRFLOW_CONN_SALESFORCE_DEFAULT": json.dumps(conn), "APISYNC_SALESFORCE_ORG_IDS": "00DOTHER0000001"}
    outbound = webhook_settings_from_env(env).api_options["salesforce"]
    assert outbound["organization_ids"] == ("00DOTHER0000001", "00D5g000004ApisAAA")


@pytest.mark.parametrize("listed", [["om-path-secret", " "], "om-path-secret, "])
def test_the_outbound_messaging_path_secret_comes_from_the_connection_and_the_env(listed):
    conn = {"conn_type": "salesforce", "extra": {"instance_url": INSTANCE, "consumer_key": "ck",
                                                 "consumer_secret": SECRET, "outbound_message_secrets": listed}}
    env = {"AIRFLOW_CONN_SALESFORCE_DEFAULT": json.dumps(conn), "APISYNC_SALESFORCE_OUTBOUND_SECRETS": "env-secret"}
    assert webhook_settings_from_env(env).api_options["salesforce"]["outbound_secrets"] == ("env-secret",
                                                                                           "om-path-secret")
    settings = api_settings_from(sf(extra=conn["extra"]), "salesforce")
    assert "outbound_message_secrets" not in settings.extra and "om-path-secret" not in repr(settings)


def test_every_connection_type_the_demo_uses_has_an_installed_provider_with_a_ui_form():
    """The UI offers a form only for connection types an installed provider registers (issue 13)."""
    import json
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
    # the Salesforce form has the fields apisync reads (salesforce_connection.py)
    assert {f"extra__salesforce__{f}" for f in ("consumer_key", "consumer_secret", "private_key", "instance_url",
                                                 "domain", "organization_id")} <= set(widgets)
