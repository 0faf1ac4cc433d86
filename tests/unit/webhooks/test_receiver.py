"""Receiver HTTP behavior with an in-memory producer stand-in (the Kafka path is in tests/integration)."""

import base64
import threading

import orjson
import pytest
from fastapi.testclient import TestClient

from apisync.webhooks.receiver import WebhookSettings, create_app
from webhook_signing import sign_github, sign_standard, sign_stripe

NOW = 1_795_704_812
SW_SECRET = "whsec_" + base64.b64encode(b"k" * 24).decode()
BODY = orjson.dumps({"id": "evt_1", "object": "event", "type": "customer.updated", "created": NOW,
                     "data": {"object": {"id": "cus_1", "object": "customer"}}})


class RecordingProducer:
    """Acknowledges (or fails) queued messages when polled, like the real wrapper's delivery reports."""

    def __init__(self, fail=False, full_for=0):
        self.fail, self.queued, self.stored = fail, [], []
        self.full_for = full_for  # how many produce calls find the local queue full
        self.callers = []  # (thread, wait_for_room) of every produce call
        self._ready = threading.Condition()

    def produce_reported(self, topic, key, value, headers, on_report, wait_for_room=True):
        self.callers.append((threading.current_thread(), wait_for_room))
        if self.full_for:
            self.full_for -= 1
            if not wait_for_room:
                raise BufferError("Local: Queue full")
        with self._ready:
            self.queued.append(((topic, key, value, dict(headers)), on_report))
            self._ready.notify()

    def poll(self, timeout):
        with self._ready:
            self._ready.wait_for(lambda: self.queued, timeout)
            queued, self.queued = self.queued, []
        for message, report in queued:
            if self.fail:
                report("broker down")
            else:
                self.stored.append(message)
                report(None)
        return len(queued)


def client(producer, now=NOW, max_body=4096, metrics=None):
    settings = WebhookSettings(secrets={"stripe": ("whsec_old", "whsec_new"), "github": ("gh",),
                                        "salesforce": (SW_SECRET,)},
                               max_body_bytes=max_body, clock=lambda: now)
    return TestClient(create_app(settings, producer, *([metrics] if metrics else [])))


def test_valid_stripe_delivery_is_stored_raw_with_headers():
    producer = RecordingProducer()
    answer = client(producer).post("/webhooks/stripe", content=BODY,
                                   headers={"Stripe-Signature": sign_stripe("whsec_new", BODY, NOW),
                                            "Content-Type": "application/json"})
    assert answer.status_code == 200
    (topic, key, value, headers), = producer.stored
    assert (topic, key, value) == ("stripe.webhooks", "stripe.customer.cus_1", BODY)
    assert headers["stripe-signature"] == sign_stripe("whsec_new", BODY, NOW).encode()
    assert headers["apisync-received-at"].startswith(b"2026-11-26T14:53:32")


def test_github_and_salesforce_keys():
    producer = RecordingProducer()
    body = orjson.dumps({"action": "opened", "issue": {"number": 3, "updated_at": "2026-11-26T14:53:32Z"},
                         "repository": {"full_name": "apisync/demo", "id": 7000001}})
    answer = client(producer).post("/webhooks/github", content=body, headers={
        "X-Hub-Signature-256": sign_github("gh", body), "X-GitHub-Event": "issues", "X-GitHub-Delivery": "d-1"})
    assert answer.status_code == 200
    ping = b'{"zen": "hi"}'
    answer = client(producer).post("/webhooks/github", content=ping, headers={
        "X-Hub-Signature-256": sign_github("gh", ping), "X-GitHub-Event": "ping", "X-GitHub-Delivery": "d-2"})
    assert answer.status_code == 200
    assert [m[1] for m in producer.stored] == ["github.issue.7000001#3", "d-2"]


