"""Event derivation and declarative rules (pure functions, no services)."""

import hashlib

import orjson
import pytest

from apisync.events import (
    Observation,
    ObservationError,
    derive_events,
    diff,
    event_id,
    iso_to_ms,
    ms_to_iso,
    observation_from_change,
    record_value,
)
from apisync.registry import default_rules, rule_event_types
from apisync.rules import ThresholdRule, TransitionRule, rules_from_config


def obs(data, version=1_795_704_812_000, deleted=False, collection="subscription", ident="sub_1"):
    return Observation("stripe", collection, ident, version, "webhook", "", data, deleted)


def types(events):
    return [e["type"] for e in events]


def test_event_id_is_sha256_of_key_version_type_and_content():
    expected = hashlib.sha256(b"stripe.subscription.sub_1|5|created|abc").hexdigest()
    assert event_id("stripe.subscription.sub_1", 5, "created", "abc") == expected


def test_distinct_transitions_in_one_second_never_share_an_event_id():
    # active -> canceled and canceled -> active stamped in the same whole second
    active, canceled = {"id": "sub_1", "status": "active"}, {"id": "sub_1", "status": "canceled"}
    to_canceled = derive_events(obs(canceled, version=7), active)
    to_active = derive_events(obs(active, version=7), canceled)
    assert to_canceled[0]["event_id"] != to_active[0]["event_id"]
    again = derive_events(obs(canceled, version=7), active)
    assert [e["event_id"] for e in again] == [e["event_id"] for e in to_canceled]  # a retry re-emits the same ids


def test_created_then_updated_with_top_level_changes():
    created = derive_events(obs({"id": "sub_1", "status": "active"}), None)
    assert types(created) == ["created"]
    assert created[0]["key"] == "stripe.subscription.sub_1"
    assert created[0]["record"]["data"] == {"id": "sub_1", "status": "active"}
    assert created[0]["occurred_at"] == "2026-11-26T14:53:32.000Z"
    updated = derive_events(obs({"id": "sub_1", "status": "active", "qty": 2}, version=2),
                            {"id": "sub_1", "status": "active", "qty": 1, "old": True})
    assert types(updated) == ["updated"]
    assert updated[0]["changes"] == {"qty": [1, 2], "old": [True, None]}
    new = obs({"id": "sub_1", "status": "active", "qty": 2}, version=2)
    assert updated[0]["event_id"] == event_id("stripe.subscription.sub_1", 2, "updated", new.content_hash())


def test_nested_change_reports_the_whole_top_level_field():
    changes = diff({"plan": {"amount": 1, "currency": "usd"}}, {"plan": {"amount": 2, "currency": "usd"}})
    assert changes == {"plan": [{"amount": 1, "currency": "usd"}, {"amount": 2, "currency": "usd"}]}


def test_deleted_carries_last_known_object():
    events = derive_events(obs(None, deleted=True), {"id": "sub_1", "status": "canceled"})
    assert types(events) == ["deleted"]
    assert events[0]["record"]["data"] == {"id": "sub_1", "status": "canceled"}


def test_a_delete_says_why_from_the_change_message_to_the_event():
    doc = {"api": "github", "collection": "issue", "id": "apisync/demo#7", "version": 5, "source": "reconcile",
           "data": None, "deleted": True, "reason": "transferred to apisync/tools#31"}
    observation = observation_from_change(orjson.dumps(doc))
    [event] = derive_events(observation, {"number": 7})
    assert (event["type"], event["reason"]) == ("deleted", "transferred to apisync/tools#31")
    assert derive_events(obs(None, deleted=True), {"id": "sub_1"})[0]["reason"] is None  # not every source knows
    with pytest.raises(ObservationError, match="reason must be a string"):
        observation_from_change(orjson.dumps({**doc, "reason": 3}))


def test_status_transition_rule_with_filters():
    rules = default_rules("stripe")["subscription"]
    events = derive_events(obs({"status": "canceled"}, 2), {"status": "active"}, rules)
    assert types(events) == ["updated", "status_changed"]
    assert events[1]["changes"] == {"status": ["active", "canceled"]}
    only_cancel = TransitionRule("status", "canceled_from_active", ("active",), ("canceled",))
    assert only_cancel.fires({"status": "active"}, {"status": "canceled"})
    assert not only_cancel.fires({"status": "trialing"}, {"status": "canceled"})
    assert not only_cancel.fires({"status": "active"}, {"status": "past_due"})
    assert not only_cancel.fires(None, {"status": "canceled"})  # creation is not a transition


def test_threshold_fires_once_on_the_rising_edge():
    rules = default_rules("stripe")["invoice"]
    history = [500, 900, 1500, 2000, 1200, 800, 1000, 3000]
    previous, fired = None, []
    for version, amount in enumerate(history, start=1):
        data = {"id": "in_1", "amount_due": amount}
        events = derive_events(obs(data, version, collection="invoice", ident="in_1"), previous, rules)
        fired += [amount for e in events if e["type"] == "amount_due_crossed_1000"]
        previous = data
    assert fired == [1500, 1000]  # not at 2000 or 1200 (still above), again after dropping to 800


