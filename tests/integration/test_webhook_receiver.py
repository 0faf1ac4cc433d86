"""The receiver against the real broker: stored raw after the ack, an ack waits for its own messages only,
nothing stored for bad requests, 503 when down."""

import base64
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from fastapi.testclient import TestClient
from sync_helpers import served

from apisync.kafka.admin import admin_client, ensure
from apisync.kafka.producer import Producer
from apisync.kafka.reader import read_topic
from apisync.kafka.topics import TopicSpec
from apisync.webhooks.receiver import WebhookSettings, create_app
from webhook_signing import sign_github, sign_standard, sign_stripe

pytestmark = pytest.mark.integration

NOW = 1_795_704_812
SW_SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
SECRETS = {"stripe": ("whsec_one", "whsec_two"), "github": ("gh_secret",), "salesforce": (SW_SECRET,)}


@pytest.fixture(scope="module")
def prefix(kafka_config):
    ns = f"t{uuid.uuid4().hex[:8]}."
    specs = [TopicSpec(f"{ns}{api}.webhooks", 3, 1, {"cleanup.policy": "delete"}) for api in SECRETS]
    ensure(admin_client(kafka_config), specs)
    return ns


@pytest.fixture(scope="module")
def app_client(kafka_config, prefix):
    producer = Producer({**kafka_config, "message.timeout.ms": 10000})
    settings = WebhookSettings(secrets=SECRETS, max_body_bytes=2048, clock=lambda: NOW, topic_prefix=prefix)
    with TestClient(create_app(settings, producer)) as client:
        yield client


def end_offsets(kafka_config, topic):
    consumer = Consumer({**kafka_config, "group.id": "probe-" + uuid.uuid4().hex})
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(3))
    finally:
        consumer.close()


def stripe_body(ident="cus_1"):
    return orjson.dumps({"id": f"evt_{ident}", "object": "event", "type": "customer.updated", "created": NOW,
                         "data": {"object": {"id": ident, "object": "customer", "email": "a@b.c"}}})


def test_valid_deliveries_are_in_kafka_raw_with_headers_and_record_keys(app_client, kafka_config, prefix):
    body = stripe_body("cus_raw")
    answer = app_client.post("/webhooks/stripe", content=body,
                             headers={"Stripe-Signature": sign_stripe("whsec_two", body, NOW)})
    assert answer.status_code == 200, answer.text
    gh = orjson.dumps({"action": "edited", "issue": {"number": 12, "updated_at": "2026-11-26T14:53:30Z"},
                       "repository": {"full_name": "apisync/demo", "id": 7000001}})
    assert app_client.post("/webhooks/github", content=gh, headers={
        "X-Hub-Signature-256": sign_github("gh_secret", gh), "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": "0b9c"}).status_code == 200
    sf = orjson.dumps({"type": "account.updated", "timestamp": "2026-11-26T14:53:30Z",
                       "data": {"sobject": "Account", "Id": "001A", "record": {
                           "Id": "001A", "SystemModstamp": "2026-11-26T14:53:30.000+0000"}}})
    assert app_client.post("/webhooks/salesforce", content=sf, headers={
        "webhook-id": "msg_1", "webhook-timestamp": str(NOW),
        "webhook-signature": sign_standard(SW_SECRET, "msg_1", NOW, sf)}).status_code == 200

    stored = {m.key().decode(): m for m in read_topic(kafka_config, f"{prefix}stripe.webhooks")}
    message = stored["stripe.customer.cus_raw"]
    assert message.value() == body  # untouched bytes
    headers = dict(message.headers())
    assert headers["stripe-signature"] == sign_stripe("whsec_two", body, NOW).encode()
    assert b"apisync-received-at" in [k.encode() for k in headers]
    assert [m.key() for m in read_topic(kafka_config, f"{prefix}github.webhooks")] == [b"github.issue.7000001#12"]
    sf_msgs = read_topic(kafka_config, f"{prefix}salesforce.webhooks")
    assert [m.key() for m in sf_msgs] == [b"salesforce.account.001A"]
    assert dict(sf_msgs[0].headers())["webhook-id"] == b"msg_1"


