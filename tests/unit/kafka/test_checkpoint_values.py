"""Checkpoint keys, values and the last-value-per-key fold, without a broker."""

from datetime import datetime, timedelta, timezone

import orjson
import pytest

from apisync.checkpoints import CheckpointError, PageWriter, checkpoint_key, checkpoint_value, fold, transactional_id
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
        ("a", orjson.dumps({"cursor": 1})),
        ("b", orjson.dumps({"cursor": 1})),
        ("a", orjson.dumps({"cursor": 2})),
        ("b", None),
        ("c", orjson.dumps({"cursor": 1})),
        ("c", None),
        ("c", orjson.dumps({"cursor": 3})),
    ]
    assert fold(records) == {"a": {"cursor": 2}, "c": {"cursor": 3}}


def test_fold_rejects_garbage_naming_the_key():
    with pytest.raises(CheckpointError, match="'stripe.backfill.customer' is not valid JSON"):
        fold([("stripe.backfill.customer", b"{nope")])


def test_page_writer_requires_a_transactional_producer():
    plain = Producer({"bootstrap.servers": "127.0.0.1:1"}, client_factory=lambda conf: object())
    with pytest.raises(ValueError, match="transactional producer"):
        PageWriter(plain)
