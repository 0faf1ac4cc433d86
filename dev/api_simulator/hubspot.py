"""HubSpot CRM v3 routes: list (archived or not), read one, read a batch, search; HubSpot's error shape.

Errors are `{"status": "error", "message", "correlationId", "category"}` ("Upcoming: Changes to error
responses", developer changelog, 2019: `category` such as VALIDATION_ERROR, `correlationId` per request).
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable
from urllib.parse import urlencode

import orjson
from starlette.routing import Route

from .hubspot_model import BY_PATH, DEFAULTS
from .hubspot_search import SearchError, parse
from .responses import get_sim, json_response
from .store import Entry
from .timefmt import hubspot_time

PREFIX = "/crm/v3/objects"
MAX_LIST_LIMIT, DEFAULT_LIST_LIMIT = 100, 10
MAX_BATCH_INPUTS = 100  # "Read a batch of objects": at most 100 inputs per request


def error(status: int, message: str, category: str, headers: dict[str, str] | None = None, **extra):
    """HubSpot's error body; rate limits add errorType and policyName instead of category."""
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4())}
    if category:
        body["category"] = category
    body.update(extra)
    return json_response(body, status, headers)


def not_found():
    """The answer for an unknown or archived object id."""
    return error(404, "resource not found", "OBJECT_NOT_FOUND")


def _collection(request):
    collection = BY_PATH.get(request.path_params["object_type"])
    if collection is None:
        return None, error(400, f"Unable to infer object type from: {request.path_params['object_type'][:64]}",
                           "VALIDATION_ERROR")
    return collection, None


def _properties(raw: str | None, collection: str) -> tuple[str, ...]:
    names = tuple(p.strip() for p in (raw or "").split(",") if p.strip())
    return names or DEFAULTS[collection]


def render(entry: Entry, props: Iterable[str]) -> bytes:
    """An object with only the asked-for properties (unknown names are left out, as HubSpot does)."""
    names = tuple(props)

    def view(obj: dict) -> dict:
        out = {"id": obj["id"], "properties": {n: obj["properties"][n] for n in names if n in obj["properties"]},
               "createdAt": obj["createdAt"], "updatedAt": obj["updatedAt"], "archived": obj["archived"]}
        if obj["archived"]:
            out["archivedAt"] = obj["archivedAt"]
        return out
    return entry.view(",".join(names), view)


def _flag(request, name: str) -> bool | None:
    value = request.query_params.get(name, "false").lower()
    return {"true": True, "false": False}.get(value)


async def list_objects(request):
    """GET /crm/v3/objects/{type}?limit=&after=&properties=&archived= — by id, `after` = the next id."""
    collection, problem = _collection(request)
    if problem:
        return problem
    params = request.query_params
    limit, after, archived = params.get("limit", str(DEFAULT_LIST_LIMIT)), params.get("after", "0"), _flag(request,
                                                                                                           "archived")
    if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIST_LIMIT or not after.isdigit() or archived is None:
        return error(400, f"limit must be 1..{MAX_LIST_LIMIT}, after a cursor from paging.next.after and "
                          "archived true or false", "VALIDATION_ERROR")
    model = get_sim(request).models["hubspot"]
    store = (model.archived if archived else model.live)[collection]
    keys = store.indexes["id"].keys
    start = store.indexes["id"].position((int(after),))
    page = [store.entries[k[-1]] for k in keys[start:start + int(limit)]]
    props = _properties(params.get("properties"), collection)
    paging = b""
    if start + len(page) < len(keys):
        next_after = str(int(page[-1].data["id"]) + 1)
        if after != "0" and get_sim(request).take_fault("hubspot", request.url.path, "repeat_cursor"):
            next_after = after  # fault: this page points at itself again
        query = {k: v for k, v in params.items() if k != "after"} | {"after": next_after}
        link = f"{request.base_url}{request.url.path.lstrip('/')}?{urlencode(query)}"
        paging = b',"paging":' + orjson.dumps({"next": {"after": next_after, "link": link}})
    return json_response(b'{"results":[' + b",".join(render(e, props) for e in page) + b"]" + paging + b"}")


async def read_object(request):
    """GET /crm/v3/objects/{type}/{id} — 404 once archived (unless archived=true)."""
    collection, problem = _collection(request)
    if problem:
        return problem
    sim = get_sim(request)
    model, oid = sim.models["hubspot"], request.path_params["oid"]
    if oid in model.live[collection].entries and \
            sim.take_fault("hubspot", request.url.path, "delete_between_list_and_fetch"):
        sim.delete_now("hubspot", collection, oid)
    store = (model.archived if _flag(request, "archived") else model.live)[collection]
    entry = store.entries.get(oid)
    if entry is None:
        return not_found()
    return json_response(render(entry, _properties(request.query_params.get("properties"), collection)))


