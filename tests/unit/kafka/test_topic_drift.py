"""Config diffing and drift reports as pure functions."""

import pytest

from apisync.kafka.admin import EnsureReport, TopicDrift, diff_config, drift_of
from apisync.kafka.topics import TopicSpec

SPEC = TopicSpec("stripe.events", 6, 1, {"cleanup.policy": "delete", "retention.ms": "604800000"})


@pytest.mark.parametrize(("actual", "expected"), [
    ({"cleanup.policy": "delete", "retention.ms": "604800000", "segment.bytes": "1"}, {}),
    ({"cleanup.policy": "compact", "retention.ms": "604800000"}, {"cleanup.policy": ("delete", "compact")}),
    ({"cleanup.policy": "delete"}, {"retention.ms": ("604800000", None)}),
    ({}, {"cleanup.policy": ("delete", None), "retention.ms": ("604800000", None)}),
])
def test_diff_config_compares_declared_keys_only(actual, expected):
    assert diff_config(SPEC.config, actual) == expected


def test_drift_of_missing_topic():
    assert drift_of(SPEC, None, {}) == TopicDrift("stripe.events", missing=True)


def test_drift_of_fewer_partitions_but_not_more():
    assert drift_of(SPEC, 3, dict(SPEC.config)) == TopicDrift("stripe.events", partitions=(6, 3))
    assert drift_of(SPEC, 12, dict(SPEC.config)) is None


def test_drift_lines_are_readable():
    drift = drift_of(SPEC, 3, {"cleanup.policy": "delete", "retention.ms": "1000"})
    assert drift.describe() == [
        "stripe.events: retention.ms is '1000', declared '604800000'",
        ("stripe.events: 3 partitions, declared 6 (not repaired: adding partitions moves keys; "
         "recreate the topic or raise the declaration)"),
    ]
    assert TopicDrift("x.y", missing=True).describe() == ["x.y: missing"]


def test_ensure_report_lines():
    report = EnsureReport(created=("a.b",), altered={"c.d": ("retention.ms", "segment.ms")})
    assert report.describe() == ["created a.b", "altered c.d: retention.ms, segment.ms"]
    assert EnsureReport().describe() == ["all topics match their declarations"]
