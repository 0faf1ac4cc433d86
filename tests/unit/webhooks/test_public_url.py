"""Signatures over the called URL behind a proxy: the receiver signs its public URL, not the rewritten one.

A TLS-terminating proxy forwards `https://hooks.example.com/hubspot-in/webhooks/hubspot?portal=1` as
`http://10.0.0.7:8080/webhooks/hubspot?portal=1`; HubSpot signed the first (v3: method + URI + body +
timestamp, https://developers.hubspot.com/docs/apps/legacy-apps/authentication/validating-requests).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from apisync.webhooks.receiver import WebhookSettings, create_app

SECRET = "hs-client-secret-0123"
NOW_MS = 1_800_000_000_000
PUBLIC = "https://hooks.example.com/hubspot-in"
CALLED = f"{PUBLIC}/webhooks/hubspot?portal=1"
BODY = b'[{"eventId":1,"subscriptionType":"deal.propertyChange","objectId":7,"occurredAt":1800000000000}]'


class Stored:
    """A producer that acknowledges every message at once."""

    def __init__(self) -> None:
        self.messages: list[tuple] = []

    def produce_reported(self, topic, key, value, headers, on_report, wait_for_room=True):
        self.messages.append((topic, key))
        on_report(None)

    def poll(self, timeout):
        return 0


def _signature(uri: str) -> str:
    # from the docs, not from the code under test
    message = b"POST" + uri.encode() + BODY + str(NOW_MS).encode()
    return base64.b64encode(hmac.new(SECRET.encode(), message, hashlib.sha256).digest()).decode()


def _post_through_proxy(public_url: str, mount: str = "") -> tuple[int, Stored]:
    """POST as the proxy forwards it: plain http, the internal host and port, the public prefix stripped."""
    producer = Stored()
    settings = WebhookSettings(secrets={"hubspot": (SECRET,)}, clock=lambda: NOW_MS / 1000, public_url=public_url)
    app = create_app(settings, producer)
    if mount:  # mounted below a prefix, as the Airflow plugin mounts it on the api-server
        outer = FastAPI()
        outer.mount(mount, app)
        app = outer
    client = TestClient(app, base_url="http://10.0.0.7:8080")
    answer = client.post(f"{mount}/webhooks/hubspot?portal=1", content=BODY, headers={
        "X-HubSpot-Signature-v3": _signature(CALLED), "X-HubSpot-Request-Timestamp": str(NOW_MS),
        "Content-Type": "application/json"})
    return answer.status_code, producer


@pytest.mark.parametrize("mount", ["", "/apisync"])
def test_a_delivery_signed_over_the_public_url_is_accepted_with_the_setting(mount):
    status, producer = _post_through_proxy(PUBLIC, mount)
    assert status == 200
    assert producer.messages == [("hubspot.webhooks", "hubspot.deal.7")]


def test_the_same_delivery_is_rejected_without_the_setting():
    status, producer = _post_through_proxy("")
    assert status == 401 and producer.messages == []


def test_a_public_url_with_a_trailing_slash_is_the_same_root():
    assert _post_through_proxy(PUBLIC + "/")[0] == 200


def test_the_public_url_comes_from_the_environment():
    settings = WebhookSettings.from_env({"APISYNC_WEBHOOK_PUBLIC_URL": f" {PUBLIC} "})
    assert settings.public_url == PUBLIC
    assert WebhookSettings.from_env({}).public_url == ""


def test_the_airflow_plugin_keeps_the_public_url_from_the_environment():
    from apisync_airflow.webhook_app import receiver_settings

    settings = receiver_settings({"APISYNC_WEBHOOK_PUBLIC_URL": PUBLIC, "APISYNC_WEBHOOK_SECRETS_HUBSPOT": SECRET}, {})
    assert (settings.public_url, settings.secrets["hubspot"]) == (PUBLIC, (SECRET,))
