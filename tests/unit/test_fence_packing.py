"""The ledger's packed data: canonical, compact, and states packed by an older apisync still decode."""

import random

import orjson
import pytest

from apisync.fence import _verdict, pack, pack_b85, pack_deflate, unpack

CUSTOMER = {"id": "cus_Q1w2E3r4T5y6U7", "object": "customer", "address": None, "balance": 0, "created": 1795704812,
            "currency": "usd", "default_source": None, "delinquent": False, "description": "ledger retry webhook",
            "email": "grace.hopper@example.com", "invoice_prefix": "A1B2C3D4", "livemode": False,
            "metadata": {"plan": "gold"}, "name": "Grace Hopper", "phone": None, "preferred_locales": ["en"],
            "shipping": None, "tax_exempt": "none", "test_clock": None}


def test_pack_is_canonical_whatever_the_key_order():
    shuffled = dict(random.Random(3).sample(list(CUSTOMER.items()), len(CUSTOMER)))
    assert pack(shuffled) == pack(CUSTOMER)
    assert pack({**CUSTOMER, "balance": 1}) != pack(CUSTOMER)


def test_packed_text_is_marked_needs_no_json_escaping_and_is_small():
    text = pack(CUSTOMER)
    assert text.startswith("~")
    assert orjson.dumps(text) == b'"' + text.encode() + b'"'  # nothing escaped
    assert "/" not in text  # Redis' cjson escapes a slash
    assert len(text) < 0.85 * len(orjson.dumps(CUSTOMER))


def test_packed_text_leads_with_the_content_hash_the_events_use():
    from apisync.events import Observation

    obs = Observation("stripe", "customer", CUSTOMER["id"], 1, "poll", "", CUSTOMER)
    assert pack(CUSTOMER)[1:17] == obs.content_hash()[:16]


@pytest.mark.parametrize("data", [CUSTOMER, {"id": "sub_1", "status": "active"}, {}, {"x": "é" * 300}])
def test_every_encoding_round_trips(data):
    assert unpack(pack(data)) == data
    assert unpack(pack_deflate(data)) == data  # a state written before the "~" encoding
    assert unpack(pack_b85(data)) == data  # and before the "." one
    assert pack_deflate(data).startswith(".") and not pack_b85(data).startswith((".", "~"))


def test_an_empty_state_is_a_delete():
    assert unpack("") is None


def test_verdict_unpacks_the_previous_state_only_when_asked():
    reply = ["accepted", pack(CUSTOMER), 0, "1795704812000"]
    verdict = _verdict(reply)
    assert verdict.accepted and verdict.previous == CUSTOMER and verdict.previous_version == 1795704812000
    assert _verdict(["accepted"]).previous is None
    deleted = _verdict(["accepted", "", 1, "5"])
    assert deleted.previous is None and deleted.previous_deleted and deleted.previous_version == 5
