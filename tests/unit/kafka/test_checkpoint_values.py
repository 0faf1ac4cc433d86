"""Checkpoint keys, values and the last-value-per-key fold, without a broker."""

from datetime import datetime, timedelta, timezone

import orjson
import pytest

from apisync.checkpoints import (
    MalformedCheckpoint,
    PageWriter,
    checkpoint_key,
    checkpoint_value,
    fold,
    transactional_id,
)
from apisync.errors import FatalError
from apisync.kafka.producer import Producer


def test_key_and_transactional_id_are_stable():
    key = checkpoint_key("stripe", "backfill", "customer")
    assert key == "stripe.backfill.customer"
    assert transactional_id(key) == "apisync.stripe.backfill.customer"


@pytest.mark.parametrize("parts", [("", "backfill", "customer"), ("stripe", "back.fill", "customer")])
def test_key_parts_must_be_plain_words(parts):
    with pytest.raises(ValueError, match="dot-free"):
        checkpoint_key(*parts)


def test_value_shape_and_utc_timestamp():
    def clock():
        return datetime(2026, 11, 26, 16, 53, 32, 123456, tzinfo=timezone(timedelta(hours=2)))

    assert checkpoint_value({"starting_after": "cus_9"}, pages=4, clock=clock) == {
        "cursor": {"starting_after": "cus_9"}, "updated_at": "2026-11-26T14:53:32.123Z", "pages": 4, "done": False}


def test_fold_keeps_last_value_per_key_and_tombstones_reset():
    records = [
        ("a", orjson.dumps({"cursor": {"n": 1}})),
        ("b", orjson.dumps({"cursor": {"n": 1}})),
        ("a", orjson.dumps({"cursor": {"n": 2}})),
        ("b", None),
        ("c", orjson.dumps({"cursor": {"n": 1}})),
        ("c", None),
        ("c", orjson.dumps({"cursor": {"n": 3}})),
    ]
    assert fold(records) == {"a": {"cursor": {"n": 2}}, "c": {"cursor": {"n": 3}}}


@pytest.mark.parametrize(("value", "problem"), [
    (b"{nope", "is not valid JSON"),
    (b"[1, 2]", "has no cursor object"),
    (b'{"pages": 3}', "has no cursor object"),
    (b'{"cursor": "abc"}', "has no cursor object"),
])
def test_fold_rejects_a_malformed_checkpoint_as_fatal_naming_the_key_and_the_remedy(value, problem):
    with pytest.raises(MalformedCheckpoint) as raised:
        fold([("stripe.backfill.customer", value)])
    assert str(raised.value).startswith(f"checkpoint 'stripe.backfill.customer' {problem}; ")
    assert "python -m apisync cursor reset stripe.backfill.customer" in str(raised.value)
    assert isinstance(raised.value, FatalError)  # rereading yields the same bytes: no retry can help


def test_a_malformed_checkpoint_that_a_tombstone_removed_is_never_parsed():
    assert fold([("a", b"{nope"), ("a", None), ("a", orjson.dumps({"cursor": {}}))]) == {"a": {"cursor": {}}}


def test_page_writer_requires_a_transactional_producer():
    plain = Producer({"bootstrap.servers": "127.0.0.1:1"}, client_factory=lambda conf: object())
    with pytest.raises(ValueError, match="transactional producer"):
        PageWriter(plain)
