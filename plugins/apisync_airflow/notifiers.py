"""Failure alerts as an Airflow notifier: DAG, task, error and log URL, to every configured channel.

Channels are chosen when an alert fires (from the worker's environment), so nothing is read at
DAG-parse time: the log always; a JSON-lines file if APISYNC_ALERT_FILE is set; Slack if
APISYNC_ALERT_SLACK_WEBHOOK_URL is set; e-mail if APISYNC_ALERT_SMTP_HOST and APISYNC_ALERT_EMAIL_TO
are set (APISYNC_ALERT_SMTP_PORT, APISYNC_ALERT_EMAIL_FROM optional). A failing channel is logged and
the others still run: an alert must not be lost because Slack is down.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from airflow.sdk import BaseNotifier

log = logging.getLogger("apisync.alerts")

_MAX_ERROR = 500


@dataclass(frozen=True, slots=True)
class Alert:
    """What a person needs to act on a failed task."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    try_number: int
    error: str
    log_url: str

    def text(self) -> str:
        """One line for logs, Slack and the mail subject."""
        where = self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"
        return (f"apisync alert: task {self.dag_id}.{where} failed (run {self.run_id}, try {self.try_number}): "
                f"{self.error} | log: {self.log_url}")


def _one_line(value: Any) -> str:
    text = " ".join(str(value).split()) if value is not None else "unknown error"
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"


def alert_from_context(context: Mapping[str, Any]) -> Alert:
    """Build an Alert from a task callback context (works for plain and mapped tasks)."""
    ti = context.get("ti") or context.get("task_instance")
    error = context.get("exception")
    dag = context.get("dag")
    return Alert(
        dag_id=getattr(ti, "dag_id", None) or getattr(dag, "dag_id", "?"),
        task_id=getattr(ti, "task_id", "?"),
        run_id=getattr(ti, "run_id", None) or context.get("run_id", "?"),
        map_index=int(getattr(ti, "map_index", -1) if getattr(ti, "map_index", None) is not None else -1),
        try_number=int(getattr(ti, "try_number", 0) or 0),
        error=_one_line(f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else error),
        log_url=_log_url(ti),
    )


def _log_url(ti: Any) -> str:
    try:
        return str(ti.log_url)
    except Exception:  # the URL is a convenience; an alert without it still matters
        return "unavailable"


def log_channel(alert: Alert) -> None:
    log.error("%s", alert.text())


def file_channel(path: str) -> Callable[[Alert], None]:
    def send(alert: Alert) -> None:
        with Path(path).open("a", encoding="utf-8") as out:
            out.write(json.dumps(asdict(alert)) + "\n")
    return send


def slack_channel(url: str, post: Callable[..., Any] = httpx.post) -> Callable[[Alert], None]:
    def send(alert: Alert) -> None:
        post(url, json={"text": alert.text()}, timeout=10).raise_for_status()
    return send


def smtp_channel(host: str, port: int, sender: str, to: str) -> Callable[[Alert], None]:
    def send(alert: Alert) -> None:
        message = EmailMessage()
        message["Subject"] = f"[apisync] {alert.dag_id}.{alert.task_id} failed"
        message["From"], message["To"] = sender, to
        message.set_content(alert.text())
        with smtplib.SMTP(host, port, timeout=10) as smtp:
            smtp.send_message(message)
    return send


def channels_from_env(env: Mapping[str, str]) -> list[tuple[str, Callable[[Alert], None]]]:
    """The configured channels, the log first."""
    chosen: list[tuple[str, Callable[[Alert], None]]] = [("log", log_channel)]
    if env.get("APISYNC_ALERT_FILE"):
        chosen.append(("file", file_channel(env["APISYNC_ALERT_FILE"])))
    if env.get("APISYNC_ALERT_SLACK_WEBHOOK_URL"):
        chosen.append(("slack", slack_channel(env["APISYNC_ALERT_SLACK_WEBHOOK_URL"])))
    if env.get("APISYNC_ALERT_SMTP_HOST") and env.get("APISYNC_ALERT_EMAIL_TO"):
        chosen.append(("smtp", smtp_channel(env["APISYNC_ALERT_SMTP_HOST"], int(env.get("APISYNC_ALERT_SMTP_PORT", 25)),
                                            env.get("APISYNC_ALERT_EMAIL_FROM", "apisync@localhost"),
                                            env["APISYNC_ALERT_EMAIL_TO"])))
    return chosen


class ApisyncAlertNotifier(BaseNotifier):
    """on_failure_callback: send one Alert to every configured channel."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.env = env  # None = the process environment at alert time

    def notify(self, context: Any) -> None:
        alert = alert_from_context(context)
        for name, send in channels_from_env(os.environ if self.env is None else self.env):
            try:
                send(alert)
            except Exception as exc:
                log.warning("alert channel %s failed: %s", name, _one_line(exc))