@pytest.mark.parametrize("headers, now, status", [
    ({"Stripe-Signature": sign_stripe("whsec_forged", BODY, NOW)}, NOW, 401),
    ({"Stripe-Signature": sign_stripe("whsec_old", BODY, NOW - 301)}, NOW, 401),
    ({}, NOW, 400),
    ({"Stripe-Signature": "garbage"}, NOW, 400),
], ids=["forged", "replayed", "missing", "malformed"])
def test_rejected_deliveries_produce_nothing(headers, now, status):
    producer = RecordingProducer()
    answer = client(producer, now=now).post("/webhooks/stripe", content=BODY, headers=headers)
    assert answer.status_code == status
    assert "whsec" not in answer.text
    assert producer.queued == [] and producer.stored == []


def test_oversized_body_is_413_with_or_without_content_length():
    producer = RecordingProducer()
    big = b"x" * 5000
    headers = {"Stripe-Signature": sign_stripe("whsec_new", big, NOW)}
    assert client(producer).post("/webhooks/stripe", content=big, headers=headers).status_code == 413

    def chunks():
        for _ in range(5):
            yield b"y" * 1000
    assert client(producer).post("/webhooks/stripe", content=chunks(), headers=headers).status_code == 413
    assert producer.stored == []


def test_a_full_local_queue_is_waited_out_in_a_worker_thread_never_in_the_event_loop():
    producer = RecordingProducer(full_for=1)
    answer = client(producer).post("/webhooks/stripe", content=BODY,
                                   headers={"Stripe-Signature": sign_stripe("whsec_old", BODY, NOW)})
    assert answer.status_code == 200
    assert [m[1] for m in producer.stored] == ["stripe.customer.cus_1"]
    (event_loop, waits), (worker, waits_there) = producer.callers
    assert (waits, waits_there) == (False, True) and worker is not event_loop


def test_kafka_failure_answers_503():
    producer = RecordingProducer(fail=True)
    answer = client(producer).post("/webhooks/stripe", content=BODY,
                                   headers={"Stripe-Signature": sign_stripe("whsec_old", BODY, NOW)})
    assert answer.status_code == 503


def test_standard_webhooks_tolerance_uses_injected_clock():
    body = b'{"type": "account.updated"}'
    headers = {"webhook-id": "m1", "webhook-timestamp": str(NOW),
               "webhook-signature": sign_standard(SW_SECRET, "m1", NOW, body)}
    assert client(RecordingProducer(), now=NOW + 299).post("/webhooks/salesforce", content=body,
                                                           headers=headers).status_code == 200
    assert client(RecordingProducer(), now=NOW + 301).post("/webhooks/salesforce", content=body,
                                                           headers=headers).status_code == 401


def test_unknown_api_is_404_and_settings_repr_hides_secrets():
    assert client(RecordingProducer()).post("/webhooks/jira", content=b"{}").status_code == 404
    settings = WebhookSettings.from_env({"APISYNC_WEBHOOK_SECRETS_STRIPE": "whsec_a, whsec_b",
                                         "APISYNC_WEBHOOK_TOLERANCE_S": "60"})
    assert settings.secrets == {"stripe": ("whsec_a", "whsec_b")} and settings.tolerance_s == 60
    assert "whsec_a" not in repr(settings)


class UrlSigned:
    """A test scheme signing method + URL + body, as providers like HubSpot (v3) do."""

    def __init__(self, secrets, tolerance_s):
        self.secret = secrets[0]

    def verify(self, body, headers, now, request):
        from apisync.webhooks.signatures import InvalidSignature

        if headers.get("x-sig") != f"{self.secret}|{request.method}|{request.url}|{body.decode()}":
            raise InvalidSignature("no signature matches")


def _acme_change(body: bytes, headers, synced_at: str, **_options):
    from apisync.events import Observation

    change = orjson.loads(body)
    return Observation("acme", "widget", str(change["objectId"]), change["occurredAt"], "webhook", synced_at,
                       None, False, True)


