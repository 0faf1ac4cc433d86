"""The registry is the single source: an API registered only here, in a test, gets topics, CLI choices,
DAGs, webhook parsing and normalizer routing without any other module knowing its name."""

from __future__ import annotations

import pytest

from apisync.apis.github.webhook import GitHubSignature
from apisync.cli import build_parser
from apisync.events import Observation
from apisync.kafka.topics import declared_topics
from apisync.normalizer import known_collection
from apisync.registry import APIS, COLLECTIONS, ApiSpec, WebhookSpec, register, spec_for, unregister
from apisync.webhooks.dispatch import parse_webhook
from apisync_airflow.factory import api_dags


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
