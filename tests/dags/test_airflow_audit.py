"""The audit operator: options from Params, the report in the log and the XCom, metrics, a drift alert."""

from __future__ import annotations

import json
import logging

import pytest

from apisync_airflow.operators import AuditKafkaAgainstApiOperator, send_drift_alert


class FakeAuditSummary:
    """What the operator uses of apisync.sync.AuditSummary."""

    def __init__(self, drift_share: float, breaker_tripped: bool = False) -> None:
        self.values = {"api": "stripe", "collection": "customer", "audited": 40, "drift": round(40 * drift_share),
                       "missing": 1, "stale": 0, "zombie": 0, "in_flight": 0, "repaired": 0, "deletes": 0,
                       "requests": 3, "drift_share": drift_share, "breaker_tripped": breaker_tripped,
                       "examples": {"missing": ["stripe.customer.cus_1"], "stale": [], "zombie": []}}

    def as_dict(self) -> dict:
        return dict(self.values)

    def lines(self) -> list[str]:
        return [f"stripe customer audit (full): {self.values['drift']} drifted", "  missing: stripe.customer.cus_1"]


@pytest.fixture
def gauges(monkeypatch):
    from airflow.sdk.observability.stats import Stats

    seen = {}
    monkeypatch.setattr(Stats, "gauge", lambda stat, value, *a, **kw: seen.__setitem__(stat, value))
    return seen


@pytest.fixture
def alert_file(tmp_path, monkeypatch):
    path = tmp_path / "alerts.jsonl"
    monkeypatch.setenv("APISYNC_ALERT_FILE", str(path))
    return path


def _operator(**kwargs) -> AuditKafkaAgainstApiOperator:
    return AuditKafkaAgainstApiOperator(task_id="audit", api="stripe", collection="customer", **kwargs)


def test_params_become_audit_options_and_the_report_is_logged_and_returned(
        connections, engine, gauges, alert_file, caplog):
    engine.script["audit"] = lambda settings, collection, **kw: FakeAuditSummary(0.0)
    with caplog.at_level(logging.INFO, logger="apisync.airflow"):
        result = _operator(sample_size="25", repair="true", budget_share="0.2", max_delete_share="0.1").execute({})
    _job, settings, collection, kwargs = engine.calls[0]
    options = kwargs["options"]
    assert (settings.api.api, collection) == ("stripe", "customer")
    assert (options.sample, options.repair, options.budget_share, options.max_delete_share) == (25, True, 0.2, 0.1)
    assert result["examples"]["missing"] == ["stripe.customer.cus_1"]  # keys only, never payloads
    assert "missing: stripe.customer.cus_1" in caplog.text
    assert gauges["apisync.audit.stripe.customer.missing"] == 1 and gauges["apisync.audit.stripe.customer.drift"] == 0
    assert not alert_file.exists()


def test_a_zero_sample_walks_the_whole_listing(connections, engine, gauges):
    engine.script["audit"] = lambda settings, collection, **kw: FakeAuditSummary(0.0)
    _operator(sample_size=0).execute({})
    assert engine.calls[0][3]["options"].sample is None


@pytest.mark.parametrize("summary", [FakeAuditSummary(0.05), FakeAuditSummary(0.0, breaker_tripped=True)])
def test_drift_above_the_threshold_or_a_tripped_breaker_alerts_without_failing(
        connections, engine, gauges, alert_file, summary):
    engine.script["audit"] = lambda settings, collection, **kw: summary
    _operator(max_drift_share="0.01").execute({})
    [alert] = [json.loads(line) for line in alert_file.read_text().splitlines()]
    assert alert["error"] == summary.lines()[0]


@pytest.mark.parametrize("params", [{"sample_size": -1}, {"budget_share": 0}, {"budget_share": 1.5}])
def test_bad_params_are_refused_before_any_request(connections, engine, params):
    with pytest.raises(ValueError):
        _operator(**params).execute({})
    assert engine.calls == []


def test_the_drift_alert_says_drift_not_failure(monkeypatch):
    sent = []
    monkeypatch.setattr("apisync_airflow.operators.channels_from_env", lambda env: [("test", sent.append)])
    send_drift_alert({}, "stripe customer audit: 3 drifted", env={})
    assert "found drift" in sent[0].text() and "failed" not in sent[0].text()
    assert sent[0].error == "stripe customer audit: 3 drifted"