def test_threshold_on_creation_and_non_numbers():
    rule = ThresholdRule("amount_due", 1000, "big")
    assert rule.fires(None, {"amount_due": 5000})
    assert not rule.fires(None, {"amount_due": "5000"})
    assert not rule.fires({"amount_due": None}, {"amount_due": True})


def test_unchanged_content_emits_nothing_even_with_rules():
    data = {"status": "active", "amount_due": 5000}
    assert derive_events(obs(data, 3), dict(data), default_rules("stripe")["subscription"]) == []


def test_rules_from_config_rejects_bad_specs():
    assert rules_from_config({"x": [{"kind": "threshold", "field": "a", "threshold": "10", "event": "a10"}]}) == {
        "x": (ThresholdRule("a", 10.0, "a10"),)}
    with pytest.raises(ValueError, match="kind must be"):
        rules_from_config({"x": [{"kind": "edge", "field": "a", "event": "e"}]})
    with pytest.raises(ValueError, match="lacks 'event'"):
        rules_from_config({"x": [{"kind": "transition", "field": "a"}]})
    assert rule_event_types("stripe")["invoice"] == ("amount_due_crossed_1000",)


def test_time_conversions():
    assert iso_to_ms("2026-11-26T14:53:32.000+0000") == 1_795_704_812_000
    assert iso_to_ms("2026-11-26T14:53:32Z") == 1_795_704_812_000
    assert ms_to_iso(1_795_704_812_345) == "2026-11-26T14:53:32.345Z"
    with pytest.raises(ObservationError):
        iso_to_ms("yesterday")


def test_observation_from_change_contract():
    doc = {"key": "stripe.customer.cus_1", "api": "stripe", "collection": "customer", "id": "cus_1",
           "version": 5, "source": "poll", "synced_at": "x", "data": {"id": "cus_1"}}
    parsed = observation_from_change(orjson.dumps(doc))
    assert (parsed.key, parsed.version, parsed.data) == ("stripe.customer.cus_1", 5, {"id": "cus_1"})
    assert observation_from_change(orjson.dumps({**doc, "data": None, "deleted": True})).deleted


@pytest.mark.parametrize("value, reason", [
    (b"not json", "not JSON"),
    (b"[1]", "not a JSON object"),
    (orjson.dumps({"api": "stripe", "collection": "customer", "id": "c"}), "lacks version"),
    (orjson.dumps({"api": "stripe", "collection": "customer", "id": "c", "version": "5"}), "milliseconds"),
    (orjson.dumps({"api": "stripe", "collection": "customer", "id": "c", "version": 5}), "data must be"),
    (orjson.dumps({"api": "stripe", "collection": "customer", "id": "c", "version": 5, "data": {},
                   "source": "magic"}), "source must be"),
    (orjson.dumps({"api": "stripe", "collection": "customer", "id": "c", "version": 5, "data": {},
                   "key": "stripe.customer.d"}), "does not match"),
])
def test_observation_from_change_rejects(value, reason):
    with pytest.raises(ObservationError, match=reason):
        observation_from_change(value)


def test_content_hash_ignores_key_order():
    assert obs({"a": 1, "b": 2}).content_hash() == obs({"b": 2, "a": 1}).content_hash()
    assert obs({"a": 1}).content_hash() != obs({"a": 2}).content_hash()


@pytest.mark.parametrize(("old", "new", "fires"), [
    ({"properties": {"dealstage": "qualifiedtobuy"}}, {"properties": {"dealstage": "closedwon"}}, True),
    ({"properties": {"dealstage": "closedwon"}}, {"properties": {"dealstage": "closedwon", "amount": "5"}}, False),
    (None, {"properties": {"dealstage": "closedwon"}}, False),  # creation is not a transition
    ({"properties": {"dealstage": "closedwon"}}, {"properties": {}}, False),  # the path is missing
    ({"properties.dealstage": "a"}, {"properties.dealstage": "b"}, True),  # a dotted top-level name wins
])
def test_a_rule_field_may_be_a_dotted_path_into_nested_values(old, new, fires):
    assert TransitionRule("properties.dealstage", "dealstage_changed").fires(old, new) is fires


def test_a_threshold_on_a_nested_path_fires_on_the_rising_edge():
    rule = ThresholdRule("totals.due", 1000, "due_crossed")
    assert rule.fires({"totals": {"due": 10}}, {"totals": {"due": 1000}})
    assert not rule.fires({"totals": {"due": 1200}}, {"totals": {"due": 1500}})


def test_events_carry_the_same_bytes_when_the_record_comes_serialized():
    seen = obs({"id": "sub_1", "status": "canceled", "amount": 1200}, version=3)
    previous = {"id": "sub_1", "status": "active", "amount": 900}
    rules = default_rules("stripe")["subscription"]
    plain = derive_events(seen, previous, rules)
    fragment = orjson.Fragment(orjson.dumps(record_value(seen)))
    assert len(plain) > 1  # updated plus rule events, each with the record inside
    assert [orjson.dumps(e) for e in derive_events(seen, previous, rules, fragment)] == [orjson.dumps(e) for e in plain]
