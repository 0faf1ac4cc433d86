"""Failure alerts (notifier channels) and progress lines."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest

from apisync_airflow.notifiers import ApisyncAlertNotifier, alert_from_context, channels_from_env
from apisync_airflow.progress import ProgressLogger, progress_line


def failure_context(map_index: int = 2) -> dict:
    ti = SimpleNamespace(dag_id="stripe_backfill", task_id="backfill", run_id="manual__1", map_index=map_index,
                         try_number=3, log_url="http://af/dags/stripe_backfill/runs/manual__1/tasks/backfill/mapped/2")
    return {"ti": ti, "exception": RuntimeError("stripe GET /v1/customers failed:\n HTTP 500: boom")}


def test_alert_names_dag_task_error_and_log_url():
    alert = alert_from_context(failure_context())
    assert alert.text() == ("apisync alert: task stripe_backfill.backfill[2] failed (run manual__1, try 3): "
                            "RuntimeError: stripe GET /v1/customers failed: HTTP 500: boom | "
                            "log: http://af/dags/stripe_backfill/runs/manual__1/tasks/backfill/mapped/2")


def test_notifier_logs_by_default_and_writes_the_file_when_configured(tmp_path, caplog):
    path = tmp_path / "alerts.jsonl"
    with caplog.at_level(logging.ERROR, logger="apisync.alerts"):
        ApisyncAlertNotifier(env={"APISYNC_ALERT_FILE": str(path)}).notify(failure_context(map_index=-1))
    assert "task stripe_backfill.backfill failed" in caplog.text
    written = json.loads(path.read_text())
    assert (written["dag_id"], written["task_id"], written["try_number"]) == ("stripe_backfill", "backfill", 3)
    assert written["error"].startswith("RuntimeError: stripe GET /v1/customers")


@pytest.mark.parametrize("env, names", [
    ({}, ["log"]),
    ({"APISYNC_ALERT_SMTP_CONN_ID": "smtp_default"}, ["log"]),  # no recipient: no mail channel
    ({"APISYNC_ALERT_EMAIL_TO": "ops@x"}, ["log", "smtp"]),
    ({"APISYNC_ALERT_SLACK_CONN_ID": "slack_default", "APISYNC_ALERT_FILE": "/tmp/a"}, ["log", "file", "slack"]),
])
def test_channels_from_env(env, names):
    assert [name for name, _ in channels_from_env(env)] == names


@pytest.mark.parametrize("retired", ["APISYNC_ALERT_SLACK_WEBHOOK_URL", "APISYNC_ALERT_SMTP_HOST"])
def test_a_retired_setting_is_named_in_a_warning(retired, caplog):
    with caplog.at_level(logging.WARNING, logger="apisync.alerts"):
        assert [name for name, _ in channels_from_env({retired: "x"})] == ["log"]
    assert f"{retired} is no longer read" in caplog.text


def progress(pages, eta=None, cursor=None):
    return SimpleNamespace(pages=pages, records=pages * 100, records_per_s=50.0, cursor=cursor,
                           rate_limit_wait_s=0.0, eta_s=eta)


@pytest.mark.parametrize("eta, shown", [(None, "unknown"), (59.6, "1m00s"), (3725, "1h02m05s"), (4, "4s")])
def test_progress_line_eta(eta, shown):
    assert progress_line("x", progress(1, eta)).endswith(f"eta={shown}")


def test_progress_line_caps_a_huge_cursor():
    line = progress_line("x", progress(1, cursor={"after": "y" * 500}))
    assert len(line) < 260 and "cursor=after=yyy" in line


def test_progress_logger_throttles_to_one_line_per_interval(caplog):
    now = [0.0]
    logger = ProgressLogger("stripe.customer backfill", interval_s=5, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="apisync.airflow.progress"):
        for step in range(12):  # one report per second for 12 s
            now[0] = float(step)
            logger(progress(step + 1))
    pages = [r.getMessage().split()[3] for r in caplog.records]
    assert pages == ["pages=1", "pages=6", "pages=11"]