@pytest.fixture
def batching_api():
    from apisync.registry import ApiSpec, WebhookSpec, register, unregister

    split = lambda body: [orjson.dumps(change) for change in orjson.loads(body)]  # noqa: E731
    register(ApiSpec("acme", ("widget",), lambda settings: None, 1.0,
                     webhook=WebhookSpec(UrlSigned, _acme_change, split=split)))
    yield
    unregister("acme")


def test_a_batched_delivery_is_stored_one_message_per_change_and_signed_over_its_url(batching_api):
    producer = RecordingProducer()
    app = TestClient(create_app(WebhookSettings(secrets={"acme": ("s3",)}, clock=lambda: NOW), producer))
    body = orjson.dumps([{"objectId": 7, "occurredAt": 1}, {"objectId": 8, "occurredAt": 2}])
    url = "http://testserver/webhooks/acme?portal=1"
    forged = app.post("/webhooks/acme?portal=1", content=body, headers={"x-sig": f"s3|POST|http://elsewhere/|{body.decode()}"})
    assert forged.status_code == 401 and producer.stored == []
    answer = app.post("/webhooks/acme?portal=1", content=body, headers={"x-sig": f"s3|POST|{url}|{body.decode()}"})
    assert answer.status_code == 200
    assert [(key, orjson.loads(value)["objectId"]) for _topic, key, value, _headers in producer.stored] == [
        ("acme.widget.7", 7), ("acme.widget.8", 8)]


def test_answers_are_counted_as_metrics_stored_rejected_and_failed():
    counted: dict[str, int] = {}

    class Metrics:
        def incr(self, name, count=1, tags=None):
            counted[name] = counted.get(name, 0) + count

    signed = {"Stripe-Signature": sign_stripe("whsec_new", BODY, NOW)}
    ok = client(RecordingProducer(), metrics=Metrics())
    assert ok.post("/webhooks/stripe", content=BODY, headers=signed).status_code == 200
    assert ok.post("/webhooks/stripe", content=BODY, headers=signed).status_code == 200
    assert ok.post("/webhooks/stripe", content=BODY, headers={"Stripe-Signature": "t=1,v1=00"}).status_code == 401
    assert ok.post("/webhooks/jira", content=b"{}").status_code == 404
    failing = client(RecordingProducer(fail=True), metrics=Metrics())
    assert failing.post("/webhooks/stripe", content=BODY, headers=signed).status_code == 503
    # a path segment from the internet never becomes a metric name of its own
    assert counted == {"apisync.webhooks.stripe.stored": 2, "apisync.webhooks.stripe.rejected": 1,
                       "apisync.webhooks.unknown.rejected": 1, "apisync.webhooks.stripe.failed": 1}


def test_kept_headers_are_stored_the_first_of_a_repeated_one_and_no_others():
    producer = RecordingProducer()
    headers = [("Stripe-Signature", sign_stripe("whsec_new", BODY, NOW)), ("User-Agent", "Stripe/1.0"),
               ("user-agent", "second"), ("X-Other", "dropped")]
    assert client(producer).post("/webhooks/stripe", content=BODY, headers=headers).status_code == 200
    (_topic, _key, _value, stored), = producer.stored
    assert stored["user-agent"] == b"Stripe/1.0"
    assert set(stored) == {"stripe-signature", "user-agent", "apisync-received-at"}


def test_secrets_are_judged_by_the_current_settings_of_each_request():
    producer, secrets = RecordingProducer(), {}
    app = create_app(WebhookSettings(), producer, current=lambda: WebhookSettings(secrets=dict(secrets),
                                                                                   clock=lambda: NOW))
    test_client = TestClient(app)

    def post():
        return test_client.post("/webhooks/stripe", content=BODY, headers={
            "Stripe-Signature": sign_stripe("whsec_new", BODY, NOW), "Content-Type": "application/json"})

    assert post().status_code == 404  # no secret yet: no endpoint
    secrets["stripe"] = ("whsec_old", "whsec_new")
    assert post().status_code == 200
    secrets["stripe"] = ("whsec_newer",)  # rotated past the sender's secret
    assert post().status_code == 401
    assert len(producer.stored) == 1
