"""The simulated HubSpot CRM and HubSpotSource's requests against HubSpot's official Python client.

hubspot-api-client's `hubspot.crm.objects` is generated (openapi-generator) from HubSpot's CRM objects v3
OpenAPI document: each model lists its JSON fields (`attribute_map`) and their types (`openapi_types`),
and its setters refuse a missing required field or a value outside an enum under client-side validation;
each API method lists the parameters the operation takes (`all_params`). Every request the source sends
is matched to its operation (query parameters and JSON body checked), and every answer is checked
against the operation's response model: required fields present, types right, no undeclared field.
"""

from __future__ import annotations

import inspect
import re
from collections import Counter
from datetime import datetime
from typing import Any

import pytest
from hubspot.crm.objects import ApiClient as HubSpotApiClient
from hubspot.crm.objects import Configuration
from hubspot.crm.objects import models as hs_models
from hubspot.crm.objects.api import basic_api, batch_api, search_api
from vendor_recording import Exchange, RecordingSimulator, run_quietly

from apisync.apis.hubspot.source import HubSpotSource

PAGE = 20
OBJECT = r"/crm/v3/objects/(contacts|companies|deals)"
# (method, path pattern) -> (client method, request body model, response model per status)
OPERATIONS = {
    ("GET", OBJECT + r"$"): (basic_api.BasicApi.get_page, None,
                             {200: "CollectionResponseSimplePublicObjectWithAssociationsForwardPaging"}),
    ("GET", OBJECT + r"/\d+$"): (basic_api.BasicApi.get_by_id, None, {200: "SimplePublicObjectWithAssociations"}),
    ("POST", OBJECT + r"/search$"): (search_api.SearchApi.do_search, "PublicObjectSearchRequest",
                                     {200: "CollectionResponseWithTotalSimplePublicObjectForwardPaging"}),
    ("POST", OBJECT + r"/batch/read$"): (batch_api.BatchApi.read, "BatchReadInputSimplePublicObjectId",
                                         {200: "BatchResponseSimplePublicObject",
                                          207: "BatchResponseSimplePublicObjectWithErrors"}),
}
EXPECTED = {"get_page": 4, "get_by_id": 2, "do_search": 6, "read": 1}


def operation_for(exchange: Exchange):
    """The client method, body model and response models of one exchange (None: not an operation)."""
    return next((op for (method, pattern), op in OPERATIONS.items()
                 if method == exchange.method and re.match(pattern, exchange.path)), None)


def declared_params(method) -> list[str]:
    """The `all_params` of the generated `<method>_with_http_info` (path and query parameters, body)."""
    source = inspect.getsource(getattr(method.__globals__[method.__qualname__.split(".")[0]],
                                       f"{method.__name__}_with_http_info"))
    return re.findall(r'"(\w+)"', re.search(r"all_params = \[([^\]]*)\]", source).group(1))


# --- the strict model check ----------------------------------------------------------------------

def model_errors(klass_name: str, data: Any, path: str = "$") -> list[str]:
    """Undeclared fields and wrong types (recursively), then what the client's own validation refuses."""
    problems = _structure(klass_name, data, path)
    if not problems:
        try:
            strict = Configuration()
            strict.client_side_validation = True
            HubSpotApiClient(strict)._ApiClient__deserialize(data, klass_name)
        except (ValueError, TypeError) as error:
            problems.append(f"{path}: {error}")
    return problems


def _structure(kind: str, value: Any, path: str) -> list[str]:
    if value is None:
        return []
    if kind.startswith("list["):
        inner = kind[5:-1]
        return [p for i, v in enumerate(value) for p in _structure(inner, v, f"{path}[{i}]")] \
            if isinstance(value, list) else [f"{path}: not a list"]
    if kind.startswith("dict["):
        inner = kind.split(", ", 1)[1][:-1]
        return [p for k, v in value.items() for p in _structure(inner, v, f"{path}.{k}")] \
            if isinstance(value, dict) else [f"{path}: not an object"]
    primitive = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object}
    if kind in primitive:
        ok = isinstance(value, primitive[kind]) and not (kind == "int" and isinstance(value, bool))
        return [] if ok else [f"{path}: {value!r} is not {kind}"]
    if kind == "datetime":
        try:
            datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            return []
        except ValueError:
            return [f"{path}: {value!r} is not a date-time"]
    klass = getattr(hs_models, kind)
    if not isinstance(value, dict):
        return [f"{path}: not an object ({kind})"]
    fields = {json_name: klass.openapi_types[attr] for attr, json_name in klass.attribute_map.items()}
    return [p for k, v in value.items()
            for p in ([f"{path}.{k}: not in the vendor's schema ({kind})"] if k not in fields
                      else _structure(fields[k], v, f"{path}.{k}"))]


