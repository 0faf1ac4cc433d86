"""GitHub REST routes for apisync/demo: Link-header pages, since/sort/direction/state, ETags."""
from __future__ import annotations

import hashlib
from urllib.parse import urlencode

from starlette.routing import Route

from .responses import ApiError, get_sim, json_response
from .store import Collection
from .timefmt import github_time, parse_iso

DOCS = "https://docs.github.com/rest"
BASE = "/repos/{owner}/{repo}"


def error(status: int, message: str, errors: list | None = None, headers: dict | None = None):
    """GitHub's error JSON {"message", "documentation_url", "status"} as a Response."""
    body = {"message": message, "documentation_url": DOCS, "status": str(status)}
    if errors:
        body["errors"] = errors
    return json_response(body, status, headers)


def _invalid(field: str, resource: str = "Issue") -> ApiError:
    return ApiError(error(422, "Validation Failed", [{"resource": resource, "field": field, "code": "invalid"}]))


def _check_repo(request) -> None:
    p = request.path_params
    if (p["owner"], p["repo"]) != ("apisync", "demo"):
        raise ApiError(error(404, "Not Found"))


def _int(value: str | None, default: int) -> int:
    # GitHub ignores a per_page/page it cannot read rather than failing the request.
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _since(request) -> str | None:
    raw = request.query_params.get("since")
    if raw is None:
        return None
    try:
        return github_time(int(parse_iso(raw)))
    except ValueError:
        raise _invalid("since") from None


def _choice(request, name: str, allowed: tuple[str, ...], default: str | None, resource="Issue") -> str | None:
    value = request.query_params.get(name, default)
    if value is not None and value not in allowed:
        raise _invalid(name, resource)
    return value


def _ordered(col: Collection, sort: str, direction: str, keep) -> list:
    """Entries along the sort index in the asked direction, filtered."""
    index = "updated" if sort == "updated" else "created"
    keys = col.indexes[index].keys
    seq = reversed(keys) if direction == "desc" else keys
    entries = col.entries
    return [entries[k[-1]] for k in seq if k[-1] in entries and keep(entries[k[-1]].data)]


def _page(request, items: list, sim, api_path: str):
    """Slice one page, set Link (first/prev/next/last) and ETag; 304 on a matching If-None-Match."""
    per_page = min(max(_int(request.query_params.get("per_page"), 30), 1), 100)  # docs: max 100
    page = max(_int(request.query_params.get("page"), 1), 1)
    last = max((len(items) + per_page - 1) // per_page, 1)
    chunk = items[(page - 1) * per_page: page * per_page]
    body = b"[" + b",".join(e.body for e in chunk) + b"]"
    links = _links(request, page, last)
    if page < last and sim.take_fault("github", api_path, "repeat_cursor"):
        links = [(str(request.url), "next")] + [lk for lk in links if lk[1] != "next"]
    headers = {"Link": ", ".join(f'<{url}>; rel="{rel}"' for url, rel in links)} if links else {}
    return _with_etag(request, body, headers)


def _links(request, page: int, last: int) -> list[tuple[str, str]]:
    params = dict(request.query_params)

    def url(n: int) -> str:
        params["page"] = str(n)
        return f"{request.url.scheme}://{request.url.netloc}{request.url.path}?{urlencode(params)}"
    links = []
    if page > 1:
        links += [(url(page - 1), "prev"), (url(1), "first")]
    if page < last:
        links += [(url(page + 1), "next"), (url(last), "last")]
    return links


def _with_etag(request, body: bytes, headers: dict):
    etag = 'W/"' + hashlib.md5(body).hexdigest() + '"'
    headers = {**headers, "ETag": etag}
    match = request.headers.get("if-none-match")
    if match and etag in [m.strip() for m in match.split(",")]:
        return json_response(b"", 304, headers)  # docs: a 304 does not count against the rate limit
    return json_response(body, 200, headers)


async def list_issues(request):
    """GET /repos/{o}/{r}/issues — pull requests included, as GitHub does."""
    _check_repo(request)
    state = _choice(request, "state", ("open", "closed", "all"), "open")
    sort = _choice(request, "sort", ("created", "updated", "comments"), "created")
    direction = _choice(request, "direction", ("asc", "desc"), "desc")
    since = _since(request)
    model = get_sim(request).models["github"]

    def keep(d):
        return (state == "all" or d["state"] == state) and (since is None or d["updated_at"] >= since)
    items = _ordered(model.issues, sort, direction, keep)
    return _page(request, items, get_sim(request), request.url.path)


async def list_pulls(request):
    """GET /repos/{o}/{r}/pulls (no `since` on this endpoint, as on GitHub)."""
    _check_repo(request)
    state = _choice(request, "state", ("open", "closed", "all"), "open", "PullRequest")
    sort = _choice(request, "sort", ("created", "updated", "popularity", "long-running"), "created", "PullRequest")
    # docs: direction defaults to desc when sort is created or absent, else asc.
    direction = _choice(request, "direction", ("asc", "desc"), "desc" if sort == "created" else "asc",
                        "PullRequest")
    model = get_sim(request).models["github"]
    items = _ordered(model.pulls, sort, direction, lambda d: state == "all" or d["state"] == state)
    return _page(request, items, get_sim(request), request.url.path)


async def list_comments(request):
    """GET /repos/{o}/{r}/issues/comments and /issues/{number}/comments."""
    _check_repo(request)
    number = request.path_params.get("number")
    sort = _choice(request, "sort", ("created", "updated"), None, "IssueComment")
    # docs: ordered by ascending id by default; direction is ignored without sort.
    direction = _choice(request, "direction", ("asc", "desc"), "desc", "IssueComment") if sort else "asc"
    since = _since(request)
    model = get_sim(request).models["github"]
    if number is not None and number not in model.issues.entries:
        raise ApiError(error(404, "Not Found"))
    suffix = f"/issues/{number}" if number else None

    def keep(d):
        return (since is None or d["updated_at"] >= since) and (suffix is None or d["issue_url"].endswith(suffix))
    items = _ordered(model.comments, sort or "created", direction, keep)
    return _page(request, items, get_sim(request), request.url.path)


async def get_one(request):
    """GET a single issue, pull or comment; 404 once deleted."""
    _check_repo(request)
    kind, oid = request.path_params.get("kind", "comments"), request.path_params["oid"]
    sim = get_sim(request)
    model = sim.models["github"]
    targets = {"issues": (model.issues, "issue"), "pulls": (model.pulls, "pull_request"),
               "comments": (model.comments, "issue_comment")}
    if kind not in targets:
        return error(404, "Not Found")
    col, collection = targets[kind]
    if oid in col.entries and sim.take_fault("github", request.url.path, "delete_between_list_and_fetch"):
        sim.delete_now("github", collection, oid)
    entry = col.entries.get(oid)
    if entry is None:
        # Real GitHub answers 410 Gone for some deleted issues; the contract here is 404.
        return error(404, "Not Found")
    return _with_etag(request, entry.body, {})


async def not_found(request):
    """Anything else under /repos."""
    return error(404, "Not Found")


routes = [
    Route(BASE + "/issues", list_issues),
    Route(BASE + "/pulls", list_pulls),
    Route(BASE + "/issues/comments", list_comments),
    Route(BASE + "/issues/comments/{oid}", get_one, name="comment"),
    Route(BASE + "/issues/{number}/comments", list_comments),
    Route(BASE + "/{kind:str}/{oid}", get_one),
    Route("/repos/{rest:path}", not_found),
]
