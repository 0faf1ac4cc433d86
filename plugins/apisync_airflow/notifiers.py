"""Failure alerts as an Airflow notifier: DAG, task, error and log URL, to every configured channel.

Channels are chosen when an alert fires (from the worker's environment), so nothing is read at
DAG-parse time: the log always; a JSON-lines file if APISYNC_ALERT_FILE is set; Slack through the
Slack provider's `SlackWebhookNotifier` if APISYNC_ALERT_SLACK_CONN_ID names a Slack Incoming Webhook
connection; e-mail through the SMTP provider's `SmtpNotifier` if APISYNC_ALERT_EMAIL_TO is set (the
`smtp` connection APISYNC_ALERT_SMTP_CONN_ID, else the provider's default; APISYNC_ALERT_EMAIL_FROM,
else the connection's `from_email`). A failing channel is logged and the others still run: an alert
must not be lost because Slack is down.
"""

from __future__ import annotations

import html
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from airflow.sdk import BaseNotifier

from apisync.formats import shorten

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
    return shorten(text, _MAX_ERROR)


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


# The provider notifiers are imported when an alert fires (parsing a DAG never loads them), and their
# notify() is called directly, never through __call__: that would render their fields as Jinja
# templates, and an error message is not a template (a "{{" in it would break or run).
def slack_channel(conn_id: str) -> Callable[[Alert], None]:
    """The alert text to a Slack Incoming Webhook connection (conn type `slackwebhook`)."""
    def send(alert: Alert) -> None:
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        SlackWebhookNotifier(slack_webhook_conn_id=conn_id, text=alert.text()).notify({})
    return send


def smtp_channel(conn_id: str | None, to: str, sender: str | None) -> Callable[[Alert], None]:
    """The alert as an e-mail through an `smtp` connection (None: the provider's default connection)."""
    def send(alert: Alert) -> None:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        SmtpNotifier(to=to, from_email=sender, smtp_conn_id=conn_id,
                     subject=f"[apisync] {alert.dag_id}.{alert.task_id} failed",
                     html_content=f"<p>{html.escape(alert.text())}</p>").notify({})
    return send


# Read before the provider notifiers: now ignored, so say so rather than drop alerts silently.
_RETIRED = {"APISYNC_ALERT_SLACK_WEBHOOK_URL": "a slackwebhook connection named by APISYNC_ALERT_SLACK_CONN_ID",
            "APISYNC_ALERT_SMTP_HOST": "an smtp connection (APISYNC_ALERT_SMTP_CONN_ID, default smtp_default)"}


def channels_from_env(env: Mapping[str, str]) -> list[tuple[str, Callable[[Alert], None]]]:
    """The configured channels, the log first."""
    chosen: list[tuple[str, Callable[[Alert], None]]] = [("log", log_channel)]
    if env.get("APISYNC_ALERT_FILE"):
        chosen.append(("file", file_channel(env["APISYNC_ALERT_FILE"])))
    if env.get("APISYNC_ALERT_SLACK_CONN_ID"):
        chosen.append(("slack", slack_channel(env["APISYNC_ALERT_SLACK_CONN_ID"])))
    if env.get("APISYNC_ALERT_EMAIL_TO"):
        conn_id, sender = env.get("APISYNC_ALERT_SMTP_CONN_ID") or None, env.get("APISYNC_ALERT_EMAIL_FROM") or None
        chosen.append(("smtp", smtp_channel(conn_id, env["APISYNC_ALERT_EMAIL_TO"], sender)))
    for name, instead in _RETIRED.items():
        if env.get(name):
            log.warning("%s is no longer read: alerts go through %s", name, instead)
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
