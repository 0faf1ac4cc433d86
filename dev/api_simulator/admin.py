"""Admin API under /_admin: truth, mutate, silent mutations, config, faults, stats, reset, seed, clock (no auth)."""
from __future__ import annotations

from typing import Any

import orjson
from starlette.routing import Route

from .config import APIS, ConfigError
from .faults import FaultError
from .mutations import MutationError
from .responses import get_sim, json_response
from .silent import silent_mutations
from .stripe_versions import SUPPORTED


def _bad(message: str):
    return json_response({"error": message}, 400)


async def _body(request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ConfigError("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ConfigError("request body must be a JSON object")
    return data


async def truth(request):
    """GET /_admin/truth/{api}; Stripe takes ?api_version= (default: the account's) to render data in."""
    api = request.path_params["api"]
    if api not in APIS:
        return json_response({"error": f"unknown api {api!r}"}, 404)
    version = request.query_params.get("api_version")
    if version is None:
        return json_response(get_sim(request).truth(api))
    if api != "stripe":
        return _bad("api_version applies to stripe only")
    if version not in SUPPORTED:
        return _bad(f"unknown stripe api_version {version[:64]!r}; supported: {', '.join(SUPPORTED)}")
    return json_response(get_sim(request).truth(api, api_version=version))


async def mutate(request):
    """POST /_admin/mutate {"api", "count", "kinds"?, "collection"?}."""
    sim = get_sim(request)
    try:
        body = await _body(request)
        count = body.get("count", 1)
        if not isinstance(count, int) or count < 0:
            return _bad("count must be an integer >= 0")
        done = request.app.state.engine.run(body.get("api"), count, body.get("kinds"), body.get("collection"))
    except (ConfigError, MutationError) as exc:
        return _bad(str(exc))
    sim.flush_webhooks()
    return json_response({"mutations": [m.as_dict() for m in done]})


async def silent(request):
    """POST /_admin/silent {"api", "collection", "kind": "update"|"delete", "count"?, "ids"?, "stamp"?}:
    changes that leave no event and no webhook (see `silent.py`)."""
    sim = get_sim(request)
    try:
        body = await _body(request)
        count, ids, stamp = body.get("count", 1), body.get("ids"), body.get("stamp", False)
        if not isinstance(count, int) or count < 0 or not isinstance(stamp, bool):
            return _bad("count must be an integer >= 0 and stamp a boolean")
        if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
            return _bad("ids must be a list of object ids")
        done = silent_mutations(sim, body.get("api"), body.get("collection"), body.get("kind", "update"),
                                count, ids, stamp)
    except (ConfigError, MutationError) as exc:
        return _bad(str(exc))
    return json_response({"mutations": [m.as_dict() for m in done]})


async def config(request):
    """GET or POST (deep-merge) /_admin/config."""
    sim = get_sim(request)
    if request.method == "POST":
        try:
            sim.update_config(await _body(request))
        except ConfigError as exc:
            return _bad(str(exc))
        request.app.state.engine.ensure_running()
    return json_response(sim.runtime)


async def faults(request):
    """POST adds a fault, GET lists, DELETE clears."""
    sim = get_sim(request)
    if request.method == "DELETE":
        sim.faults.clear()
        return json_response({"faults": []})
    if request.method == "GET":
        return json_response({"faults": sim.faults.active()})
    try:
        fault = sim.faults.add(await _body(request))
    except (ConfigError, FaultError, TypeError, ValueError) as exc:
        return _bad(str(exc))
    return json_response(fault.as_dict())


async def stats(request):
    """GET /_admin/stats: answered requests per api/status, webhook delivery counts and undelivered webhooks."""
    sim = get_sim(request)
    sim.commit_due()  # a transaction whose time has come commits when anyone looks, its webhooks included
    return json_response({"requests": sim.stats, "webhooks": dict(sim.webhooks.stats),
                          "webhooks_pending": sim.webhooks.pending(),
                          "webhook_log": list(sim.webhooks.log[-200:])})


async def reset(request):
    """POST /_admin/reset {"seed", "objects", "epoch"?, "counts"?}: `counts` sets some collections' own
    numbers, e.g. {"stripe": {"customer": 100000}} (a bulk seed, see StripeModel.seed)."""
    sim = get_sim(request)
    try:
        body = await _body(request)
        seed, objects = body.get("seed", sim.config.seed), body.get("objects", sim.config.objects)
        counts = body.get("counts") or {}
        if not isinstance(seed, int) or not isinstance(objects, int) or objects < 0:
            return _bad("seed and objects must be integers (objects >= 0)")
        if not isinstance(counts, dict):
            return _bad('counts must map an api to its collections\' counts, e.g. {"stripe": {"customer": 100}}')
        sim.reset(seed, objects, body.get("epoch"), counts)
    except ConfigError as exc:
        return _bad(str(exc))
    request.app.state.engine.rng.seed(f"engine:{seed}")
    return json_response({"seed": seed, "objects": objects, "counts": counts, "now": sim.clock.now()})


async def seed_aged(request):
    """POST /_admin/seed {"api", "counts", "created_from", "created_to"}: add history created in that span of
    server seconds, which must be older than the event retention (its events have aged out: none is
    recorded, no webhook sent). Models a month nobody polled, with objects created early in it."""
    sim = get_sim(request)
    try:
        body = await _body(request)
        api, counts = body.get("api"), body.get("counts")
        start, end = body.get("created_from"), body.get("created_to")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)) or start > end:
            return _bad("created_from and created_to must be epoch seconds, created_from <= created_to")
        if not isinstance(api, str) or not isinstance(counts, dict):
            return _bad('api must name an api and counts map its collections to counts')
        created = sim.seed_aged(api, counts, start, end)
    except (ConfigError, ValueError) as exc:
        return _bad(str(exc))
    return json_response({"api": api, "created": created, "now": sim.clock.now()})


