"""Stripe REST routes: list (newest first, cursors, created filters), retrieve, events, API versions."""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson
from starlette.routing import Route

from .responses import ApiError, get_sim, json_response
from .store import Collection
from .stripe_events import EVENT_PAYLOADS
from .stripe_versions import differs, is_supported, renderer

DOCS = "https://docs.stripe.com/error-codes"
COLLECTIONS = {"customers": "customer", "subscriptions": "subscription", "invoices": "invoice",
               "charges": "charge"}
COMMON_PARAMS = {"limit", "starting_after", "ending_before", "created", "created[gt]", "created[gte]",
                 "created[lt]", "created[lte]", "expand[]"}
FILTERS = {"customers": {"email"}, "subscriptions": {"customer", "status"},
           "invoices": {"customer", "status", "subscription"}, "charges": {"customer"},
           "events": {"type", "types[]"}}
# Stripe lists only subscriptions that are not canceled unless status=all or status=canceled is
# given; `ended` means canceled or incomplete_expired (docs: List subscriptions, `status`).
LIVE_SUB_STATUSES = frozenset({"active", "past_due", "unpaid", "incomplete", "incomplete_expired", "trialing",
                               "paused"})
STATUS_ALIASES = {"ended": {"canceled", "incomplete_expired"}}
# List all events: `types` is "An array of up to 20 strings containing specific event names"
# (https://docs.stripe.com/api/events/list); more is refused (FriendlyCaptcha/friendly-stripe-sync#20).
MAX_TYPES = 20
_INDEXED_TYPES = re.compile(r"types\[\d+\]")


def error(status: int, message: str, code: str | None = None, param: str | None = None) -> ApiError:
    """Stripe's error JSON: {"error": {"type", "message", "code"?, "param"?, "doc_url"?}}."""
    body: dict[str, Any] = {"message": message, "type": "invalid_request_error"}
    if code:
        body.update(code=code, doc_url=f"{DOCS}#{code.replace('_', '-')}")
    if param:
        body["param"] = param
    return ApiError(json_response({"error": body}, status))


def api_error_response(status: int, message: str, kind: str = "api_error"):
    """Plain error answer (auth, rate limit, injected 5xx) without raising."""
    body = {"error": {"message": message, "type": kind}}
    if status == 429:
        body["error"].update(type="invalid_request_error", code="rate_limit")
    return json_response(body, status)


def _params(request, resource: str) -> dict[str, list[str]]:
    """Query params as lists; unknown names are refused the way Stripe does."""
    allowed = COMMON_PARAMS | FILTERS.get(resource, set())
    params: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        if resource == "events" and _INDEXED_TYPES.fullmatch(name):
            name = "types[]"  # Stripe reads types[0]=a like types[]=a (estuary/connectors sends the indexed form)
        if name not in allowed:
            raise error(400, f"Received unknown parameter: {name}", "parameter_unknown", name)
        params.setdefault(name, []).append(value)
    types = params.get("types[]", [])
    if len(types) > MAX_TYPES:
        raise error(400, f"Invalid array: types can contain at most {MAX_TYPES} elements, "
                         f"but {len(types)} were given.", param="types")
    return params


def api_version(request, model) -> str:
    """The version to render in: the Stripe-Version header, else the account's default.

    An unknown version is refused the way Stripe does ("Invalid Stripe API version: ...", 400,
    invalid_request_error, no code; stripity-stripe#613, stripe-java#682).
    """
    header = request.headers.get("stripe-version")
    if header is None:
        return model.settings()["stripe_api_version"]
    version = header.strip()
    if not is_supported(version):
        raise error(400, f"Invalid Stripe API version: {version[:64]}")
    return version


def _int_param(params: dict, name: str, low: int | None = None, high: int | None = None) -> int | None:
    if name not in params:
        return None
    raw = params[name][0]
    try:
        value = int(raw)
    except ValueError:
        raise error(400, f"Invalid integer: {raw[:40]}", "parameter_invalid_integer", name) from None
    if low is not None and value < low:
        raise error(400, f"This value must be greater than or equal to {low}.", "parameter_invalid_integer", name)
    if high is not None and value > high:
        raise error(400, f"This value must be less than or equal to {high}.", "parameter_invalid_integer", name)
    return value


