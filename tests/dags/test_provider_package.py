"""apisync as a package and an Airflow provider: the metadata Airflow reads, the connection forms, the
Test button's call, the refused HTTP extras, the console script and the three-line DAG file."""

from __future__ import annotations

import importlib
import json
import tomllib
from pathlib import Path

import httpx
import jsonschema
import pytest
from airflow.sdk import Connection

from apisync._version import __version__
from apisync.cli import main
from apisync.registry import APIS, COLLECTIONS
from apisync.settings import ApiSettings
from apisync_airflow.connection_forms import conn_fields, fields_for, ui_field_behaviour
from apisync_airflow.factory import all_dags
from apisync_airflow.hooks import ApiConnectionHook, ConnectionConfigError, api_settings_from, probe_api
from apisync_airflow.provider_info import get_provider_info

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_DIR = Path(importlib.import_module("airflow").__file__).parent
THREE_LINE_DAG_FILE = ('"""apisync: every registered API\'s DAGs and kafka_topics."""\n'
                       "from apisync_airflow.factory import all_dags\n"
                       "globals().update(all_dags())\n")


def resolve(dotted: str):
    module, _, name = dotted.replace(":", ".").rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_the_provider_info_is_what_airflow_accepts():
    info = get_provider_info()
    jsonschema.validate(info, json.loads((AIRFLOW_DIR / "provider_info.schema.json").read_text()))
    behaviour_schema = json.loads((AIRFLOW_DIR / "customized_form_field_behaviours.schema.json").read_text())
    assert info["package-name"] == "apisync" and info["versions"] == [__version__]
    assert [t["connection-type"] for t in info["connection-types"]] == [f"apisync_{api}" for api in APIS]
    for conn_type in info["connection-types"]:
        behaviour = conn_type["ui-field-behaviour"]
        jsonschema.validate({"hidden_fields": behaviour["hidden-fields"], "relabeling": behaviour["relabeling"],
                             "placeholders": behaviour["placeholders"]}, behaviour_schema)
        hook = resolve(conn_type["hook-class-name"])
        # Airflow builds a connection type's hook with the connection id alone
        built = hook(**{hook.conn_name_attr: "some_conn"})
        assert (hook.conn_type, built.api_conn_id) == (conn_type["connection-type"], "some_conn")
        assert hook.default_conn_name == f"{built.api}_default" and isinstance(built, ApiConnectionHook)
    for dotted in info["notifications"]:
        assert resolve(dotted) is not None


def test_the_plugin_comes_from_the_packages_entry_point_once():
    """Airflow always loads `airflow.plugins` entry points, a provider's own plugins only when providers are
    discovered eagerly: the receiver must come through the entry point, and only through it."""
    from airflow.plugins_manager import AirflowPlugin

    entry_points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    (plugin_path,) = entry_points["airflow.plugins"].values()
    plugin = resolve(plugin_path)
    assert issubclass(plugin, AirflowPlugin) and plugin.name == "apisync"
    assert [app["url_prefix"] for app in plugin.fastapi_apps] == ["/apisync"]
    assert "plugins" not in get_provider_info()


def test_every_api_form_has_its_options():
    forms = {t["connection-type"]: t["conn-fields"] for t in get_provider_info()["connection-types"]}
    stripe_options = {"api_version", "settle_s", "page_size", "rate_per_s", "burst", "webhook_secrets"}
    assert stripe_options <= set(forms["apisync_stripe"])
    assert "repos" in forms["apisync_github"]
    assert {"instance_url", "auth_flow", "consumer_key", "consumer_secret", "refresh_token", "private_key",
            "domain"} <= set(forms["apisync_salesforce"])
    assert all(forms[f"apisync_{api}"]["webhook_secrets"]["schema"]["format"] == "password" for api in APIS)


def test_the_package_metadata_points_at_real_code():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert resolve(project["project"]["scripts"]["apisync"]) is main
    assert resolve(project["project"]["entry-points"]["apache_airflow_provider"]["provider_info"]) is get_provider_info
    assert project["tool"]["setuptools"]["dynamic"]["version"]["attr"] == "apisync._version.__version__"
    shipped = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert not [p for p in shipped if p.startswith(("api_simulator", "devstack"))]
    pins = (ROOT / "requirements.txt").read_text()
    assert "apache-airflow==" in pins and not any("==" in dep for dep in project["project"]["dependencies"])


def form_conn(conn_type: str, **fields) -> Connection:
    return Connection(conn_id="form_conn", conn_type=conn_type, **fields)


@pytest.mark.parametrize("api, fields, expected", [
    # the UI stores form fields under `extra__<type>__<name>` or plain names, as strings
    ("stripe", {"host": "https://api.stripe.com", "password": "sk_test_x",
                "extra": json.dumps({"extra__apisync_stripe__page_size": "25", "settle_s": "2.5",
                                     "api_version": "2024-06-20", "rate_per_s": "12", "burst": ""})},
     {"page_size": 25, "settle_s": 2.5, "api_version": "2024-06-20"}),
    ("github", {"password": "ghp_x", "extra": json.dumps({"extra__apisync_github__repos": "octo/app, octo/lib"})},
     {"repos": ["octo/app", "octo/lib"]}),
    ("hubspot", {"host": "https://api.hubapi.com", "password": "pat-x", "extra": json.dumps({"lookback_s": "30"})},
     {"lookback_s": 30.0}),
])
def test_form_fields_become_typed_settings(api, fields, expected):
    settings = api_settings_from(form_conn(f"apisync_{api}", **fields), api)
    assert {k: settings.extra[k] for k in expected} == expected
    assert not [k for k in settings.extra if k.startswith("extra__")]
    if api == "stripe":
        assert (settings.rate_per_s, settings.burst) == (12.0, 5)
    if api == "github":
        assert settings.base_url == "https://api.github.com"  # the GitHub default for an empty host


