"""The topic declarations: names, configs per kind, sizing overrides, validation."""

import dataclasses

import pytest

from apisync import registry
from apisync.kafka.topics import CHECKPOINTS_TOPIC, Layout, TopicSpec, declared_topics

EVENTS = {"cleanup.policy": "delete", "retention.ms": "604800000", "retention.bytes": "-1"}


@pytest.fixture
def by_name():
    return {spec.name: spec for spec in declared_topics(Layout())}


def test_every_api_has_its_topics_and_nothing_else(by_name):
    expected = {CHECKPOINTS_TOPIC}
    for api, collections in registry.COLLECTIONS.items():
        expected |= {f"{api}.{kind}" for kind in ("changes", "webhooks", "records", "events", "dlq")}
        for c in collections:
            expected |= {f"{api}.{c}"} | {f"{api}.{c}.{t}" for t in ("created", "updated", "deleted")}
    # The declared rules add one secondary events topic each.
    expected |= {"stripe.subscription.status_changed", "stripe.invoice.amount_due_crossed_1000",
                 "github.issue.state_changed", "github.pull_request.state_changed",
                 "salesforce.opportunity.stage_changed", "hubspot.deal.dealstage_changed"}
    assert set(by_name) == expected


@pytest.mark.parametrize(("name", "config"), [
    ("stripe.changes", {"cleanup.policy": "delete", "retention.ms": "604800000"}),
    ("github.webhooks", {"cleanup.policy": "delete", "retention.ms": "604800000"}),
    ("salesforce.events", EVENTS),
    ("stripe.invoice.deleted", EVENTS),
    ("stripe.dlq", {"cleanup.policy": "delete", "retention.ms": "2592000000"}),
    ("github.records", {"cleanup.policy": "compact", "segment.ms": "3600000", "min.compaction.lag.ms": "60000",
                        "delete.retention.ms": "864000000", "min.cleanable.dirty.ratio": "0.1"}),
    ("github.pull_request", {"cleanup.policy": "compact", "segment.ms": "3600000", "min.compaction.lag.ms": "60000",
                             "delete.retention.ms": "864000000", "min.cleanable.dirty.ratio": "0.1"}),
])
def test_configs_per_topic_kind(by_name, name, config):
    assert dict(by_name[name].config) == config


def test_checkpoints_topic_is_compacted_single_partition(by_name):
    spec = by_name[CHECKPOINTS_TOPIC]
    assert (spec.partitions, spec.compacted, spec.config["min.compaction.lag.ms"]) == (1, True, "0")


def test_defaults_and_env_overrides():
    sizes = {(s.partitions, s.replication_factor) for s in declared_topics(Layout()) if s.name != CHECKPOINTS_TOPIC}
    assert sizes == {(6, 1)}
    layout = Layout.from_env({"APISYNC_PARTITIONS": "12", "APISYNC_REPLICATION_FACTOR": "3"})
    specs = {s.name: s for s in declared_topics(layout)}
    assert (specs["stripe.records"].partitions, specs["stripe.records"].replication_factor) == (12, 3)
    assert specs["stripe.records"].config["min.insync.replicas"] == "2"
    assert "min.insync.replicas" not in {k for s in declared_topics(Layout()) for k in s.config}


def events_topics(layout: Layout) -> list:
    """The events topics: `<api>.events` and every `<api>.<collection>.<event>`."""
    collections = {f"{api}.{c}" for api, names in registry.COLLECTIONS.items() for c in names}
    return [s for s in declared_topics(layout)
            if s.name.endswith(".events") or s.name.rsplit(".", 1)[0] in collections]


def test_events_age_out_by_time_alone_by_default():
    # A byte cap per partition would delete a large backfill's events before consumers read them.
    specs = events_topics(Layout.from_env({}))
    assert len(specs) > len(registry.COLLECTIONS) * 4  # the main and every secondary events topic
    assert {(s.config["retention.ms"], s.config["retention.bytes"]) for s in specs} == {("604800000", "-1")}


@pytest.mark.parametrize(("env", "expected"), [
    ({"APISYNC_EVENTS_RETENTION_BYTES": "214748364800"}, "214748364800"),  # a 200 GiB backstop per partition
    ({"APISYNC_EVENTS_RETENTION_BYTES": "-1"}, "-1"),
    ({"APISYNC_EVENTS_RETENTION_BYTES": " "}, "-1"),
])
def test_the_events_byte_backstop_is_configurable(env, expected):
    specs = events_topics(Layout.from_env(env))
    assert {s.config["retention.bytes"] for s in specs} == {expected}
    others = [s for s in declared_topics(Layout.from_env(env)) if s not in specs]
    assert all(s.config.get("retention.bytes") is None for s in others)  # only events topics carry it


def test_the_events_byte_backstop_is_a_layout_field():
    specs = events_topics(Layout(partitions=3, events_retention_bytes=10 * 1024**3))
    assert {s.config["retention.bytes"] for s in specs} == {str(10 * 1024**3)}


@pytest.mark.parametrize("value", [0, -2])
def test_a_layout_rejects_a_byte_backstop_that_is_neither_unlimited_nor_positive(value):
    with pytest.raises(ValueError, match="-1"):
        Layout(events_retention_bytes=value)


@pytest.mark.parametrize("env", [{"APISYNC_PARTITIONS": "0"}, {"APISYNC_REPLICATION_FACTOR": "three"},
                                 {"APISYNC_EVENTS_RETENTION_BYTES": "0"}, {"APISYNC_EVENTS_RETENTION_BYTES": "1GiB"}])
def test_bad_env_values_are_rejected(env):
    with pytest.raises(ValueError, match=next(iter(env))):
        Layout.from_env(env)


def test_rule_events_get_their_own_topics():
    specs = {s.name for s in declared_topics(Layout(), rule_events={
        "stripe": {"subscription": ["status_changed"], "invoice": ["amount_due_crossed_1000", "updated"]}})}
    assert {"stripe.subscription.status_changed", "stripe.invoice.amount_due_crossed_1000"} <= specs
    assert "stripe.customer.status_changed" not in specs


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "Stripe Records"}, "invalid topic name"),
    ({"name": "records"}, "invalid topic name"),
    ({"partitions": 0}, "partitions must be >= 1"),
    ({"replication_factor": 0}, "replication factor"),
    ({"config": {"retention.ms": 1000}}, "must map str to str"),
])
def test_spec_validation(kwargs, message):
    base = {"name": "stripe.records", "partitions": 1, "replication_factor": 1, "config": {}}
    with pytest.raises((ValueError, TypeError), match=message):
        TopicSpec(**{**base, **kwargs})


def test_specs_are_frozen_including_their_config():
    spec = declared_topics(Layout())[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.partitions = 1
    with pytest.raises(TypeError):
        spec.config["retention.ms"] = "1"
