"""Operators: plain constructors, connections read in execute, progress logged, errors in Airflow terms."""

from __future__ import annotations

import logging
import sys

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from apisync.http.errors import FatalError, RetriableError
from apisync_airflow.metrics import AirflowStatsMetrics
from apisync_airflow.operators import (
    BackfillApiToKafkaOperator,
    NormalizeChangesOperator,
    ReconcileDeletesToKafkaOperator,
    SyncChangesToKafkaOperator,
    as_bool,
    as_optional_str,
)


def test_constructors_touch_no_connection(monkeypatch):
    # No AIRFLOW_CONN_* at all: building operators must still work (DAG parsing does exactly this).
    for name in ("KAFKA", "REDIS", "STRIPE"):
        monkeypatch.delenv(f"AIRFLOW_CONN_{name}_DEFAULT", raising=False)
    op = BackfillApiToKafkaOperator(task_id="b", api="stripe", collection="customer",
                                    restart="{{ params.restart }}")
    assert (op.api, op.collection, op.restart) == ("stripe", "customer", "{{ params.restart }}")
    assert set(op.template_fields) == {"collection", "restart", "start_from"}


def test_backfill_passes_settings_and_params_and_returns_the_summary(connections, engine, caplog):
    def backfill(settings, collection, *, restart, start_date, on_progress, metrics):
        on_progress(engine.Progress(3, 300, 150.0, {"starting_after": "cus_9"}, 1.5, 42.0))
        return engine.Summary({"api": "stripe", "collection": collection, "job": "backfill", "pages": 3,
                               "records": 300})

    engine.script["backfill"] = backfill
    op = BackfillApiToKafkaOperator(task_id="b", api="stripe", collection="customer", restart="True",
                                    start_from="2026-01-02")
    with caplog.at_level(logging.INFO):
        result = op.execute({})
    assert result == {"api": "stripe", "collection": "customer", "job": "backfill", "pages": 3, "records": 300}
    job, settings, collection, kwargs = engine.calls[0]
    assert (kwargs["restart"], kwargs["start_date"]) == (True, "2026-01-02")
    assert isinstance(kwargs["metrics"], AirflowStatsMetrics)  # the run reports through Airflow's Stats
    assert settings.kafka == {"bootstrap.servers": "127.0.0.1:19092"}
    assert settings.redis_url == "redis://127.0.0.1:16379/3"
    assert settings.api.token == "sk_test_unit"
    progress = [r.getMessage() for r in caplog.records if "progress:" in r.getMessage()]
    assert progress == ["stripe.customer backfill progress: pages=3 records=300 rate=150.0/s "
                        "cursor=starting_after=cus_9 rate_limit_wait=1.5s eta=42s"]
    assert "sk_test_unit" not in caplog.text


def test_a_retried_restart_resumes_instead_of_restarting_again(connections, engine):
    engine.script["backfill"] = lambda settings, collection, **kwargs: engine.Summary({"records": 0})

    class TaskInstance:
        try_number = 2

    op = BackfillApiToKafkaOperator(task_id="b", api="stripe", collection="customer", restart=True)
    op.execute({"ti": TaskInstance()})
    assert engine.calls[-1][3]["restart"] is False
    op.execute({"ti": type("FirstTry", (), {"try_number": 1})()})
    assert engine.calls[-1][3]["restart"] is True


def test_incremental_skips_until_the_backfill_finished(connections, engine, caplog):
    engine.script["incremental"] = engine.BackfillNotDone("stripe.backfill.invoice not done")
    op = SyncChangesToKafkaOperator(task_id="i", api="stripe", collection="invoice")
    with caplog.at_level(logging.INFO), pytest.raises(AirflowSkipException, match="backfill of stripe.invoice"):
        op.execute({})
    assert "skipping incremental sync, the backfill has not finished yet" in caplog.text


@pytest.mark.parametrize("error, expected", [
    (FatalError("stripe", "GET", "/v1/customers", 401, "bad key"), AirflowFailException),
    (RetriableError("stripe", "GET", "/v1/customers", 500, "boom"), RetriableError),
    (ConnectionError("broker down"), ConnectionError),
])
def test_fatal_errors_fail_the_task_and_the_rest_are_retried(connections, engine, error, expected):
    engine.script["incremental"] = error
    op = SyncChangesToKafkaOperator(task_id="i", api="stripe", collection="customer")
    with pytest.raises(expected) as raised:
        op.execute({})
    assert "/v1/customers" in str(raised.value) or "broker down" in str(raised.value)


