"""Webhook dispatcher: provider headers, retries bounded by max_attempts, duplicates."""
import hashlib
import hmac
import threading
import time

import httpx
import orjson

from api_simulator.config import default_runtime, merge_config
from api_simulator.model import WebhookMessage
from api_simulator.webhooks import WebhookDispatcher


def make(handler, patch):
    runtime = merge_config(default_runtime(), patch)
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return WebhookDispatcher(lambda: runtime, client=client)


def wait_for(predicate, timeout=60.0):
    """Poll until `predicate()` holds; the generous timeout only ends a dispatcher that is stuck."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_github_delivery_is_signed_and_retried_until_2xx():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(500 if len(seen) < 3 else 204)
    dispatcher = make(handler, {"webhooks": {"github": {"url": "http://hook/gh", "secrets": ["s3cret"]}},
                                "webhook_chaos": {"retry_base_s": 0.01}})
    body = orjson.dumps({"action": "opened"})
    dispatcher.submit([WebhookMessage("github", body, "issues", "guid-1")])
    try:
        assert wait_for(lambda: len(seen) == 3)
    finally:
        dispatcher.stop()
    assert {r.headers["x-github-delivery"] for r in seen} == {"guid-1"}
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert all(r.headers["x-hub-signature-256"] == expected and r.content == body for r in seen)
    assert dispatcher.stats["github"] == {"delivered": 1, "failed": 2, "attempts": 3}


def test_redelivery_stops_at_max_attempts():
    seen = []
    dispatcher = make(lambda r: seen.append(r) or httpx.Response(503),
                      {"webhooks": {"stripe": {"url": "http://hook/s", "secrets": ["whsec_x"]}},
                       "webhook_chaos": {"retry_base_s": 0.01, "max_attempts": 2}})
    dispatcher.submit([WebhookMessage("stripe", b"{}", "customer.created", "evt_1")])
    try:
        assert wait_for(lambda: len(seen) == 2)
        time.sleep(0.2)
    finally:
        dispatcher.stop()
    assert len(seen) == 2 and seen[0].headers["stripe-signature"].startswith("t=")


def test_duplicates_and_standard_webhooks_headers():
    seen = []
    dispatcher = make(lambda r: seen.append(r) or httpx.Response(200),
                      {"webhooks": {"salesforce": {"url": "http://hook/sf", "secrets": ["whsec_c2VjcmV0"]}},
                       "webhook_chaos": {"duplicate_rate": 1.0}})
    dispatcher.submit([WebhookMessage("salesforce", b"{}", "account.updated", "msg_1")])
    try:
        assert wait_for(lambda: len(seen) == 2)
    finally:
        dispatcher.stop()
    assert [r.headers["webhook-id"] for r in seen] == ["msg_1", "msg_1"]
    assert seen[0].headers["webhook-signature"].startswith("v1,")


def test_messages_without_a_url_are_not_sent():
    seen = []
    dispatcher = make(lambda r: seen.append(r) or httpx.Response(200), {})
    dispatcher.submit([WebhookMessage("stripe", b"{}", "customer.created", "evt_1")])
    time.sleep(0.1)
    dispatcher.stop()
    assert seen == []


def held(answers):
    """A receiver that blocks every request until `release` is set, then answers from `answers` in turn."""
    release, seen = threading.Event(), []

    def handler(request):
        seen.append(request)
        assert release.wait(60), "the test never released the receiver"
        return httpx.Response(answers[min(len(seen), len(answers)) - 1])
    return handler, release, seen


def test_a_message_is_pending_until_delivered():
    handler, release, seen = held([204])
    dispatcher = make(handler, {"webhooks": {"github": {"url": "http://hook/gh", "secrets": ["s"]}}})
    dispatcher.submit([WebhookMessage("github", b"{}", "issues", "guid-1")])
    try:
        assert wait_for(lambda: seen)  # being posted: not delivered yet
        assert dispatcher.pending() == {"github": 1}
        release.set()
        assert wait_for(lambda: dispatcher.pending() == {"github": 0})
    finally:
        release.set()
        dispatcher.stop()
    assert dispatcher.stats["github"]["delivered"] == 1


def test_a_failing_message_is_pending_through_its_retries_until_given_up():
    handler, release, seen = held([503])
    release.set()
    dispatcher = make(handler, {"webhooks": {"stripe": {"url": "http://hook/s", "secrets": ["whsec_x"]}},
                                "webhook_chaos": {"retry_base_s": 0.01, "max_attempts": 3}})
    dispatcher.submit([WebhookMessage("stripe", b"{}", "customer.created", "evt_1")])
    try:
        assert wait_for(lambda: dispatcher.pending() == {"stripe": 0})
        assert len(seen) == 3  # no longer pending means every attempt was made: none is still to come
    finally:
        dispatcher.stop()


def test_a_merged_batch_counts_every_event_it_carries():
    handler, release, seen = held([500, 204])
    dispatcher = make(handler, {"webhooks": {"hubspot": {"url": "http://hook/h", "secrets": ["s"]}},
                                "webhook_chaos": {"retry_base_s": 0.01}})
    dispatcher.submit([WebhookMessage("hubspot", orjson.dumps({"eventId": i}), "hubspot_event", str(i))
                       for i in range(150)])
    try:
        assert wait_for(lambda: seen)
        assert dispatcher.pending() == {"hubspot": 150}
        release.set()  # the first batch fails once and is retried; the other goes through
        assert wait_for(lambda: dispatcher.pending() == {"hubspot": 0})
    finally:
        release.set()
        dispatcher.stop()
    assert len(seen) == 3


def test_a_reset_forgets_what_was_pending():
    gates, seen = [threading.Event(), threading.Event()], []

    def handler(request):  # each request waits for its own gate
        seen.append(request)
        assert gates[len(seen) - 1].wait(60), "the test never opened the gate"
        return httpx.Response(204)
    dispatcher = make(handler, {"webhooks": {"github": {"url": "http://hook/gh", "secrets": ["s"]}}})
    dispatcher.submit([WebhookMessage("github", b"{}", "issues", "guid-1")])
    try:
        assert wait_for(lambda: len(seen) == 1)
        dispatcher.clear()
        assert dispatcher.pending() == {}
        gates[0].set()  # the message of before the reset finishes now: it must count for nothing
        assert wait_for(lambda: [entry["delivery_id"] for entry in dispatcher.log] == ["guid-1"])
        dispatcher.submit([WebhookMessage("github", b"{}", "issues", "guid-2")])
        assert wait_for(lambda: len(seen) == 2)
        assert dispatcher.pending() == {"github": 1}
        gates[1].set()
        assert wait_for(lambda: dispatcher.pending() == {"github": 0})
    finally:
        for gate in gates:
            gate.set()
        dispatcher.stop()
