"""Alerts through the Slack and SMTP providers: to a local SMTP server (aiosmtpd) and a local webhook server."""

from __future__ import annotations

import email
import html
import json
import logging
import socket
import threading
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from aiosmtpd.controller import Controller

from apisync_airflow.notifiers import ApisyncAlertNotifier, alert_from_context

WEBHOOK_TOKEN = "T0APISYNC/B0ALERTS/xoxSeCrEtWeBhOoK"
SMTP_PASSWORD = "smtp-pa55word"


def failure_context() -> dict:
    ti = SimpleNamespace(dag_id="stripe_backfill", task_id="backfill", run_id="manual__1", map_index=-1,
                         try_number=3, log_url="http://af/dags/stripe_backfill/runs/manual__1/tasks/backfill")
    # Markup and Jinja braces: sent as they are (escaped in HTML), never rendered as a template.
    return {"ti": ti, "exception": RuntimeError("HTTP 500: <b>boom</b> {{ ti.task_id }} & more")}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def set_conn(monkeypatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


class Inbox:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.envelopes: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield SimpleNamespace(port=controller.port, inbox=inbox)
    finally:
        controller.stop()


@pytest.fixture
def webhook_server():
    """A stand-in for hooks.slack.com: records each POST, answers `status`."""
    seen: list[dict] = []
    state = SimpleNamespace(status=200, seen=seen)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's hook name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append({"path": self.path, "json": json.loads(body), "agent": self.headers["User-Agent"]})
            self.send_response(state.status)
            self.end_headers()
            self.wfile.write(b"ok" if state.status == 200 else b"invalid_token")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("sender, expected_from", [
    (None, "airflow@apisync.test"),  # the connection's from_email, as the provider reads it
    ("alerts@apisync.test", "alerts@apisync.test"),
])
def test_an_alert_reaches_a_local_smtp_server_through_the_provider_notifier(monkeypatch, smtp_server, sender,
                                                                           expected_from):
    set_conn(monkeypatch, "smtp_alerts", conn_type="smtp", host="127.0.0.1", port=smtp_server.port,
             # the socket timeout only has to outlast a loaded machine's local SMTP exchange
             extra={"from_email": "airflow@apisync.test", "disable_ssl": True, "disable_tls": True, "timeout": 60})
    env = {"APISYNC_ALERT_SMTP_CONN_ID": "smtp_alerts",
           "APISYNC_ALERT_EMAIL_TO": "ops@apisync.test, oncall@apisync.test"}
    if sender:
        env["APISYNC_ALERT_EMAIL_FROM"] = sender
    context = failure_context()
    ApisyncAlertNotifier(env=env).notify(context)

    (envelope,) = smtp_server.inbox.envelopes
    assert envelope.mail_from == expected_from
    assert envelope.rcpt_tos == ["ops@apisync.test", "oncall@apisync.test"]
    message = email.message_from_bytes(envelope.original_content, policy=policy.default)
    assert message["Subject"] == "[apisync] stripe_backfill.backfill failed"
    body = message.get_body(("html",)).get_content()
    assert f"<p>{html.escape(alert_from_context(context).text())}</p>" in body
    assert "{{ ti.task_id }}" in alert_from_context(context).text()


@pytest.mark.parametrize("fields", [
    lambda url: {"password": f"{url}/services/{WEBHOOK_TOKEN}"},  # the whole webhook URL as the token
    lambda url: {"schema": "http", "host": f"{url.split('://')[1]}/services", "password": WEBHOOK_TOKEN},
], ids=["url-in-password", "endpoint-and-token"])
def test_a_slack_alert_goes_through_the_slack_webhook_hook(monkeypatch, webhook_server, fields):
    set_conn(monkeypatch, "slack_alerts", conn_type="slackwebhook", **fields(webhook_server.url))
    context = failure_context()
    ApisyncAlertNotifier(env={"APISYNC_ALERT_SLACK_CONN_ID": "slack_alerts"}).notify(context)

    (request,) = webhook_server.seen
    assert request["path"] == f"/services/{WEBHOOK_TOKEN}"
    assert request["json"] == {"text": alert_from_context(context).text()}  # the one line, unrendered
    assert "slackclient" in request["agent"]  # sent by slack_sdk's WebhookClient, which the hook wraps


def test_failing_channels_are_logged_without_secrets_and_the_others_still_run(monkeypatch, webhook_server,
                                                                              tmp_path, caplog):
    webhook_server.status = 403
    set_conn(monkeypatch, "slack_alerts", conn_type="slackwebhook",
             password=f"{webhook_server.url}/services/{WEBHOOK_TOKEN}")
    set_conn(monkeypatch, "smtp_alerts", conn_type="smtp", host="127.0.0.1", port=free_port(), login="apisync",
             password=SMTP_PASSWORD,
             extra={"from_email": "airflow@apisync.test", "disable_ssl": True, "disable_tls": True, "timeout": 2})
    path = tmp_path / "alerts.jsonl"
    env = {"APISYNC_ALERT_SLACK_CONN_ID": "slack_alerts", "APISYNC_ALERT_SMTP_CONN_ID": "smtp_alerts",
           "APISYNC_ALERT_EMAIL_TO": "ops@x", "APISYNC_ALERT_FILE": str(path)}
    with caplog.at_level(logging.INFO):
        ApisyncAlertNotifier(env=env).notify(failure_context())

    assert json.loads(path.read_text())["task_id"] == "backfill"
    assert len(webhook_server.seen) == 1
    assert "alert channel slack failed" in caplog.text and "alert channel smtp failed" in caplog.text
    assert WEBHOOK_TOKEN.split("/")[-1] not in caplog.text and SMTP_PASSWORD not in caplog.text