def test_missing_connection_is_fatal(monkeypatch, connections, engine):
    monkeypatch.delenv("AIRFLOW_CONN_STRIPE_DEFAULT")
    with pytest.raises(AirflowFailException, match="stripe_default"):
        BackfillApiToKafkaOperator(task_id="b", api="stripe", collection="customer").execute({})
    assert engine.calls == []


def test_an_incomplete_run_keeps_its_summary_as_the_xcom_and_is_retried(connections, engine):
    from apisync.sync.progress import IncompleteRun, RunSummary, incomplete

    summary = RunSummary("github", "issue", "incremental", records=40)
    engine.script["incremental"] = incomplete(summary, ["acme/gone: 404 Not Found"])
    pushed = {}

    class TaskInstance:
        try_number = 1

        def xcom_push(self, key, value):
            pushed[key] = value

    op = SyncChangesToKafkaOperator(task_id="i", api="github", collection="issue")
    with pytest.raises(IncompleteRun, match="acme/gone"):  # not fatal: Airflow retries it
        op.execute({"ti": TaskInstance()})
    assert pushed["return_value"]["records"] == 40
    assert pushed["return_value"]["unavailable"] == ["acme/gone: 404 Not Found"]


def test_reconcile_defaults_to_a_capped_dry_run(connections, engine):
    ReconcileDeletesToKafkaOperator(task_id="r", api="stripe", collection="charge",
                                    max_delete_share="0.1").execute({})
    _, _, collection, kwargs = engine.calls[0]
    assert (collection, kwargs["dry_run"], kwargs["max_delete_share"]) == ("charge", True, 0.1)


def test_reconcile_refuses_a_share_above_one(connections, engine):
    with pytest.raises(ValueError, match="between 0 and 1"):
        ReconcileDeletesToKafkaOperator(task_id="r", api="stripe", collection="charge",
                                        max_delete_share=5).execute({})
    assert engine.calls == []


def test_normalize_runs_bounded_and_reports_stats(connections, monkeypatch):
    from apisync.normalizer import NormalizerStats

    seen = {}

    def normalize(api, kafka_config, redis_url, max_seconds=None, api_settings=None, until_idle=False, metrics=None):
        seen.update(api=api, kafka=kafka_config, redis=redis_url, seconds=max_seconds, until_idle=until_idle,
                    refetch_from=api_settings and api_settings.base_url)
        assert isinstance(metrics, AirflowStatsMetrics)
        return NormalizerStats(batches=2, consumed=10, records=9, events=9, dead_letters=1)

    monkeypatch.setattr("apisync.normalizer.normalize", normalize)
    result = NormalizeChangesOperator(task_id="n", api="github", max_seconds="7").execute({})
    assert seen == {"api": "github", "kafka": {"bootstrap.servers": "127.0.0.1:19092"},
                    "redis": "redis://127.0.0.1:16379/3", "seconds": 7.0, "until_idle": False,
                    "refetch_from": "http://127.0.0.1:18765"}  # the API connection, for re-fetches
    assert (result["records"], result["dead_letters"], result["api"]) == (9, 1, "github")


@pytest.mark.parametrize("value, flag", [(True, True), ("False", False), ("true", True), (None, False), (0, False)])
def test_as_bool(value, flag):
    assert as_bool(value) is flag


@pytest.mark.parametrize("value, text", [(None, None), ("", None), ("None", None), (" 2026-01-01 ", "2026-01-01")])
def test_as_optional_str(value, text):
    assert as_optional_str(value) == text


def test_a_missing_engine_feature_fails_without_retrying(connections, engine, monkeypatch):
    monkeypatch.delattr(sys.modules["apisync.sync"], "run_reconcile")
    with pytest.raises(AirflowFailException, match="stripe reconcile of charge"):
        ReconcileDeletesToKafkaOperator(task_id="r", api="stripe", collection="charge").execute({})
