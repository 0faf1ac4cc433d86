"""Guarantee 5: topics exist with their declared configs; drift behind our back is reported, then repaired."""

import dataclasses
import time
import uuid

import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

from apisync.kafka.admin import TopicDrift, check, describe_topic_configs, ensure, existing_partitions
from apisync.kafka.topics import Layout, TopicSpec, declared_topics

pytestmark = pytest.mark.integration


@pytest.fixture
def admin(kafka_config):
    return AdminClient(kafka_config)


@pytest.fixture
def specs() -> list[TopicSpec]:
    """A slice of the real declarations (every config shape) under a unique prefix, so tests don't collide."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    wanted = {"stripe.changes", "stripe.records", "stripe.events", "stripe.dlq", "stripe.invoice",
              "stripe.invoice.updated", "apisync.checkpoints"}
    chosen = [s for s in declared_topics(Layout()) if s.name in wanted]
    assert len(chosen) == len(wanted)
    return [dataclasses.replace(s, name=f"{prefix}.{s.name}") for s in chosen]


def broker_view(admin, specs):
    configs = describe_topic_configs(admin, [s.name for s in specs])
    partitions = existing_partitions(admin)
    return ({s.name: {k: configs[s.name][k] for k in s.config} for s in specs},
            {s.name: partitions[s.name] for s in specs})


def eventually(probe, patience_s=120.0):
    """The probe's first non-empty answer (0.1 s apart); the generous bound only ends a stuck broker."""
    deadline = time.monotonic() + patience_s
    while not (answer := probe()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return answer


def test_ensure_creates_topics_with_declared_configs(admin, specs):
    assert {d.topic for d in check(admin, specs)} == {s.name for s in specs}
    assert all(d.missing for d in check(admin, specs))

    report = ensure(admin, specs)

    assert report.created == tuple(sorted(s.name for s in specs))
    configs, partitions = broker_view(admin, specs)
    assert configs == {s.name: dict(s.config) for s in specs}
    assert partitions == {s.name: s.partitions for s in specs}
    assert check(admin, specs) == []
    again = ensure(admin, specs)
    assert (again.created, dict(again.altered), again.unrepaired) == ((), {}, ())


def test_drift_behind_our_back_is_reported_then_repaired(admin, specs):
    ensure(admin, specs)
    records, events = (next(s for s in specs if s.name.endswith(suffix)) for suffix in (".records", ".events"))
    tamper = [
        ConfigResource(ResourceType.TOPIC, events.name, incremental_configs=[
            ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)]),
        ConfigResource(ResourceType.TOPIC, records.name, incremental_configs=[
            ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("segment.ms", None, incremental_operation=AlterConfigOpType.DELETE)]),
    ]
    for future in admin.incremental_alter_configs(tamper).values():
        future.result(timeout=30)

    # KRaft applies config changes asynchronously, each topic's on its own: wait until the broker shows
    # the tampering of both topics (a topic's keys change together).
    def tampered():
        drift = {d.topic: dict(d.config) for d in check(admin, specs)}
        return drift if set(drift) == {events.name, records.name} else None

    drift = eventually(tampered)
    assert drift == {
        events.name: {"retention.ms": ("604800000", "1000")},
        records.name: {"cleanup.policy": ("compact", "delete"), "segment.ms": ("3600000", "604800000")},
    }

    report = ensure(admin, specs)

    assert dict(report.altered) == {events.name: ("retention.ms",), records.name: ("cleanup.policy", "segment.ms")}
    assert check(admin, specs) == []
    configs, _ = broker_view(admin, specs)
    assert configs == {s.name: dict(s.config) for s in specs}


def test_fewer_partitions_than_declared_is_reported_not_repaired(admin, specs):
    spec = specs[0]
    admin.create_topics([NewTopic(spec.name, 2, 1, config=dict(spec.config))])[spec.name].result(timeout=30)
    # The controller has the topic; the broker's metadata shows it a moment later (ensure waits the same way).
    assert eventually(lambda: spec.name in existing_partitions(admin))

    assert check(admin, [spec]) == [TopicDrift(spec.name, partitions=(spec.partitions, 2))]
    report = ensure(admin, [spec])
    assert report.unrepaired == (TopicDrift(spec.name, partitions=(spec.partitions, 2)),)
    assert "2 partitions, declared 6" in report.describe()[0]
    assert existing_partitions(admin)[spec.name] == 2


def test_cli_topics_ensure_then_check_over_every_declared_topic(admin, kafka_bootstrap, capsys):
    from apisync.cli import main

    assert main(["--bootstrap", kafka_bootstrap, "topics", "ensure"]) == 0
    capsys.readouterr()
    assert main(["--bootstrap", kafka_bootstrap, "topics", "check"]) == 0
    assert capsys.readouterr().out.strip() == "all topics match their declarations"

    resource = ConfigResource(ResourceType.TOPIC, "github.events", incremental_configs=[
        ConfigEntry("retention.bytes", "1024", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([resource])[resource].result(timeout=30)
    eventually(lambda: check(admin, [s for s in declared_topics() if s.name == "github.events"]))

    assert main(["topics", "check", "--bootstrap", kafka_bootstrap]) == 1
    assert capsys.readouterr().out.strip() == "github.events: retention.bytes is '1024', declared '-1'"
    assert main(["topics", "ensure", "--bootstrap", kafka_bootstrap]) == 0
    assert capsys.readouterr().out.strip() == "altered github.events: retention.bytes"