async def clock(request):
    """GET the server time; POST {"advance_s": N} moves it forward."""
    sim = get_sim(request)
    if request.method == "POST":
        try:
            advance = (await _body(request)).get("advance_s", 0)
            if isinstance(advance, bool) or not isinstance(advance, (int, float)):
                return _bad("advance_s must be a number")
            sim.clock.advance(float(advance))
        except (ConfigError, ValueError) as exc:
            return _bad(str(exc))
    return json_response({"now": sim.clock.now()})


async def github_rename(request):
    """POST /_admin/github/rename {"repo": "apisync/demo", "to": "apisync/demo-renamed"}: old name answers 301."""
    sim = get_sim(request)
    try:
        body = await _body(request)
    except ConfigError as exc:
        return _bad(str(exc))
    model = sim.models["github"]
    repo, to = body.get("repo"), body.get("to")
    if repo not in model.next_number or not isinstance(to, str) or to.count("/") != 1 \
            or model.repo_by_name(to) not in (None, repo):
        return _bad("repo must be a served repository and to a free owner/name")
    model.rename(repo, to)
    return json_response({"repo": repo, "name": to})


async def github_access(request):
    """POST /_admin/github/access {"repo": "apisync/demo", "status": 404|403|451|null, "after": 0}: from its
    `after`-th next request on, the repository answers `status` to everything (null: it answers again)."""
    sim = get_sim(request)
    try:
        body = await _body(request)
    except ConfigError as exc:
        return _bad(str(exc))
    model = sim.models["github"]
    repo, status, after = body.get("repo"), body.get("status"), body.get("after", 0)
    if repo not in model.next_number or status not in (None, 403, 404, 451) \
            or not isinstance(after, int) or isinstance(after, bool) or after < 0:
        return _bad("repo must be a served repository (its original name), status 404, 403, 451 or null, "
                    "after an integer >= 0")
    model.refuse(repo, status, after)
    return json_response({"repo": repo, "status": status, "after": after})


routes = [
    Route("/_admin/github/rename", github_rename, methods=["POST"]),
    Route("/_admin/github/access", github_access, methods=["POST"]),
    Route("/_admin/truth/{api}", truth),
    Route("/_admin/mutate", mutate, methods=["POST"]),
    Route("/_admin/silent", silent, methods=["POST"]),
    Route("/_admin/config", config, methods=["GET", "POST"]),
    Route("/_admin/faults", faults, methods=["GET", "POST", "DELETE"]),
    Route("/_admin/stats", stats),
    Route("/_admin/reset", reset, methods=["POST"]),
    Route("/_admin/seed", seed_aged, methods=["POST"]),
    Route("/_admin/clock", clock, methods=["GET", "POST"]),
]
