"""The ledger's packed data: canonical, compact, and compressed with each API's own dictionary."""

import ast
import random
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest

import apisync.apis  # noqa: F401 - registers the APIs whose specs declare the dictionaries
from apisync.events import Observation
from apisync.fence import VersionFence, _verdict
from apisync.ledger_states import StateCodec, codec_for, preset_dictionary
from apisync.registry import ApiSpec, all_specs, register, spec_for, unregister

CUSTOMER = {"id": "cus_Q1w2E3r4T5y6U7", "object": "customer", "address": None, "balance": 0, "created": 1795704812,
            "currency": "usd", "default_source": None, "delinquent": False, "description": "ledger retry webhook",
            "email": "grace.hopper@example.com", "invoice_prefix": "A1B2C3D4", "livemode": False,
            "metadata": {"plan": "gold"}, "name": "Grace Hopper", "phone": None, "preferred_locales": ["en"],
            "shipping": None, "tax_exempt": "none", "test_clock": None}
# one object of each API, as its source observes it (the simulator's shapes)
OBJECTS = {
    "stripe": ("stripe.customer.cus_Q1w2E3r4T5y6U7", CUSTOMER),
    "github": ("github.issue.1001", {"id": 1001, "node_id": "I_kwDOA1", "number": 7, "title": "Retry the cursor",
                                     "state": "open", "state_reason": None, "locked": False, "comments": 2,
                                     "user": {"login": "grace", "id": 3, "type": "User"}, "labels": [],
                                     "created_at": "2026-11-27T10:13:32Z", "updated_at": "2026-11-27T11:00:00Z"}),
    "salesforce": ("salesforce.account.001A0000001", {
        "attributes": {"type": "Account", "url": "/services/data/v62.0/sobjects/Account/001A0000001"},
        "Id": "001A0000001", "Name": "Hopper Ltd", "Industry": "Retail", "IsDeleted": False,
        "LastModifiedDate": "2026-11-27T10:13:32.000+0000", "SystemModstamp": "2026-11-27T10:13:32.000+0000"}),
    "hubspot": ("hubspot.contact.10000000001", {
        "id": "10000000001", "archived": False, "createdAt": "2026-11-27T10:13:32.000Z",
        "updatedAt": "2026-11-27T11:00:00.000Z",
        "properties": {"createdate": "2026-11-27T10:13:32.000Z", "email": "grace.hopper@example.com",
                       "firstname": "Grace", "lastname": "Hopper", "hs_object_id": "10000000001",
                       "lastmodifieddate": "2026-11-27T11:00:00.000Z", "lifecyclestage": "lead", "phone": None}}),
}
STRIPE = codec_for("stripe")


def fence() -> VersionFence:
    return VersionFence(SimpleNamespace(register_script=lambda _source: None))


def test_pack_is_canonical_whatever_the_key_order():
    shuffled = dict(random.Random(3).sample(list(CUSTOMER.items()), len(CUSTOMER)))
    assert STRIPE.pack(shuffled) == STRIPE.pack(CUSTOMER)
    assert STRIPE.pack({**CUSTOMER, "balance": 1}) != STRIPE.pack(CUSTOMER)


def test_packed_text_is_marked_needs_no_json_escaping_and_is_small():
    text = STRIPE.pack(CUSTOMER)
    assert text.startswith("~")
    assert orjson.dumps(text) == b'"' + text.encode() + b'"'  # nothing escaped
    assert "/" not in text  # Redis' cjson escapes a slash
    assert len(text) < 0.85 * len(orjson.dumps(CUSTOMER))


def test_packed_text_leads_with_the_content_hash_the_events_use():
    obs = Observation("stripe", "customer", CUSTOMER["id"], 1, "poll", "", CUSTOMER)
    assert STRIPE.pack(CUSTOMER)[1:17] == obs.content_hash()[:16]
    assert STRIPE.pack_observation(obs) == STRIPE.pack(CUSTOMER)


@pytest.mark.parametrize("data", [CUSTOMER, {"id": "sub_1", "status": "active"}, {}, {"x": "é" * 300}])
def test_a_state_round_trips(data):
    assert STRIPE.unpack(STRIPE.pack(data)) == data


