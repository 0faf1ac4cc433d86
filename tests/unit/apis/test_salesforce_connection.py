"""Salesforce connections: the official provider's fields (and the older http shape) become ApiSettings."""

from __future__ import annotations

import pytest

from apisync.apis.salesforce.connection import outbound_options_from_connection, salesforce_settings_from
from apisync.connections import ConnectionFields

SECRET, REFRESH, KEY = "cs-s3cr3t", "rt-r3fr3sh", "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n"
INSTANCE = "https://acme.my.salesforce.com"


def sf(conn_type: str = "salesforce", **fields) -> ConnectionFields:
    return ConnectionFields(conn_id="salesforce_default", conn_type=conn_type, **fields)


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
    settings = salesforce_settings_from(conn)
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
    settings = salesforce_settings_from(sf(login="u", extra={"instance_url": INSTANCE, "consumer_key": "ck",
                                                             "private_key_file_path": str(path)}))
    assert settings.oauth.private_key == KEY and "private_key_file_path" not in settings.extra


def test_the_older_http_connection_is_a_static_token_and_keeps_options():
    settings = salesforce_settings_from(sf("http", host=INSTANCE, password="00Dx!tok",
                                           extra={"lookback_s": 600, "rate_per_s": 3}))
    assert (settings.oauth, settings.token, settings.base_url, settings.rate_per_s) == (None, "00Dx!tok", INSTANCE, 3.0)
    assert settings.extra["lookback_s"] == 600


@pytest.mark.parametrize(("conn", "says"), [
    (sf(login="u", password="pw", extra={"instance_url": INSTANCE, "security_token": "st"}), "username-password"),
    (sf(extra={"consumer_key": "ck", "consumer_secret": SECRET}), "instance_url"),
    (sf(extra={"instance_url": INSTANCE, "consumer_key": "ck", "private_key": KEY}), "username"),
    (sf(extra={"instance_url": INSTANCE, "auth_flow": "password", "consumer_key": "ck"}), "unknown OAuth flow"),
])
def test_unusable_connections_say_what_is_missing(conn, says):
    with pytest.raises(ValueError, match=says) as raised:
        salesforce_settings_from(conn)
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize(("extra", "options"), [
    ({"organization_id": " 00D5g000004ApisAAA ", "outbound_message_secrets": ["om-1", " "]},
     {"organization_ids": ("00D5g000004ApisAAA",), "outbound_secrets": ("om-1",)}),
    ({"extra__salesforce__organization_id": "00D5g000004ApisAAA", "outbound_message_secrets": "om-1, om-2"},
     {"organization_ids": ("00D5g000004ApisAAA",), "outbound_secrets": ("om-1", "om-2")}),
    ({"instance_url": INSTANCE}, {"organization_ids": (), "outbound_secrets": ()}),
])
def test_the_connection_gives_the_outbound_messaging_endpoint_its_org_and_path_secrets(extra, options):
    assert outbound_options_from_connection(extra) == options
