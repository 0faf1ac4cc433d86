"""What an API adds to the receiver through its spec: headers kept next to the body, options read from
the environment, routes of its own (the receiver names no API; `acme` is registered here)."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
import pytest
from fastapi import Request
from fastapi.responses import Response
from fastapi.testclient import TestClient
from test_receiver import RecordingProducer

from apisync.events import Observation
from apisync.registry import ApiSpec, WebhookSpec, register, unregister
from apisync.webhooks.receiver import WebhookSettings, create_app


@dataclass(frozen=True, slots=True)
class Unsigned:
    """A scheme that accepts every delivery (the signature is not what these tests are about)."""

    secrets: tuple[str, ...] = field(repr=False)
    tolerance_s: int = 300

    def verify(self, body, headers, now, request=None) -> None:
        return None


def _widget(body: bytes, headers, synced_at: str = "") -> Observation:
    return Observation("acme", "widget", str(orjson.loads(body)["id"]), 1, "webhook", synced_at, None, False, True)


def _options_from_env(env) -> dict[str, str]:
    return {"token": env.get("ACME_ROUTE_TOKEN", "")}


def _mount_soap(app, context) -> None:
    async def soap(request: Request) -> Response:
        if request.path_params["token"] != context.options.get("token"):
            context.answered(401)
            return Response(b"<Fault/>", status_code=401)
        await context.sink.send_all(context.topic, [(None, await context.read_body(request), [])])
        context.answered(200, 1)
        return Response(b"<Ack/>")

    app.add_route("/webhooks/acme/soap/{token}", soap, methods=["POST"])


@pytest.fixture
def acme():
    register(ApiSpec("acme", ("widget",), lambda settings: None, 1.0,
                     webhook=WebhookSpec(Unsigned, _widget, kept_headers=("X-Acme-Event",),
                                         options_from_env=_options_from_env, extra_routes=_mount_soap)))
    yield
    unregister("acme")


def test_the_headers_an_api_declares_are_kept_next_to_its_body(acme):
    producer = RecordingProducer()
    app = TestClient(create_app(WebhookSettings(secrets={"acme": ("s",)}), producer))
    headers = {"X-Acme-Event": "widget.updated", "X-Other": "dropped", "Content-Type": "application/json"}
    assert app.post("/webhooks/acme", content=b'{"id": 7}', headers=headers).status_code == 200
    (_topic, key, _value, stored), = producer.stored
    assert key == "acme.widget.7"
    assert set(stored) == {"x-acme-event", "content-type", "user-agent", "apisync-received-at"}


def test_an_api_mounts_its_own_route_with_the_options_it_reads_from_the_environment(acme):
    counted: dict[str, int] = {}

    class Metrics:
        def incr(self, name, count=1, tags=None):
            counted[name] = counted.get(name, 0) + count

    settings = WebhookSettings.from_env({"ACME_ROUTE_TOKEN": "t0ken"}, topic_prefix="ns.")
    assert settings.api_options["acme"] == {"token": "t0ken"} and "t0ken" not in repr(settings)
    producer = RecordingProducer()
    app = TestClient(create_app(settings, producer, Metrics()))
    assert app.post("/webhooks/acme/soap/wrong", content=b"<x/>").status_code == 401
    assert app.post("/webhooks/acme/soap/t0ken", content=b"<x/>").content == b"<Ack/>"
    assert [(topic, value) for topic, _key, value, _headers in producer.stored] == [("ns.acme.webhooks", b"<x/>")]
    assert counted == {"apisync.webhooks.acme.rejected": 1, "apisync.webhooks.acme.stored": 1}