@pytest.mark.parametrize("api", sorted(OBJECTS))
def test_a_state_packed_with_its_apis_dictionary_unpacks_for_that_api(api):
    record_key, data = OBJECTS[api]
    text = codec_for(api).pack(data)
    assert fence().unpack(record_key, text) == data  # the api is read from the record key
    assert codec_for(api).dictionary == preset_dictionary(spec_for(api).ledger_fields)
    assert len(text) < len(StateCodec(()).pack(data)), "the api's dictionary makes its states smaller"


def test_an_empty_state_is_a_delete():
    assert STRIPE.unpack("") is None
    assert STRIPE.pack_observation(Observation("stripe", "customer", "cus_1", 1, "poll", "", None, True)) == ""


def test_verdict_unpacks_the_previous_state_only_when_asked():
    reply = ["accepted", STRIPE.pack(CUSTOMER), 0, "1795704812000"]
    verdict = _verdict(reply, STRIPE)
    assert verdict.accepted and verdict.previous == CUSTOMER and verdict.previous_version == 1795704812000
    assert _verdict(["accepted"], STRIPE).previous is None
    deleted = _verdict(["accepted", "", 1, "5"], STRIPE)
    assert deleted.previous is None and deleted.previous_deleted and deleted.previous_version == 5


WIDGET_FIELDS = ("widget_colour", "widget_weight_grams", "warehouse_location", "last_inspected_at", "inspector")


@pytest.fixture()
def widgets():
    """A test API whose spec declares its own ledger fields."""
    spec = register(ApiSpec("acme", ("widget",), lambda settings: None, 1.0, ledger_fields=WIDGET_FIELDS))
    yield spec
    unregister("acme")


def test_an_apis_dictionary_is_built_from_its_specs_ledger_fields(widgets):
    widget = {"id": "w1", "widget_colour": "teal", "widget_weight_grams": 120, "warehouse_location": "B7",
              "last_inspected_at": "2026-11-27", "inspector": "grace"}
    codec = codec_for("acme")
    assert codec.dictionary == preset_dictionary(WIDGET_FIELDS)
    packed = codec.pack(widget)
    assert len(packed) < len(StateCodec(()).pack(widget)), "its own field names compress its states"
    assert fence().unpack("acme.widget.w1", packed) == widget
    register(ApiSpec("acme", ("widget",), lambda settings: None, 1.0, ledger_fields=("inspector",)))
    assert codec_for("acme").dictionary == b'"inspector":', "an API registered anew gets its new dictionary"


def test_an_unregistered_api_has_no_codec():
    with pytest.raises(KeyError, match="unknown api 'nope'"):
        codec_for("nope")


GENERIC_MODULES = ("fence.py", "ledger_states.py", "ledger_store.py")


def _string_lists(source: str, at_least: int = 10) -> list[int]:
    """Line numbers of tuple/list literals of `at_least` strings (a field-name list, say)."""
    return [node.lineno for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Tuple | ast.List) and len(node.elts) >= at_least
            and all(isinstance(elt, ast.Constant) and isinstance(elt.value, str) for elt in node.elts)]


def test_every_api_declares_the_field_names_of_its_ledger_dictionary():
    assert {api: bool(spec_for(api).ledger_fields) for api in OBJECTS} == dict.fromkeys(OBJECTS, True)


@pytest.mark.parametrize("module", GENERIC_MODULES)
def test_no_generic_ledger_module_holds_a_vendors_field_names(module):
    source = (Path(apisync.apis.__file__).parents[1] / module).read_text()
    assert _string_lists(source) == [], "field names belong to each API's spec (`ledger_fields`)"
    distinctive = {name for spec in all_specs() for name in spec.ledger_fields
                   if "_" in name or name != name.lower()}  # "amount_due", "createdAt", "StageName"
    assert [name for name in sorted(distinctive) if f'"{name}"' in source] == []


def test_the_string_list_finder_finds_one():
    assert _string_lists("FIELDS = (" + ", ".join(f'"f{i}"' for i in range(12)) + ")") == [1]
    assert _string_lists('PAIR = ("a", "b")') == []
