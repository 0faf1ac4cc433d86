"""A connection as plain data → ApiSettings, the way an API's ConnectionSpec declares it; and the extras an
API maps from its APISYNC_<API>_* variables."""

from __future__ import annotations

import pytest

from apisync.cli.common import api_settings_from_env
from apisync.connections import ConnectionFields, ConnectionSpec, FormField, extras_from_env, settings_from_connection
from apisync.settings import ApiSettings

ACME = ConnectionSpec(
    form_fields=(FormField("zones", "Zones", "Comma-separated.", "list"), FormField("window_s", "Window", "s.",
                                                                                  "number")),
    default_base_url="https://api.acme.test", provider_conn_types=("acme_cloud",),
    refused_extras=("app_key",), refused_hint="app keys are not supported",
    env_extras={"ZONES": "zones", "WINDOW": "window_s", "REGION": "region"},
)


def acme(conn_type: str = "apisync_acme", **fields) -> ConnectionFields:
    return ConnectionFields(conn_id="acme_default", conn_type=conn_type, **fields)


@pytest.mark.parametrize(("conn_type", "url"), [("apisync_acme", "https://api.acme.test"),
                                                ("acme_cloud", "https://api.acme.test")])
def test_a_connection_of_the_apis_own_types_without_host_gets_its_default_url(conn_type, url):
    settings = settings_from_connection("acme", ACME, acme(conn_type, password="tok"))
    assert (settings.api, settings.base_url, settings.token) == ("acme", url, "tok")


def test_the_http_providers_connection_needs_its_host():
    with pytest.raises(ValueError, match="no host"):
        settings_from_connection("acme", ACME, acme("http", password="tok"))
    settings = settings_from_connection("acme", ACME, acme("http", host="acme.example", port=8443, password="tok"))
    assert settings.base_url == "https://acme.example:8443"


def test_apisync_options_and_refused_extras_never_reach_the_source():
    extra = {"zones": ["eu"], "rate_per_s": "7", "burst": 2, "webhook_secrets": ["s"], "app_key": "k-secret"}
    settings = settings_from_connection("acme", ACME, acme(password="tok", extra=extra))
    assert (settings.extra, settings.rate_per_s, settings.burst) == ({"zones": ["eu"]}, 7.0, 2)


@pytest.mark.parametrize(("conn_type", "hint"), [("acme_cloud", True), ("apisync_acme", True), ("http", False)])
def test_without_a_token_the_refused_extras_are_named_on_the_apis_own_types(conn_type, hint):
    with pytest.raises(ValueError, match="no API token") as raised:
        settings_from_connection("acme", ACME, acme(conn_type, host="h", extra={"app_key": "k-secret"}))
    assert ("app keys are not supported" in str(raised.value)) is hint and "k-secret" not in str(raised.value)


def test_an_api_with_a_mapping_of_its_own_maps_its_connection():
    own = ConnectionSpec(settings_from=lambda conn: ApiSettings("acme", f"https://{conn.login}.acme.test", ""))
    assert settings_from_connection("acme", own, acme(login="org9")).base_url == "https://org9.acme.test"


def test_env_extras_are_typed_by_their_form_field_and_empty_ones_left_out():
    env = {"APISYNC_ACME_ZONES": "eu, us", "APISYNC_ACME_WINDOW": "2.5", "APISYNC_ACME_REGION": " ", "OTHER": "x"}
    assert extras_from_env(ACME, env, "APISYNC_ACME_") == {"zones": ["eu", "us"], "window_s": 2.5}
    assert extras_from_env(ACME, {"APISYNC_ACME_ZONES": " , "}, "APISYNC_ACME_") == {}


@pytest.mark.parametrize(("api", "variable", "value", "extra"), [
    ("github", "APISYNC_GITHUB_REPO", "octo/app, octo/lib", {"repos": ["octo/app", "octo/lib"]}),
    ("stripe", "APISYNC_STRIPE_API_VERSION", "2024-06-20", {"api_version": "2024-06-20"}),
    ("hubspot", "APISYNC_HUBSPOT_REPO", "octo/app", {}),  # an API reads only the variables it declares
])
def test_the_command_line_reads_the_variables_each_api_declares(api, variable, value, extra):
    prefix = f"APISYNC_{api.upper()}_"
    env = {f"{prefix}URL": "http://127.0.0.1:8765", f"{prefix}TOKEN": "tok", f"{prefix}RATE": "3", variable: value}
    settings = api_settings_from_env(api, env)
    assert (settings.api, settings.base_url, settings.token, settings.rate_per_s) == (
        api, "http://127.0.0.1:8765", "tok", 3.0)
    assert dict(settings.extra) == extra