def _created_bounds(params: dict, keys: list[tuple]) -> tuple[int, int]:
    """Index slice [lo, hi) for created / created[gt|gte|lt|lte] (whole unix seconds)."""
    from bisect import bisect_left
    lows = [v for v in (_int_param(params, "created[gte]"), _int_param(params, "created")) if v is not None]
    gt = _int_param(params, "created[gt]")
    if gt is not None:
        lows.append(gt + 1)
    highs = [v + 1 for v in (_int_param(params, "created[lte]"), _int_param(params, "created")) if v is not None]
    lt = _int_param(params, "created[lt]")
    if lt is not None:
        highs.append(lt)
    lo = bisect_left(keys, (max(lows),)) if lows else 0
    hi = bisect_left(keys, (min(highs),)) if highs else len(keys)
    return lo, hi


def _status_filter(params: dict, resource: str) -> set[str] | frozenset[str] | None:
    """Statuses a list keeps, or None for any."""
    if "status" not in params:
        return LIVE_SUB_STATUSES if resource == "subscriptions" else None
    wanted: set[str] = set()
    for status in params["status"]:
        if status == "all":
            return None
        wanted |= STATUS_ALIASES.get(status, {status})
    return wanted


def _predicate(params: dict, resource: str, hidden: frozenset[str]) -> Callable[[dict], bool] | None:
    checks = [(name, set(params[name])) for name in ("email", "customer", "subscription") if name in params]
    statuses = _status_filter(params, resource)
    if statuses is not None:
        checks.append(("status", statuses))
    types = set(params.get("type", [])) | set(params.get("types[]", []))
    if not checks and not types and not hidden:
        return None

    def keep(data: dict) -> bool:
        if hidden and data["id"] in hidden:
            return False
        if types and not any(_type_matches(data.get("type", ""), t) for t in types):
            return False
        return all(data.get(name) in wanted for name, wanted in checks)
    return keep


def _type_matches(event_type: str, pattern: str) -> bool:
    # Stripe accepts a trailing wildcard in `type`, e.g. customer.* (docs: List all events, `type`).
    return event_type.startswith(pattern[:-1]) if pattern.endswith("*") else event_type == pattern


def list_page(col: Collection, params: dict, resource: str, repeat: bool,
              hidden: frozenset[str] = frozenset()) -> tuple[list, bool]:
    """Entries for one page, newest first, and has_more (`hidden`: events not visible yet)."""
    limit = _int_param(params, "limit", 1, 100) or 10
    after, before = params.get("starting_after", [None])[0], params.get("ending_before", [None])[0]
    if after and before:
        raise error(400, "You may only specify one of these parameters: ending_before, starting_after.")
    keys = col.indexes["created"].keys
    lo, hi = _created_bounds(params, keys)
    keep = _predicate(params, resource, hidden)
    cursor = after or before
    pos = None
    if cursor:
        _check_cursor(col, cursor, "starting_after" if after else "ending_before", params, resource, hidden)
        pos = col.indexes["created"].position(col.key_of("created", cursor))
    if before or (after and repeat):
        # Walk towards newer items; a repeated page re-serves the page that ended at the cursor.
        start = pos if repeat else pos + 1
        return _walk(col, keys, max(start, lo), hi, +1, limit, keep, reverse=True, force_more=repeat)
    start = hi - 1 if pos is None else min(pos - 1, hi - 1)
    return _walk(col, keys, start, lo, -1, limit, keep)


def _check_cursor(col: Collection, cursor: str, param: str, params: dict, resource: str,
                  hidden: frozenset[str]) -> None:
    """A cursor must name an object this list can show now, else Stripe answers 400."""
    if resource == "events" and cursor in col.deleted:
        # Retention removed it. Stripe answers 400 with a message ending "is no longer available because
        # it's aged out of our retention policy" (estuary/connectors source-stripe-native matches that on a
        # 400 when its checkpointed events cursor ages out); the leading "Event <id>" is inferred.
        raise error(400, f"Event {cursor[:64]} is no longer available because it's aged out of our "
                         "retention policy.", param=param)
    entry = col.entries.get(cursor)
    # A deleted object is no cursor (stripe/stripe-php#1264: "No such product: 'prod_…'"), nor is a
    # subscription the status filter leaves out, e.g. one canceled mid-walk (stripe/stripe-node#2368).
    statuses = _status_filter(params, resource) if resource == "subscriptions" else None
    if (entry is None or cursor in hidden
            or (statuses is not None and entry.data.get("status") not in statuses)):
        raise error(400, f"No such {col.name}: '{cursor[:64]}'", "resource_missing", param)


