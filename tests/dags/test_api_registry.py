"""The registry is the single source: an API registered only here, in a test, gets topics, CLI choices,
DAGs, webhook parsing and normalizer routing without any other module knowing its name."""

from __future__ import annotations

import json

import pytest
from airflow.sdk import Connection

from apisync.apis.github.webhook import GitHubSignature
from apisync.cli import build_parser
from apisync.connections import ConnectionSpec, FormField
from apisync.events import Observation
from apisync.kafka.topics import declared_topics
from apisync.normalizer import known_collection
from apisync.registry import APIS, COLLECTIONS, ApiSpec, WebhookSpec, register, spec_for, unregister
from apisync.webhooks.dispatch import parse_webhook
from apisync_airflow.factory import api_dags
from apisync_airflow.hooks import api_settings_from
from apisync_airflow.provider_info import get_provider_info
from apisync_airflow.webhook_app import receiver_settings


def _parse(body: bytes, headers, synced_at: str, **_options) -> Observation:
    return Observation("acme", "widget", body.decode(), 1, "webhook", synced_at, {"id": body.decode()})


@pytest.fixture
def acme():
    spec = register(ApiSpec(name="acme", collections=("widget",), build_source=lambda settings: None,
                            default_rate_per_s=3.0, webhook=WebhookSpec(GitHubSignature, _parse),
                            rules={"widget": [{"kind": "transition", "field": "color", "event": "color_changed"}]}))
    yield spec
    unregister("acme")


def test_a_registered_api_gets_every_derived_piece(acme):
    assert "acme" in APIS and COLLECTIONS["acme"] == ("widget",)
    topics = {spec.name for spec in declared_topics()}
    assert {"acme.changes", "acme.webhooks", "acme.records", "acme.events", "acme.widget",
            "acme.widget.color_changed", "acme.dlq"} <= topics
    args = build_parser().parse_args(["sync", "backfill", "acme", "widget"])
    assert (args.api, args.collections) == ("acme", ["widget"])
    assert set(api_dags("acme")) == {f"acme_{kind}" for kind in
                                     ("backfill", "incremental", "normalize", "reconcile", "audit")}
    assert parse_webhook("acme", b"w1", {}).key == "acme.widget.w1"
    assert known_collection("acme", Observation("acme", "widget", "w1", 1, "poll", "", {}))
    assert not known_collection("acme", Observation("acme", "gadget", "g1", 1, "poll", "", {}))


def test_once_unregistered_it_is_gone_everywhere(acme):
    unregister("acme")
    assert "acme" not in APIS and "acme.records" not in {spec.name for spec in declared_topics()}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sync", "backfill", "acme"])
    with pytest.raises(KeyError, match="unknown api 'acme'"):
        spec_for("acme")


ACME_CONNECTION = ConnectionSpec(
    form_fields=(FormField("zones", "Zones", "Comma-separated zone names.", "list"),),
    shown_fields={"host": "Acme URL", "login": "Account", "password": "API key"},
    placeholders={"host": "https://api.acme.test"}, default_base_url="https://api.acme.test",
    provider_conn_types=("acme_cloud",))


def _acme_options_from_connection(extra):
    return {"sites": tuple(extra.get("sites", ())), "mode": extra.get("mode")}


@pytest.fixture
def acme_with_connection():
    webhook = WebhookSpec(GitHubSignature, _parse, options_from_env=lambda env: {"sites": ("env-site",)},
                          options_from_connection=_acme_options_from_connection)
    spec = register(ApiSpec(name="acme", collections=("widget",), build_source=lambda settings: None,
                            default_rate_per_s=3.0, webhook=webhook, connection=ACME_CONNECTION))
    yield spec
    unregister("acme")


def test_a_registered_api_gets_its_connection_form_from_its_spec(acme_with_connection):
    forms = {t["connection-type"]: t for t in get_provider_info()["connection-types"]}
    acme_form = forms["apisync_acme"]
    assert list(acme_form["conn-fields"])[:2] == ["zones", "page_size"]  # its own fields, then the common ones
    assert acme_form["ui-field-behaviour"] == {
        "hidden-fields": ["schema", "port"], "placeholders": {"host": "https://api.acme.test"},
        "relabeling": {"host": "Acme URL", "login": "Account", "password": "API key"}}
    assert "acme" in get_provider_info()["description"]


def test_a_registered_api_maps_its_connection_as_its_spec_declares(acme_with_connection):
    extra = {"extra__acme_cloud__zones": "eu, us", "rate_per_s": "2"}
    conn = Connection(conn_id="acme_default", conn_type="acme_cloud", password="acme-key-1", extra=json.dumps(extra))
    settings = api_settings_from(conn, "acme")
    assert (settings.base_url, settings.token, settings.rate_per_s) == ("https://api.acme.test", "acme-key-1", 2.0)
    assert dict(settings.extra) == {"zones": ["eu", "us"]}  # the form's string in its declared type


def test_the_receiver_joins_an_apis_options_from_its_connection_with_the_environments(acme_with_connection):
    conn = {"conn_type": "apisync_acme", "extra": {"sites": ["conn-site", "env-site"], "mode": "strict"}}
    options = receiver_settings({}, {"acme": conn["extra"]}).api_options["acme"]
    assert options == {"sites": ("env-site", "conn-site"), "mode": "strict"}
