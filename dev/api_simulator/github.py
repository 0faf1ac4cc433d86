"""GitHub REST routes for several repositories: Link-header pages, since/sort/direction/state, ETags, 301s.

Every route is served under `/repos/{owner}/{repo}` and under `/repositories/{id}` (where GitHub's
redirects point). A renamed repository's old name answers 301 with a Location under `/repositories/<id>`
and a transferred issue answers 301 to the issue in its new repository, as GitHub does
(https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api#moved-permanently,
https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api#follow-redirects).
"""
from __future__ import annotations

import hashlib
from urllib.parse import urlencode

import orjson
from starlette.routing import Route

from . import github_views as views
from .responses import ApiError, get_sim, json_response
from .store import Collection
from .timefmt import github_time, parse_iso

DOCS = "https://docs.github.com/rest"
BASE = "/repos/{owner}/{repo}"
BY_ID = "/repositories/{repo_id:int}"


def error(status: int, message: str, errors: list | None = None, headers: dict | None = None):
    """GitHub's error JSON {"message", "documentation_url", "status"} as a Response."""
    body = {"message": message, "documentation_url": DOCS, "status": str(status)}
    if errors:
        body["errors"] = errors
    return json_response(body, status, headers)


def _invalid(field: str, resource: str = "Issue") -> ApiError:
    return ApiError(error(422, "Validation Failed", [{"resource": resource, "field": field, "code": "invalid"}]))


def moved(location: str):
    """GitHub's 301: {"message": "Moved Permanently", "url": <new>} and a Location header."""
    body = {"message": "Moved Permanently", "url": location, "documentation_url": DOCS}
    return json_response(body, 301, {"Location": location})


def _repo(request) -> str:
    """The storage name of the repository a request addresses, its name matched in any case; 301 for a
    renamed one, 404 if unknown, and the refusal of one that stopped answering (see `refused`)."""
    model = get_sim(request).models["github"]
    p = request.path_params
    if "repo_id" in p:
        repo = model.repo_by_id(p["repo_id"])
    else:
        name = f"{p['owner']}/{p['repo']}"
        repo = model.repo_by_name(name)
        if repo is None and name.lower() in model.renamed:
            rest = request.url.path[len(f"/repos/{name}"):]
            query = f"?{request.url.query}" if request.url.query else ""
            raise ApiError(moved(_base(request) + f"/repositories/{model.renamed[name.lower()]}{rest}{query}"))
    if repo is None:
        raise ApiError(error(404, "Not Found"))
    status = model.refusal(repo)
    if status is not None:
        raise ApiError(refused(status, model.current_name(repo)))
    return repo


def refused(status: int, name: str):
    """What GitHub answers for a repository the token can no longer see, in its error shape:
    404 when it is deleted or private to this token (GitHub does not reveal which), 403 when the
    organisation enforces SAML SSO and the token is not authorised for it (with `X-GitHub-SSO`), 451 when
    access is blocked for legal reasons (https://docs.github.com/en/rest/authentication/authenticating-to-the-rest-api:
    "a token that has insufficient permissions" gets 404 or 403; https://docs.github.com/en/enterprise-cloud@latest/
    rest/authentication/authenticating-to-the-rest-api#personal-access-tokens-and-saml-sso;
    https://docs.github.com/en/rest/repos/repos#get-a-repository for 403 and 451)."""
    if status == 403:
        owner = name.split("/")[0]
        sso = f"required; url=https://github.com/orgs/{owner}/sso?authorization_request=apisync-sim"
        return error(403, "Resource protected by organization SAML enforcement. You must grant your Personal "
                          "Access token access to this organization.", headers={"X-GitHub-SSO": sso})
    if status == 451:
        return error(451, "Repository access blocked")
    return error(404, "Not Found")


