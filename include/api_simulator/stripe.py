"""Stripe REST routes: list (newest first, cursors, created filters), retrieve, events."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.routing import Route

from .responses import ApiError, get_sim, json_response
from .store import Collection

DOCS = "https://docs.stripe.com/error-codes"
COLLECTIONS = {"customers": "customer", "subscriptions": "subscription", "invoices": "invoice",
               "charges": "charge"}
COMMON_PARAMS = {"limit", "starting_after", "ending_before", "created", "created[gt]", "created[gte]",
                 "created[lt]", "created[lte]", "expand[]"}
FILTERS = {"customers": {"email"}, "subscriptions": {"customer", "status"},
           "invoices": {"customer", "status", "subscription"}, "charges": {"customer"},
           "events": {"type", "types[]"}}


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
        if name not in allowed:
            raise error(400, f"Received unknown parameter: {name}", "parameter_unknown", name)
        params.setdefault(name, []).append(value)
    return params


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


def _predicate(params: dict, resource: str) -> Callable[[dict], bool] | None:
    checks = [(name, set(params[name])) for name in ("email", "customer", "status", "subscription")
              if name in params and not (name == "status" and params[name] == ["all"])]
    if resource == "subscriptions" and "status" not in params:
        # Stripe lists only subscriptions that are not canceled unless status=all or status=canceled
        # is given (docs: List subscriptions, `status`).
        checks.append(("status", {"active", "past_due", "unpaid", "incomplete", "incomplete_expired",
                                  "trialing", "paused"}))
    types = set(params.get("type", [])) | set(params.get("types[]", []))
    if not checks and not types:
        return None

    def keep(data: dict) -> bool:
        if types and not any(_type_matches(data.get("type", ""), t) for t in types):
            return False
        return all(data.get(name) in wanted for name, wanted in checks)
    return keep


def _type_matches(event_type: str, pattern: str) -> bool:
    # Stripe accepts a trailing wildcard in `type`, e.g. customer.* (docs: List all events, `type`).
    return event_type.startswith(pattern[:-1]) if pattern.endswith("*") else event_type == pattern


def list_page(col: Collection, params: dict, resource: str, repeat: bool) -> tuple[list, bool]:
    """Entries for one page, newest first, and has_more."""
    limit = _int_param(params, "limit", 1, 100) or 10
    after, before = params.get("starting_after", [None])[0], params.get("ending_before", [None])[0]
    if after and before:
        raise error(400, "You may only specify one of these parameters: ending_before, starting_after.")
    keys = col.indexes["created"].keys
    lo, hi = _created_bounds(params, keys)
    keep = _predicate(params, resource)
    cursor = after or before
    pos = None
    if cursor:
        key = col.key_of("created", cursor)
        if key is None:
            name = "starting_after" if after else "ending_before"
            raise error(400, f"No such {col.name}: '{cursor[:64]}'", "resource_missing", name)
        pos = col.indexes["created"].position(key)
        live = pos < len(keys) and keys[pos] == key
    if before or (after and repeat):
        # Walk towards newer items; a repeated page re-serves the page that ended at the cursor.
        start = pos if repeat else pos + (1 if live else 0)
        return _walk(col, keys, max(start, lo), hi, +1, limit, keep, reverse=True, force_more=repeat)
    start = hi - 1 if pos is None else min(pos - 1, hi - 1)
    return _walk(col, keys, start, lo, -1, limit, keep)


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
    if resource == "events":
        model.prune_events()
        col = model.events
    elif resource in COLLECTIONS:
        col = model.data[COLLECTIONS[resource]]
    else:
        raise unknown_url(request)
    params = _params(request, resource)
    repeat = "starting_after" in params and sim.take_fault("stripe", request.url.path, "repeat_cursor")
    entries, has_more = list_page(col, params, resource, bool(repeat))
    url = f"/v1/{resource}".encode()
    body = (b'{"object":"list","data":[' + b",".join(e.body for e in entries) + b'],"has_more":'
            + (b"true" if has_more else b"false") + b',"url":"' + url + b'"}')
    return json_response(body)


async def retrieve(request):
    """GET /v1/<collection>/<id>; deleted customers answer {"deleted": true} like Stripe."""
    resource, oid = request.path_params["resource"], request.path_params["oid"]
    sim = get_sim(request)
    model = sim.models["stripe"]
    if resource == "events":
        entry = model.events.entries.get(oid)
        if entry is None:
            raise error(404, f"No such event: '{oid[:64]}'", "resource_missing", "id")
        return json_response(entry.body)
    if resource not in COLLECTIONS:
        raise unknown_url(request)
    name = COLLECTIONS[resource]
    col = model.data[name]
    if oid in col.entries and sim.take_fault("stripe", request.url.path, "delete_between_list_and_fetch"):
        sim.delete_now("stripe", name, oid)
    if oid in col.entries:
        return json_response(col.entries[oid].body)
    if oid in col.deleted and name == "customer":
        return json_response({"id": oid, "object": "customer", "deleted": True})
    if oid in col.deleted and name == "subscription":
        return json_response(col.graveyard[oid].body)
    raise error(404, f"No such {name}: '{oid[:64]}'", "resource_missing", "id")


def unknown_url(request) -> ApiError:
    """Stripe's answer to a path it does not serve."""
    return error(404, f"Unrecognized request URL ({request.method}: {request.url.path[:100]}). "
                      "Please see https://stripe.com/docs or we can help at https://support.stripe.com/.")


async def not_found(request):
    """Catch-all under /v1."""
    raise unknown_url(request)


routes = [
    Route("/v1/{resource}", list_objects),
    Route("/v1/{resource}/{oid}", retrieve),
    Route("/v1/{rest:path}", not_found),
]