async def read_batch(request):
    """POST /crm/v3/objects/{type}/batch/read — `{"inputs": [{"id"}], "properties"}` → the live objects found.

    Modelled on the CRM objects API "Read a batch of objects by internal ID" (https://developers.hubspot.com/
    docs/api-reference/latest/crm/objects/objects/batch/get-objects): `{"status": "COMPLETE", "results",
    "startedAt", "completedAt"}`; ids that are missing or archived are left out of `results` and named in
    `errors` (category OBJECT_NOT_FOUND, `context.ids`) with `numErrors` and status 207 (error handling guide,
    "207 Multi-Status"); more than 100 inputs is a 400 VALIDATION_ERROR."""
    collection, problem = _collection(request)
    if problem:
        return problem
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        return error(400, "Invalid input JSON on line 1", "VALIDATION_ERROR")
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(inputs, list) or not all(isinstance(i, dict) and isinstance(i.get("id"), str) for i in inputs):
        return error(400, "inputs must be a list of {\"id\": string}", "VALIDATION_ERROR")
    if len(inputs) > MAX_BATCH_INPUTS:
        return error(400, f"Batch input size {len(inputs)} exceeds limit of {MAX_BATCH_INPUTS}", "VALIDATION_ERROR")
    store = get_sim(request).models["hubspot"].live[collection]
    props = tuple(body.get("properties") or ()) or DEFAULTS[collection]
    ids = list(dict.fromkeys(i["id"] for i in inputs))
    found = [store.entries[oid] for oid in ids if oid in store.entries]
    missing = [oid for oid in ids if oid not in store.entries]
    now = hubspot_time(int(get_sim(request).clock.now() * 1000))
    head = b'{"status":"COMPLETE","results":[' + b",".join(render(e, props) for e in found) + b"]"
    if not missing:
        return json_response(head + b',"startedAt":"' + now.encode() + b'","completedAt":"' + now.encode() + b'"}')
    errors = [{"status": "error", "category": "OBJECT_NOT_FOUND",
               "message": f"Could not get some {collection.upper()} objects, they may be deleted or not exist. "
                          "Check that ids are valid.", "context": {"ids": missing},
               # The CRM objects v3 schema's StandardError requires `links` and `errors` (hubspot-api-client).
               "links": {}, "errors": []}]
    tail = orjson.dumps({"numErrors": len(errors), "errors": errors, "startedAt": now, "completedAt": now})
    return json_response(head + b"," + tail[1:], 207)


async def search_objects(request):
    """POST /crm/v3/objects/{type}/search — see hubspot_search for the limits and the lag."""
    collection, problem = _collection(request)
    if problem:
        return problem
    try:
        query = parse(orjson.loads(await request.body() or b"{}"))
    except orjson.JSONDecodeError:
        return error(400, "Invalid input JSON on line 1", "VALIDATION_ERROR")
    except SearchError as exc:
        return error(400, str(exc), "VALIDATION_ERROR")
    sim = get_sim(request)
    total, page = sim.models["hubspot"].search.run(collection, query)
    props = query.properties or DEFAULTS[collection]
    paging = b""
    if query.after + len(page) < total:
        # keeps pointing past 10,000: the next request gets the documented 400
        next_after = query.after + len(page)
        if query.after and sim.take_fault("hubspot", request.url.path, "repeat_cursor"):
            next_after = query.after
        paging = b',"paging":' + orjson.dumps({"next": {"after": str(next_after)}})
    return json_response(b'{"total":' + str(total).encode() + b',"results":['
                         + b",".join(render(e, props) for e in page) + b"]" + paging + b"}")


async def not_found_route(request):
    """Anything else under /crm."""
    return error(404, "resource not found", "OBJECT_NOT_FOUND")


routes = [
    Route(PREFIX + "/{object_type}/search", search_objects, methods=["POST"]),
    Route(PREFIX + "/{object_type}/batch/read", read_batch, methods=["POST"]),
    Route(PREFIX + "/{object_type}", list_objects),
    Route(PREFIX + "/{object_type}/{oid}", read_object),
    Route("/crm/{rest:path}", not_found_route, methods=["GET", "HEAD", "POST"]),
]