def _base(request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def _in_repo(repo: str):
    prefix = views.key(repo, "")
    return lambda oid: oid.startswith(prefix)


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


def _ordered(col: Collection, sort: str, direction: str, keep, owned) -> list:
    """Entries of one repository (`owned(oid)`) along the sort index in the asked direction, filtered."""
    index = "updated" if sort == "updated" else "created"
    keys = col.indexes[index].keys
    seq = reversed(keys) if direction == "desc" else keys
    entries = col.entries
    return [entries[k[-1]] for k in seq if k[-1] in entries and owned(k[-1]) and keep(entries[k[-1]].data)]


def _page(request, items: list, sim, api_path: str, body_of=lambda entry: entry.body):
    """Slice one page, set Link (first/prev/next/last) and ETag; 304 on a matching If-None-Match."""
    per_page = min(max(_int(request.query_params.get("per_page"), 30), 1), 100)  # docs: max 100
    page = max(_int(request.query_params.get("page"), 1), 1)
    last = max((len(items) + per_page - 1) // per_page, 1)
    chunk = items[(page - 1) * per_page: page * per_page]
    body = b"[" + b",".join(body_of(e) for e in chunk) + b"]"
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
    repo = _repo(request)
    state = _choice(request, "state", ("open", "closed", "all"), "open")
    sort = _choice(request, "sort", ("created", "updated", "comments"), "created")
    direction = _choice(request, "direction", ("asc", "desc"), "desc")
    since = _since(request)
    model = get_sim(request).models["github"]

    def keep(d):
        return (state == "all" or d["state"] == state) and (since is None or d["updated_at"] >= since)
    items = _ordered(model.issues, sort, direction, keep, _in_repo(repo))
    return _page(request, items, get_sim(request), request.url.path)


async def list_pulls(request):
    """GET /repos/{o}/{r}/pulls (no `since` on this endpoint, as on GitHub)."""
    repo = _repo(request)
    state = _choice(request, "state", ("open", "closed", "all"), "open", "PullRequest")
    sort = _choice(request, "sort", ("created", "updated", "popularity", "long-running"), "created", "PullRequest")
    # docs: direction defaults to desc when sort is created or absent, else asc.
    direction = _choice(request, "direction", ("asc", "desc"), "desc" if sort == "created" else "asc",
                        "PullRequest")
    model = get_sim(request).models["github"]
    items = _ordered(model.pulls, sort, direction, lambda d: state == "all" or d["state"] == state, _in_repo(repo))
    return _page(request, items, get_sim(request), request.url.path, lambda e: e.view("simple", views.pull_simple))


async def list_comments(request):
    """GET /repos/{o}/{r}/issues/comments and /issues/{number}/comments."""
    repo = _repo(request)
    number = request.path_params.get("number")
    sort = _choice(request, "sort", ("created", "updated"), None, "IssueComment")
    # docs: ordered by ascending id by default; direction is ignored without sort.
    direction = _choice(request, "direction", ("asc", "desc"), "desc", "IssueComment") if sort else "asc"
    since = _since(request)
    model = get_sim(request).models["github"]
    if number is not None and views.key(repo, number) not in model.issues.entries:
        raise ApiError(error(404, "Not Found"))
    def keep(d):
        owner_repo, issue = views.repo_of_comment(d)
        return ((since is None or d["updated_at"] >= since) and owner_repo == repo
                and (number is None or str(issue) == number))
    items = _ordered(model.comments, sort or "created", direction, keep, lambda oid: True)
    return _page(request, items, get_sim(request), request.url.path)


async def get_repo(request):
    """GET /repos/{o}/{r}: the repository (a renamed one answers 301 first)."""
    repo = _repo(request)
    model = get_sim(request).models["github"]
    return _with_etag(request, orjson.dumps(views.repository(model.current_name(repo), views.REPOSITORIES[repo])), {})


async def get_one(request):
    """GET a single issue, pull or comment; 404 once deleted, 301 once transferred."""
    repo = _repo(request)
    kind, oid = request.path_params.get("kind", "comments"), request.path_params["oid"]
    sim = get_sim(request)
    model = sim.models["github"]
    targets = {"issues": (model.issues, "issue"), "pulls": (model.pulls, "pull_request"),
               "comments": (model.comments, "issue_comment")}
    if kind not in targets:
        return error(404, "Not Found")
    col, collection = targets[kind]
    if kind != "comments":
        oid = views.key(repo, oid)
        if kind == "issues" and oid in model.transferred:
            target, number = views.split(model.transferred[oid])
            return moved(f"{_base(request)}/repositories/{views.REPOSITORIES[target]}/issues/{number}")
    elif oid in col.entries and f"/repos/{repo}/issues/" not in col.entries[oid].data["issue_url"]:
        return error(404, "Not Found")
    if oid in col.entries and sim.take_fault("github", request.url.path, "delete_between_list_and_fetch"):
        sim.delete_now("github", collection, oid)
    entry = col.entries.get(oid)
    if entry is None:
        # Real GitHub answers 410 Gone for some deleted issues; the contract here is 404.
        return error(404, "Not Found")
    return _with_etag(request, entry.body, {})


async def list_reviews(request):
    """GET /repos/{o}/{r}/pulls/{number}/reviews: one PR's reviews "in chronological order", Link pages, no
    `since` and no sort (https://docs.github.com/en/rest/pulls/reviews#list-reviews-for-a-pull-request)."""
    repo = _repo(request)
    number = request.path_params["number"]
    book = get_sim(request).models["github"].book
    if views.key(repo, number) not in get_sim(request).models["github"].pulls.entries:
        raise ApiError(error(404, "Not Found"))
    prefix = views.key(repo, number) + "/"
    items = [book.reviews.entries[k[-1]] for k in book.reviews.indexes["created"].keys if k[-1].startswith(prefix)]
    return _page(request, items, get_sim(request), request.url.path)


async def get_review(request):
    """GET /repos/{o}/{r}/pulls/{number}/reviews/{review_id}; 404 unless the review is on that PR."""
    repo = _repo(request)
    p = request.path_params
    entry = get_sim(request).models["github"].book.reviews.entries.get(views.review_key(repo, p["number"], p["rid"]))
    return error(404, "Not Found") if entry is None else _with_etag(request, entry.body, {})


async def list_review_comments(request):
    """GET /repos/{o}/{r}/pulls/comments: review comments of every PR of the repository; ascending id by
    default, `sort` created | updated with `direction`, `since` on updated_at
    (https://docs.github.com/en/rest/pulls/comments#list-review-comments-in-a-repository)."""
    repo = _repo(request)
    sort = _choice(request, "sort", ("created", "updated", "created_at"), None, "PullRequestReviewComment")
    direction = _choice(request, "direction", ("asc", "desc"), "desc", "PullRequestReviewComment") if sort else "asc"
    since = _since(request)
    book = get_sim(request).models["github"].book

    def keep(d):
        return (since is None or d["updated_at"] >= since) and views.pull_of_review_comment(d)[0] == repo
    order = "updated" if sort == "updated" else "created"
    items = _ordered(book.comments, order, direction, keep, lambda oid: True)
    return _page(request, items, get_sim(request), request.url.path)


async def get_review_comment(request):
    """GET /repos/{o}/{r}/pulls/comments/{comment_id}; 404 once deleted or when it is another repository's."""
    repo = _repo(request)
    entry = get_sim(request).models["github"].book.comments.entries.get(str(request.path_params["cid"]))
    if entry is None or views.pull_of_review_comment(entry.data)[0] != repo:
        return error(404, "Not Found")
    return _with_etag(request, entry.body, {})


async def not_found(request):
    """Anything else under /repos."""
    return error(404, "Not Found")


def _routes(base: str) -> list[Route]:
    return [
        Route(base, get_repo),
        Route(base + "/issues", list_issues),
        Route(base + "/pulls", list_pulls),
        Route(base + "/issues/comments", list_comments),
        Route(base + "/issues/comments/{oid}", get_one),
        Route(base + "/issues/{number}/comments", list_comments),
        Route(base + "/pulls/comments", list_review_comments),
        Route(base + "/pulls/comments/{cid:int}", get_review_comment),
        Route(base + "/pulls/{number:int}/reviews", list_reviews),
        Route(base + "/pulls/{number:int}/reviews/{rid:int}", get_review),
        Route(base + "/{kind:str}/{oid}", get_one),
    ]


routes = _routes(BASE) + _routes(BY_ID) + [Route("/repos/{rest:path}", not_found),
                                           Route("/repositories/{rest:path}", not_found)]