def test_the_salesforce_form_fields_pick_the_oauth_grant():
    extra = {"extra__apisync_salesforce__instance_url": "https://acme.my.salesforce.com",
             "extra__apisync_salesforce__consumer_key": "3MVGkey", "consumer_secret": "s3cret", "page_size": "500"}
    settings = api_settings_from(form_conn("apisync_salesforce", extra=json.dumps(extra)), "salesforce")
    assert (settings.base_url, settings.oauth.flow, settings.oauth.client_id) == (
        "https://acme.my.salesforce.com", "client_credentials", "3MVGkey")
    assert settings.extra["page_size"] == 500 and "consumer_secret" not in settings.extra


def test_the_salesforce_form_takes_the_jwt_bearer_username_in_its_login_field():
    behaviour = ui_field_behaviour("salesforce")
    assert "login" not in behaviour["hidden-fields"] and "JWT" in behaviour["relabeling"]["login"]
    extra = {"instance_url": "https://acme.my.salesforce.com", "consumer_key": "3MVGkey", "private_key": "PEM"}
    conn = form_conn("apisync_salesforce", login="integration@acme.com", extra=json.dumps(extra))
    oauth = api_settings_from(conn, "salesforce").oauth
    assert (oauth.flow, oauth.username) == ("jwt_bearer", "integration@acme.com")
    # the grant's empty choice reads as what it means, not as the word "null"
    assert conn_fields("salesforce")["auth_flow"]["schema"]["values_display"] == {"null": "(empty: inferred)"}


@pytest.mark.parametrize("extra, refused", [
    ({"proxies": {"https": "http://proxy:3128"}}, "proxies"),
    ({"verify": False}, "verify"),
    ({"verify": "/etc/ssl/private-ca.pem"}, "verify"),
    ({"cert": "/etc/ssl/client.pem"}, "cert"),
])
@pytest.mark.parametrize("conn_type", ["http", "apisync_stripe"])
def test_http_transport_extras_are_refused_not_ignored(extra, refused, conn_type):
    conn = form_conn(conn_type, host="https://api.stripe.com", password="sk_test_x", extra=json.dumps(extra))
    with pytest.raises(ConnectionConfigError, match=f"extra '{refused}' is not supported"):
        api_settings_from(conn, "stripe")


def test_verify_left_on_is_accepted():
    conn = form_conn("http", host="https://api.stripe.com", password="sk_test_x", extra=json.dumps({"verify": True}))
    assert api_settings_from(conn, "stripe").base_url == "https://api.stripe.com"


def stripe_list(request: httpx.Request) -> httpx.Response:
    if request.headers.get("authorization") != "Bearer sk_test_right":
        return httpx.Response(401, json={"error": {"type": "invalid_request_error", "message": "Invalid API Key"}})
    page = [{"id": "cus_1", "created": 1700000000}]
    return httpx.Response(200, json={"object": "list", "data": page, "has_more": True, "url": "/v1/customers"})


def test_the_connection_test_is_one_authenticated_call():
    calls: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return stripe_list(request)

    settings = ApiSettings("stripe", "https://api.stripe.com", "sk_test_right")
    message = probe_api(settings, transport=httpx.MockTransport(answer))
    assert message == f"stripe: authenticated at https://api.stripe.com, listed {COLLECTIONS['stripe'][0]}"
    assert len(calls) == 1  # the first page only, although the listing has more
    with pytest.raises(Exception, match="401"):
        probe_api(ApiSettings("stripe", "https://api.stripe.com", "sk_test_wrong"),
                  transport=httpx.MockTransport(answer))


def test_the_test_button_reports_a_broken_connection_in_one_line(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_STRIPE_BROKEN", json.dumps({"conn_type": "apisync_stripe", "password": "x"}))
    ok, message = resolve(get_provider_info()["connection-types"][0]["hook-class-name"])(
        api_conn_id="stripe_broken").test_connection()
    assert not ok and message.startswith("stripe_broken: ConnectionConfigError:") and "no host" in message
    assert "\n" not in message


def test_the_three_line_dag_file_gives_every_dag(tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    (tmp_path / "apisync_dags.py").write_text(THREE_LINE_DAG_FILE)
    bag = DagBag(dag_folder=str(tmp_path), safe_mode=True)  # safe mode: Airflow's default discovery
    assert bag.import_errors == {}
    expected = {f"{api}_{kind}" for api in APIS for kind in ("backfill", "incremental", "normalize", "reconcile",
                                                              "audit")} | {"kafka_topics"}
    assert set(bag.dag_ids) == expected == set(all_dags())


def test_the_console_script_prints_its_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"apisync {__version__}"


def test_setup_refuses_an_unknown_api(capsys):
    assert main(["airflow", "setup", "--apis", "stripe,nosuchapi"]) == 2
    assert "unknown api nosuchapi" in capsys.readouterr().out


def test_every_declared_form_field_is_a_known_option():
    # a form field nobody reads would be a silent no-op: each must be one of the options the code reads
    read = {"page_size", "rate_per_s", "burst", "webhook_secrets", "api_version", "settle_s", "repos", "instance_url",
            "auth_flow", "consumer_key", "consumer_secret", "refresh_token", "private_key", "private_key_file_path",
            "domain", "token_url", "audience", "lookback_s"}
    assert {f.name for api in APIS for f in fields_for(api)} <= read