def _walk(col, keys, start, stop, step, limit, keep, reverse=False, force_more=False) -> tuple[list, bool]:
    out = []
    pos = start
    while (pos < stop if step > 0 else pos >= stop) and len(out) <= limit:
        entry = col.entries.get(keys[pos][-1])
        if entry is not None and (keep is None or keep(entry.data)):
            out.append(entry)
        pos += step
    has_more = len(out) > limit or force_more
    out = out[:limit]
    return (out[::-1] if reverse else out), has_more


async def list_objects(request):
    """GET /v1/<collection> and /v1/events."""
    resource = request.path_params["resource"]
    sim = get_sim(request)
    model = sim.models["stripe"]
    version = api_version(request, model)
    hidden: frozenset[str] = frozenset()
    if resource == "events":
        model.prune_events()
        col, collection, hidden = model.events, None, model.feed.hidden()
    elif resource in COLLECTIONS:
        collection = COLLECTIONS[resource]
        col = model.data[collection]
    else:
        raise unknown_url(request)
    params = _params(request, resource)
    repeat = "starting_after" in params and sim.take_fault("stripe", request.url.path, "repeat_cursor")
    entries, has_more = list_page(col, params, resource, bool(repeat), hidden)
    url = f"/v1/{resource}".encode()
    body = (b'{"object":"list","data":[' + b",".join(_bodies(entries, collection, version))
            + b'],"has_more":' + (b"true" if has_more else b"false") + b',"url":"' + url + b'"}')
    return json_response(body)


def _bodies(entries: list, collection: str | None, version: str) -> list[bytes]:
    """Serialized objects in `version` (events: None, they keep the version they were created in)."""
    if collection is None or not differs(collection, version):
        return [e.body for e in entries]
    render = renderer(collection, version)
    return [e.view(version, render) for e in entries]


async def retrieve(request):
    """GET /v1/<collection>/<id>; deleted customers answer {"deleted": true} like Stripe."""
    resource, oid = request.path_params["resource"], request.path_params["oid"]
    sim = get_sim(request)
    model = sim.models["stripe"]
    version = api_version(request, model)
    if resource == "events":
        entry = model.events.entries.get(oid)
        if entry is None or oid in model.feed.hidden():
            raise error(404, f"No such event: '{oid[:64]}'", "resource_missing", "id")
        return json_response(entry.body)
    if resource not in COLLECTIONS:
        raise unknown_url(request)
    name = COLLECTIONS[resource]
    col = model.data[name]
    if oid in col.entries and sim.take_fault("stripe", request.url.path, "delete_between_list_and_fetch"):
        sim.delete_now("stripe", name, oid)  # a subscription is canceled, and stays retrievable
    if oid in col.entries:
        return json_response(_bodies([col.entries[oid]], name, version)[0])
    if oid in col.deleted and name == "customer":
        return json_response({"id": oid, "object": "customer", "deleted": True})
    raise error(404, f"No such {name}: '{oid[:64]}'", "resource_missing", "id")


def unknown_url(request) -> ApiError:
    """Stripe's answer to a path it does not serve."""
    return error(404, f"Unrecognized request URL ({request.method}: {request.url.path[:100]}). "
                      "Please see https://stripe.com/docs or we can help at https://support.stripe.com/.")


async def not_found(request):
    """Catch-all under /v1."""
    raise unknown_url(request)


async def admin_event_destination(request):
    """GET, or POST {"event_payload": "snapshot" | "thin"}: what the webhook endpoint is sent (until a reset)."""
    feed = get_sim(request).models["stripe"].feed
    if request.method == "POST":
        try:
            body = orjson.loads(await request.body() or b"{}")
        except orjson.JSONDecodeError:
            body = None
        payload = body.get("event_payload") if isinstance(body, dict) else None
        if payload not in EVENT_PAYLOADS:
            return json_response({"error": f"event_payload must be one of {', '.join(EVENT_PAYLOADS)}"}, 400)
        feed.event_payload = payload
    return json_response({"event_payload": feed.event_payload})


routes = [
    Route("/_admin/stripe/event_destination", admin_event_destination, methods=["GET", "POST"]),
    Route("/v1/{resource}", list_objects),
    Route("/v1/{resource}/{oid}", retrieve),
    Route("/v1/{rest:path}", not_found),
]
