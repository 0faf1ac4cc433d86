"""Stripe thin events (event destinations, `object: "v2.core.event"`): thin observations of the related object.

Shape from https://docs.stripe.com/api/v2/core/events (ISO 8601 `created`, `related_object` {id, type, url});
v1 resources' thin event types carry a `v1.` prefix (changelog 2026-09-30.endive).
"""

from __future__ import annotations

import orjson
import pytest

from apisync.apis.stripe.webhook import version_mismatch_hint
from apisync.events import ObservationError
from apisync.webhooks.dispatch import delivery_id, parse_webhook, webhook_key

CREATED = "2026-11-26T14:53:32.250Z"
CREATED_MS = 1_795_704_812_250


def thin(kind="v1.customer.updated", related=None, created=CREATED, **extra) -> bytes:
    related = related if related is not None else {"id": "cus_9", "type": "customer", "url": "/v1/customers/cus_9"}
    return orjson.dumps({"id": "evt_65Rabc", "object": "v2.core.event", "type": kind, "created": created,
                         "livemode": False, "context": None, "related_object": related, **extra})


def test_a_thin_event_is_a_thin_observation_of_its_related_object_at_created():
    obs = parse_webhook("stripe", thin(), {}, "now")
    assert (obs.key, obs.version, obs.thin, obs.deleted, obs.data, obs.source) == (
        "stripe.customer.cus_9", CREATED_MS, True, False, None, "webhook")


@pytest.mark.parametrize("kind, related, key", [
    ("v1.invoice.paid", {"id": "in_1", "type": "invoice", "url": "/v1/invoices/in_1"}, "stripe.invoice.in_1"),
    ("v1.customer.subscription.updated", {"id": "sub_1", "type": "subscription", "url": "/v1/subscriptions/sub_1"},
     "stripe.subscription.sub_1"),
    ("v1.charge.captured", {"id": "ch_1", "type": "charge", "url": "/v1/charges/ch_1"}, "stripe.charge.ch_1"),
])
def test_each_collection_is_named_by_related_object_type(kind, related, key):
    assert parse_webhook("stripe", thin(kind, related), {}).key == key


def test_a_deleting_thin_event_is_a_delete():
    obs = parse_webhook("stripe", thin("v1.customer.deleted"), {})
    assert (obs.deleted, obs.thin, obs.data, obs.reason) == (True, False, None, "Stripe v1.customer.deleted event")


def test_an_ended_subscription_stays_an_update():
    related = {"id": "sub_1", "type": "subscription", "url": "/v1/subscriptions/sub_1"}
    obs = parse_webhook("stripe", thin("v1.customer.subscription.deleted", related), {})
    assert (obs.deleted, obs.thin) == (False, True)


def test_the_kafka_key_and_delivery_id():
    assert webhook_key("stripe", thin(), {}) == "stripe.customer.cus_9"
    assert delivery_id("stripe", thin(), {}) == "evt_65Rabc"


@pytest.mark.parametrize("body, message", [
    (thin(created=1_795_704_812), "ISO 8601 created"),
    (thin(created="yesterday"), "not an ISO 8601 time"),
    (thin(related={}), "no related_object"),
    (thin(related={"id": "mtr_1", "type": "billing.meter", "url": "/v1/billing/meters/mtr_1"}), "no known object"),
    (orjson.dumps({"object": "v2.core.event", "created": CREATED}), "lacks type"),
])
def test_unusable_thin_events_are_refused_with_a_reason(body, message):
    with pytest.raises(ObservationError, match=message):
        parse_webhook("stripe", body, {})


def snapshot(version: str | None, data: object) -> bytes:
    return orjson.dumps({"id": "evt_1", "object": "event", "type": "customer.updated", "created": 1_700_000_000,
                         "api_version": version, "data": data})


@pytest.mark.parametrize(("body", "options", "says"), [
    (snapshot("2023-10-16", {"object": {"id": "cus_1", "object": "customer"}}), {"api_version": "2024-06-20"}, True),
    (snapshot("2024-06-20", {"object": {"id": "cus_1", "object": "customer"}}), {"api_version": "2024-06-20"}, False),
    (snapshot("2023-10-16", {"object": {"id": "cus_1", "object": "customer"}}), {}, False),  # nothing pinned
    (snapshot(None, {"object": {"id": "cus_1", "object": "customer"}}), {"api_version": "2024-06-20"}, False),
    (thin(api_version="2023-10-16"), {"api_version": "2024-06-20"}, False),  # thin anyway: no setting spares it
    (snapshot("2023-10-16", "not an object"), {"api_version": "2024-06-20"}, False),
    (b"not json", {"api_version": "2024-06-20"}, False),
])
def test_an_event_in_another_version_than_the_pinned_one_says_how_to_spare_its_refetch(body, options, says):
    hint = version_mismatch_hint(body, options)
    assert (hint is not None) is says
    if says:
        assert "2023-10-16" in hint and "2024-06-20" in hint and "api_version" in hint
