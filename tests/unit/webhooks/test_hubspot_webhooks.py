"""HubSpot webhooks: the v3 signature (checked against an independent HMAC), the batch split, the parser."""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson
import pytest

from apisync.apis.hubspot.webhook import parse_hubspot
from apisync.events import ObservationError
from apisync.webhooks.dispatch import scheme_for, split_delivery, webhook_key
from apisync.webhooks.signatures import InvalidSignature, MalformedSignature, RequestLine

SECRET = "hs-client-secret-0123"
URL = "https://apisync.example/apisync/webhooks/hubspot?from=a%3Ab"
NOW_MS = 1_800_000_000_000
BODY = b'[{"eventId":1,"subscriptionType":"deal.propertyChange","objectId":7,"occurredAt":1800000000000}]'


def _sign(secret: str, method: str, uri: str, body: bytes, stamp: int) -> str:
    # written from the docs, not from the code under test: method + URI + body + timestamp
    message = f"{method}{uri}".encode() + body + str(stamp).encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def _headers(signature: str, stamp: int = NOW_MS) -> dict[str, str]:
    return {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": str(stamp)}


def _verify(headers, secrets=(SECRET,), body=BODY, url=URL, now_ms=NOW_MS):
    scheme_for("hubspot", secrets).verify(body, headers, now_ms / 1000, RequestLine("POST", url))


def test_a_v3_signature_over_method_decoded_uri_body_and_timestamp_verifies():
    # HubSpot decodes %3A (and a few others) in the URI before signing
    uri = "https://apisync.example/apisync/webhooks/hubspot?from=a:b"
    _verify(_headers(_sign(SECRET, "POST", uri, BODY, NOW_MS)))


def test_any_active_secret_verifies_during_a_rotation():
    uri = URL.replace("%3A", ":")
    _verify(_headers(_sign(SECRET, "POST", uri, BODY, NOW_MS)), secrets=("old-secret", SECRET))


@pytest.mark.parametrize(("headers", "error"), [
    ({"X-HubSpot-Request-Timestamp": str(NOW_MS)}, MalformedSignature),
    ({"X-HubSpot-Signature-v3": "abc="}, MalformedSignature),
    (_headers("not base64!!"), MalformedSignature),
    (_headers("c2lnbmF0dXJl", stamp=NOW_MS), InvalidSignature),
])
def test_missing_malformed_or_wrong_signatures_are_refused(headers, error):
    with pytest.raises(error):
        _verify(headers)


@pytest.mark.parametrize("change", ["url", "body", "method", "old", "future"])
def test_a_signature_for_another_url_body_method_or_time_is_refused(change):
    uri = URL.replace("%3A", ":")
    stamp = {"old": NOW_MS - 301_000, "future": NOW_MS + 301_000}.get(change, NOW_MS)
    signature = _sign(SECRET, "GET" if change == "method" else "POST",
                      uri + ("x" if change == "url" else ""), BODY + (b" " if change == "body" else b""), stamp)
    with pytest.raises(InvalidSignature) as caught:
        _verify(_headers(signature, stamp))
    assert SECRET not in str(caught.value)


def test_a_batch_splits_into_one_body_per_event_each_keyed_by_its_record():
    events = [{"eventId": i, "subscriptionType": kind, "objectId": 100 + i, "occurredAt": NOW_MS + i}
              for i, kind in enumerate(("contact.creation", "company.propertyChange", "deal.deletion"))]
    parts = split_delivery("hubspot", orjson.dumps(events))
    assert [orjson.loads(p) for p in parts] == events
    assert [webhook_key("hubspot", p, {}) for p in parts] == [
        "hubspot.contact.100", "hubspot.company.101", "hubspot.deal.102"]


@pytest.mark.parametrize("body", [b"not json", b"[]", b"[1, 2]", b'"text"'])
def test_a_delivery_that_is_not_an_array_of_events_cannot_be_split(body):
    with pytest.raises(ValueError):
        split_delivery("hubspot", body)


def test_a_change_is_a_thin_observation_at_occurred_at_and_a_deletion_is_a_delete():
    change = parse_hubspot(b'{"subscriptionType": "deal.propertyChange", "objectId": 7, "occurredAt": 1800000000123,'
                           b' "propertyName": "dealstage", "propertyValue": "closedwon"}', {}, "now")
    assert (change.key, change.version, change.thin, change.deleted, change.data) == (
        "hubspot.deal.7", 1_800_000_000_123, True, False, None)
    gone = parse_hubspot(b'{"subscriptionType": "contact.deletion", "objectId": 8, "occurredAt": 5}', {}, "now")
    assert (gone.key, gone.deleted, gone.thin, gone.reason) == (
        "hubspot.contact.8", True, False, "HubSpot contact.deletion webhook")


@pytest.mark.parametrize("body", [
    b'{"subscriptionType": "ticket.creation", "objectId": 1, "occurredAt": 1}',  # not a synced type
    b'{"subscriptionType": "contact.creation", "occurredAt": 1}',
    b'{"subscriptionType": "contact.creation", "objectId": 1, "occurredAt": "yesterday"}',
    b'[{"subscriptionType": "contact.creation", "objectId": 1, "occurredAt": 1}]',  # a batch: split first
])
def test_an_unusable_event_is_an_observation_error(body):
    with pytest.raises(ObservationError):
        parse_hubspot(body, {}, "now")
