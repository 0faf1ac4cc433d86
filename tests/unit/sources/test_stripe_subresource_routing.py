"""Stripe sub-resource events (a dispute, refund, discount, tax ID, card as `data.object`) re-read the parent they
change, which gets no event of its own: on the webhook path (a thin observation of the parent) and in the polled
event window (the parent fetched), checked against the simulator's truth. Payload shapes from
https://docs.stripe.com/api/events/types and the objects' API references."""

from __future__ import annotations

import orjson
import pytest
from stripe_sim_harness import Runs, StripeSim

from apisync.apis.stripe.events import EventWindow
from apisync.apis.stripe.source import COLLECTIONS, SETTLE_S, StripeSource
from apisync.events import NotSynced, ObservationError
from apisync.webhooks.dispatch import parse_webhook, webhook_key

CREATED = 1_790_000_123


def event(kind: str, obj: dict) -> bytes:
    return orjson.dumps({"id": "evt_1", "object": "event", "api_version": "2024-06-20", "created": CREATED,
                         "type": kind, "data": {"object": obj}, "livemode": False})


DISCOUNT = {"id": "di_1", "object": "discount", "customer": "cus_1", "subscription": None, "invoice": None,
            "coupon": {"id": "10OFF", "object": "coupon"}}
ROUTES = [
    pytest.param("charge.dispute.created", {"id": "dp_1", "object": "dispute", "charge": "ch_1"},
                 "stripe.charge.ch_1", id="dispute-to-charge"),
    pytest.param("charge.dispute.closed", {"id": "dp_1", "object": "dispute", "charge": {"id": "ch_2"}},
                 "stripe.charge.ch_2", id="dispute-with-expanded-charge"),
    pytest.param("charge.refund.updated", {"id": "re_1", "object": "refund", "charge": "ch_3", "status": "failed"},
                 "stripe.charge.ch_3", id="refund-to-charge"),
    pytest.param("customer.discount.created", DISCOUNT, "stripe.customer.cus_1", id="discount-to-customer"),
    pytest.param("customer.discount.deleted", {**DISCOUNT, "subscription": "sub_1"}, "stripe.subscription.sub_1",
                 id="subscription-discount-to-subscription"),
    pytest.param("customer.tax_id.created", {"id": "txi_1", "object": "tax_id", "customer": "cus_4"},
                 "stripe.customer.cus_4", id="tax-id-to-customer"),
    pytest.param("customer.source.updated", {"id": "card_1", "object": "card", "customer": "cus_5"},
                 "stripe.customer.cus_5", id="card-to-customer"),
]


@pytest.mark.parametrize(("kind", "obj", "key"), ROUTES)
def test_a_sub_resource_webhook_is_a_thin_observation_of_its_parent(kind, obj, key):
    obs = parse_webhook("stripe", event(kind, obj), {}, "now")
    assert (obs.key, obs.version, obs.thin, obs.deleted, obs.data) == (key, CREATED * 1000, True, False, None)
    assert webhook_key("stripe", event(kind, obj), {}) == key  # its parent's partition, in order with it


ORPHANS = [
    pytest.param("charge.refund.updated", {"id": "re_1", "object": "refund", "charge": None}, id="refund-of-no-charge"),
    pytest.param("customer.tax_id.created", {"id": "txi_1", "object": "tax_id", "customer": None},
                 id="account-tax-id"),
    pytest.param("customer.discount.created", {**DISCOUNT, "customer": None}, id="checkout-discount"),
]


@pytest.mark.parametrize(("kind", "obj"), ORPHANS)
def test_a_sub_resource_of_nothing_synced_is_not_synced_rather_than_malformed(kind, obj):
    with pytest.raises(NotSynced):
        parse_webhook("stripe", event(kind, obj), {}, "now")


def test_a_thin_sub_resource_reference_is_not_synced_and_an_unknown_object_stays_malformed():
    thin = {"id": "evt_65R", "object": "v2.core.event", "type": "v1.charge.dispute.created",
            "created": "2026-11-26T14:53:32.250Z", "related_object": {"id": "dp_1", "type": "dispute",
                                                                       "url": "/v1/disputes/dp_1"}}
    with pytest.raises(NotSynced):
        parse_webhook("stripe", orjson.dumps(thin), {}, "now")
    with pytest.raises(ObservationError) as raised:
        parse_webhook("stripe", event("product.updated", {"id": "prod_1", "object": "product"}), {}, "now")
    assert not isinstance(raised.value, NotSynced)


def test_each_collection_reads_the_sub_resource_events_of_its_children_within_stripes_types_cap():
    assert {"charge.dispute.created", "charge.refund.updated"} <= set(COLLECTIONS["charge"].event_types)
    assert {"customer.discount.deleted", "customer.tax_id.created", "customer.source.updated"} <= set(
        COLLECTIONS["customer"].event_types)
    assert all(len(spec.event_types) <= 20 for spec in COLLECTIONS.values())


@pytest.mark.parametrize("collection", ["customer", "charge"])
def test_the_polled_window_re_reads_parents_changed_by_sub_resources(collection):
    sim = StripeSim(objects=12)
    sim.model.subresource_share = 1.0  # every update that can go through a sub-resource does
    before = {oid: orjson.dumps(data) for oid, data in sim.live(collection).items()}
    start = sim.now_s()
    runs = Runs(EventWindow(start).to_cursor())
    for _ in range(15):
        sim.advance(1)
        sim.mutate(3, collection=collection)
    kinds = {e["type"] for e in sim.events_since(start, collection)}
    assert kinds & set(SUBRESOURCE_KINDS[collection]), kinds
    sim.advance(SETTLE_S + 1)
    assert runs.run(StripeSource(page_size=10), sim.client(), collection)

    changed = {oid: data for oid, data in sim.live(collection).items() if before.get(oid) != orjson.dumps(data)}
    newest = runs.newest()
    stale = [oid for oid, data in changed.items() if oid not in newest or newest[oid].data != data]
    assert changed and not stale, f"{len(stale)} of {len(changed)} changed {collection} records differ from the truth"


SUBRESOURCE_KINDS = {"customer": ("customer.discount.created", "customer.tax_id.created"),
                     "charge": ("charge.dispute.created", "charge.refund.updated")}