def request_problems(exchange: Exchange, op) -> list[str]:
    method, body_model, _ = op
    declared = declared_params(method)
    problems = [f"{name}: not a parameter of {method.__name__} ({declared})"
                for name, _ in exchange.params if name not in declared]
    if body_model:
        problems += model_errors(body_model, _with_string_sorts(exchange.body), "body")
    return problems


def _with_string_sorts(body: Any) -> Any:
    """The client types `sorts` as strings (`"-createdate"`), while the search guide documents objects
    (https://developers.hubspot.com/docs/api/crm/search#sorting-search-results: `{"propertyName",
    "direction"}`), which HubSpot accepts; an object sort is checked as its string form."""
    if not isinstance(body, dict) or not isinstance(body.get("sorts"), list):
        return body
    def as_text(sort: Any) -> Any:
        if isinstance(sort, dict) and set(sort) == {"propertyName", "direction"} \
                and sort["direction"] in ("ASCENDING", "DESCENDING"):
            return ("-" if sort["direction"] == "DESCENDING" else "") + str(sort["propertyName"])
        return sort
    return {**body, "sorts": [as_text(s) for s in body["sorts"]]}


def answer_problems(exchange: Exchange, op) -> list[str]:
    models = op[2]
    if exchange.status in models:
        return model_errors(models[exchange.status], exchange.answer)
    if exchange.status < 400:
        return [f"unexpected {exchange.status}"]
    # HubSpot's error bodies also carry `"status": "error"` (CRM API error handling guide,
    # https://developers.hubspot.com/docs/api/error-handling), which the client's Error model leaves out.
    answer = exchange.answer
    if isinstance(answer, dict) and answer.get("status") == "error":
        answer = {k: v for k, v in answer.items() if k != "status"}
    return model_errors("Error", answer)


# --- driving the source --------------------------------------------------------------------------

def drive(sim: RecordingSimulator) -> list[str]:
    notes: list[str] = []
    for collection in HubSpotSource.collections:
        source, client = HubSpotSource(page_size=PAGE), sim.client("hubspot")
        start = run_quietly(notes, source.incremental_start, client, collection)
        run_quietly(notes, source.backfill, client, collection, None, None)
        run_quietly(notes, source.backfill, client, collection, None, "2026-01-01")
        sim.sim.clock.advance(60)
        for kind in ("update", "update", "delete", "create"):
            sim.sim.models["hubspot"].mutate(kind, collection)
        sim.sim.clock.advance(60)
        if start:
            run_quietly(notes, source.incremental, client, collection, start)
        ids = run_quietly(notes, source.list_ids, client, collection) or []
        for object_id in ids[:2] + ["99999999999"]:
            run_quietly(notes, source.fetch, client, collection, object_id)
        run_quietly(notes, source.refetch_many, client, collection, ids[:3] + ["99999999999"])
    return notes


@pytest.fixture(scope="module")
def recorded():
    sim = RecordingSimulator(objects=50)
    notes = drive(sim)
    return sim.exchanges, notes


def test_the_source_reaches_every_operation(recorded):
    exchanges, notes = recorded
    assert not notes, notes
    unknown = [e.line() for e in exchanges if operation_for(e) is None]
    assert not unknown, f"requests to no CRM objects operation: {unknown[:5]}"
    counts = Counter(operation_for(e)[0].__name__ for e in exchanges)
    too_few = {name: counts[name] for name, least in EXPECTED.items() if counts[name] < least}
    assert not too_few, f"too few requests: {too_few}; all: {dict(counts)}"


def test_every_request_matches_the_client_api(recorded):
    exchanges, _ = recorded
    problems = [f"{e.line()}: {p}" for e in exchanges for p in request_problems(e, operation_for(e))]
    assert not problems, "\n".join(problems[:20])


def test_every_answer_validates_against_the_client_models(recorded):
    exchanges, _ = recorded
    assert {e.status for e in exchanges} >= {200, 207, 404}, "want answers, a partial batch and the error shape"
    problems = [f"{e.line()}: {p}" for e in exchanges for p in answer_problems(e, operation_for(e))[:3]]
    assert not problems, "\n".join(problems[:30])


@pytest.mark.parametrize(("drift", "expected"), [
    (lambda obj: obj.pop("createdAt"), "created_at"),
    (lambda obj: obj.update(archived="false"), "$.archived: 'false' is not bool"),
    (lambda obj: obj.update(objectType="deal"), "$.objectType: not in the vendor's schema"),
    (lambda obj: obj["properties"].update(amount=10), "$.properties.amount: 10 is not str"),
])
def test_the_check_catches_a_drifted_object(drift, expected):
    """Self-check: a dropped, mistyped or invented field fails the check."""
    sim = RecordingSimulator(objects=3)
    obj = sim.get("hubspot", "/crm/v3/objects/deals")["results"][0]
    assert model_errors("SimplePublicObjectWithAssociations", obj) == []
    drift(obj)
    problems = model_errors("SimplePublicObjectWithAssociations", obj)
    assert any(expected in p for p in problems), problems