@pytest.mark.parametrize("case", ["forged", "replayed", "missing-header", "oversized", "not-hex"])
def test_bad_requests_get_4xx_and_nothing_is_produced(app_client, kafka_config, prefix, case):
    body = stripe_body(f"cus_{case}")
    headers = {
        "forged": {"Stripe-Signature": sign_stripe("whsec_attacker", body, NOW)},
        "replayed": {"Stripe-Signature": sign_stripe("whsec_one", body, NOW - 301)},
        "missing-header": {},
        "oversized": {"Stripe-Signature": sign_stripe("whsec_one", body + b" " * 4096, NOW)},
        "not-hex": {"Stripe-Signature": f"t={NOW},v1=xyz"},
    }[case]
    if case == "oversized":
        body += b" " * 4096
    expected = {"forged": 401, "replayed": 401, "missing-header": 400, "oversized": 413, "not-hex": 400}[case]
    before = end_offsets(kafka_config, f"{prefix}stripe.webhooks")
    answer = app_client.post("/webhooks/stripe", content=body, headers=headers)
    assert answer.status_code == expected
    assert end_offsets(kafka_config, f"{prefix}stripe.webhooks") == before


def test_kafka_unreachable_answers_503():
    # a real client pointed at a port nobody listens on: delivery times out, the provider must retry
    producer = Producer({"bootstrap.servers": "127.0.0.1:9", "message.timeout.ms": 1500})
    settings = WebhookSettings(secrets=SECRETS, clock=lambda: NOW, ack_timeout_s=5)
    body = stripe_body()
    with TestClient(create_app(settings, producer)) as client:
        answer = client.post("/webhooks/stripe", content=body,
                             headers={"Stripe-Signature": sign_stripe("whsec_one", body, NOW)})
    assert answer.status_code == 503
    assert "whsec" not in answer.text


def github_issue(number):
    body = orjson.dumps({"action": "edited", "issue": {"number": number, "updated_at": "2026-11-26T14:53:30Z"},
                         "repository": {"full_name": "apisync/demo", "id": 7000001}})
    return body, {"X-Hub-Signature-256": sign_github("gh_secret", body), "X-GitHub-Event": "issues",
                  "X-GitHub-Delivery": f"held-{number}"}


def test_an_ack_never_waits_for_another_requests_message(kafka_config):
    # A held delivery, for real: this namespace has no github topic and the broker creates none, so the
    # github message stays queued until message.timeout.ms, then fails. Everything below must happen
    # inside that window: it is long, so that a loaded machine still fits in it.
    held_s = 30
    ns = f"t{uuid.uuid4().hex[:8]}."
    ensure(admin_client(kafka_config), [TopicSpec(f"{ns}stripe.webhooks", 3, 1, {"cleanup.policy": "delete"})])
    producer = Producer({**kafka_config, "message.timeout.ms": held_s * 1000, "allow.auto.create.topics": False})
    # the held request's 503 comes from its failed delivery, not from giving up on the ack
    settings = WebhookSettings(secrets=SECRETS, clock=lambda: NOW, topic_prefix=ns, ack_timeout_s=held_s + 30)
    body = stripe_body("cus_not_held")
    with served(create_app(settings, producer)) as base, ThreadPoolExecutor(1) as pool:
        held_body, held_headers = github_issue(99)
        held = pool.submit(httpx.post, f"{base}/webhooks/github", content=held_body, headers=held_headers,
                           timeout=held_s + 60)
        deadline = time.monotonic() + held_s
        while not (len(producer) or held.done()) and time.monotonic() < deadline:  # until the message is queued
            time.sleep(0.05)
        assert len(producer) == 1 and not held.done()
        answer = httpx.post(f"{base}/webhooks/stripe", content=body, timeout=60,
                            headers={"Stripe-Signature": sign_stripe("whsec_one", body, NOW)})
        assert answer.status_code == 200, answer.text
        # acknowledged while the other request's message is still undelivered (a flush per request
        # answered only once the producer's whole queue was empty); >= 1: this request's own message
        # may not be released yet right after its report was served
        assert len(producer) >= 1 and not held.done()
        assert held.result().status_code == 503  # its own delivery failed: the provider must retry
    stored = read_topic(kafka_config, f"{ns}stripe.webhooks")
    assert [m.value() for m in stored] == [body]
