"""The Outbound Messaging endpoint's sender checks: path secret, IP allow-list, then the organisation."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from test_outbound_messaging import ORG, ROW, message, sobject
from test_receiver import RecordingProducer

from apisync.apis.salesforce.outbound_endpoint import OUTBOUND_PATH, RedactPathSecret
from apisync.webhooks.receiver import WebhookSettings, create_app

SECRET = "Zm9yLXRoZS1zaW11bGF0ZWQtb3Jn"
BODY = message(sobject(ROW))


def client(producer, client_host="testclient", **options) -> TestClient:
    defaults = {"organization_ids": (ORG,), "outbound_secrets": ("old-path-secret", SECRET)}
    app = create_app(WebhookSettings(api_options={"salesforce": {**defaults, **options}}), producer)
    return TestClient(app, client=(client_host, 50000))


def post(test_client: TestClient, path: str):
    return test_client.post(path, content=BODY, headers={"Content-Type": "text/xml; charset=utf-8"})


def test_the_right_path_secret_is_acknowledged_and_stored():
    producer = RecordingProducer()
    answer = post(client(producer), f"{OUTBOUND_PATH}/{SECRET}")
    assert answer.status_code == 200 and b"<Ack>true</Ack>" in answer.content
    assert [key for _topic, key, _value, _headers in producer.stored] == ["salesforce.account.0015g0000000001AAA"]


@pytest.mark.parametrize("path", [OUTBOUND_PATH, f"{OUTBOUND_PATH}/", f"{OUTBOUND_PATH}/wrong-secret",
                                  f"{OUTBOUND_PATH}/{SECRET[:-1]}", f"{OUTBOUND_PATH}/{SECRET.lower()}"])
def test_a_missing_or_wrong_path_secret_is_401_logged_once_without_the_secret(path, caplog):
    producer = RecordingProducer()
    with caplog.at_level(logging.WARNING, logger="apisync.webhooks"):
        answer = post(client(producer), path)
    assert answer.status_code == 401 and producer.stored == []
    assert b"<faultstring>the endpoint URL lacks the configured path secret</faultstring>" in answer.content
    assert b"Ack" not in answer.content
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "path secret is missing or wrong" in lines[0]
    assert SECRET.lower() not in caplog.text.lower() and "wrong-secret" not in caplog.text
    assert "old-path-secret" not in caplog.text


@pytest.mark.parametrize("options", [{"outbound_secrets": ()}, {"organization_ids": ()}])
def test_without_a_path_secret_or_an_organisation_the_endpoint_is_off(options):
    producer = RecordingProducer()
    answer = post(client(producer, **options), f"{OUTBOUND_PATH}/{SECRET}")
    assert answer.status_code == 404 and b"path secret" in answer.content and producer.stored == []


@pytest.mark.parametrize(("host", "status"), [("13.110.7.8", 200), ("203.0.113.9", 403)])
def test_the_allow_list_is_checked_before_anything_else(host, status):
    producer = RecordingProducer()
    answer = post(client(producer, host, outbound_allowed_ips=("13.108.0.0/14",)), f"{OUTBOUND_PATH}/{SECRET}")
    assert answer.status_code == status
    assert len(producer.stored) == (status == 200)


def test_the_organisation_is_still_checked_behind_the_secret():
    producer = RecordingProducer()
    answer = post(client(producer, organization_ids=("00D5g000009EvilAAA",)), f"{OUTBOUND_PATH}/{SECRET}")
    assert answer.status_code == 403 and producer.stored == []


def test_settings_read_from_env_and_never_shown():
    settings = WebhookSettings.from_env({"APISYNC_SALESFORCE_OUTBOUND_SECRETS": f" {SECRET}, ,next ",
                                         "APISYNC_SALESFORCE_OUTBOUND_ALLOWED_IPS": "13.108.0.0/14,2605:6180::/32"})
    assert settings.api_options["salesforce"]["outbound_secrets"] == (SECRET, "next")
    assert settings.api_options["salesforce"]["outbound_allowed_ips"] == ("13.108.0.0/14", "2605:6180::/32")
    assert SECRET not in repr(settings)


def test_the_access_log_never_shows_the_path_secret():
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("1.2.3.4:5", "POST", f"/apisync{OUTBOUND_PATH}/{SECRET}?x=1", "1.1", 200), None)
    assert RedactPathSecret().filter(record)
    assert record.getMessage() == f'1.2.3.4:5 - "POST /apisync{OUTBOUND_PATH}/***?x=1 HTTP/1.1" 200'
    outbound = {"organization_ids": (ORG,), "outbound_secrets": (SECRET,)}
    create_app(WebhookSettings(api_options={"salesforce": outbound}), RecordingProducer())
    assert any(isinstance(f, RedactPathSecret) for f in logging.getLogger("uvicorn.access").filters)


def test_a_bad_allow_list_entry_answers_503_so_salesforce_retries_after_the_fix(caplog):
    producer = RecordingProducer()
    with caplog.at_level(logging.ERROR, logger="apisync.webhooks"):
        answer = post(client(producer, outbound_allowed_ips=("13.108.0.0/14", "salesforce")),
                      f"{OUTBOUND_PATH}/{SECRET}")
    assert answer.status_code == 503 and b"Ack" not in answer.content and producer.stored == []
    assert "outbound_allowed_ips): not an IP network: 'salesforce'" in caplog.text


def test_the_options_are_read_per_request_so_a_secret_set_later_needs_no_restart():
    producer, options = RecordingProducer(), {"organization_ids": (ORG,)}
    app = create_app(WebhookSettings(), producer,
                     current=lambda: WebhookSettings(api_options={"salesforce": dict(options)}))
    test_client = TestClient(app)
    assert post(test_client, f"{OUTBOUND_PATH}/{SECRET}").status_code == 404  # no path secret yet: off
    options["outbound_secrets"] = (SECRET,)
    assert post(test_client, f"{OUTBOUND_PATH}/{SECRET}").status_code == 200
    options["outbound_secrets"] = ("rotated",)
    assert post(test_client, f"{OUTBOUND_PATH}/{SECRET}").status_code == 401
    assert len(producer.stored) == 1
