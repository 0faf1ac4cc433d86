"""GitHub: issues, pull requests, issue comments, PR reviews and review comments of one or more repositories.

Key contract: issues and pull requests are `<repository id>#<number>` (numbers are unique only per
repository), issue and review comments GitHub's comment `id` (unique across GitHub), reviews
`<repository id>#<number>/<review id>` (see `reviews`: a review is addressed through its PR).
The repository id is the one identity every path shares: GitHub matches names without regard to case
(https://docs.github.com/en/rest/repos/repos#get-a-repository: "The name is not case sensitive") and a
rename or a transfer of the repository changes its name, while webhooks always carry the current
`repository.full_name` and the same `repository.id`
(https://docs.github.com/en/webhooks/webhook-events-and-payloads). So polls resolve each configured name
once per run (`GET /repos/{owner}/{repo}` → `id`, `full_name`), webhooks read `repository.id`, and
reconcile and re-fetches address objects as `/repositories/<id>/...`, where GitHub's own redirects point.
How each listing is walked without skipping: `walks`.

Redirects (https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api#follow-redirects):
the client follows 301s. A renamed repository answers its old name with a 301 to `/repositories/<id>/...`;
it is followed and logged once so the user can update the connection (keys do not change). An issue
transferred to another repository answers 301 to the issue there: for this repository it is gone, so
`fetch` answers `Gone("transferred to owner/repo#n")` (reconcile and re-fetches turn that into a tombstone
and a `deleted` event whose `reason` says where it went).

A repository that refuses (404 deleted or private, 403 SSO enforcement or a revoked app installation, 451
blocked) is skipped: every other repository of the connection is walked to its end, then the walk raises
`PartsUnavailable` naming the refused ones (the run fails after the others are committed), and `fetch`
raises `UnavailablePart` rather than answering Gone for an object it cannot see.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from apisync.apis.github.keys import RE_KEYED, Repository, is_name_keyed, record_data, record_id, split_id, unique_repos
from apisync.apis.github.reviews import ReviewWalks
from apisync.apis.github.walks import CreatedOrderWalk, KeysetWalk, UpdatedDescWalk, get_page
from apisync.events import Observation, iso_to_ms, ms_to_iso
from apisync.http import ApiClient, FatalError
from apisync.sources.base import (
    Batch,
    Gone,
    ObservationFactory,
    PartsUnavailable,
    UnavailablePart,
    require,
    server_time_ms,
)
from apisync.sources.keyset import MAX_CURSOR_BYTES, MAX_RECENT, KeysetPosition

log = logging.getLogger("apisync.apis.github")
PER_PAGE = 100
LOOKBACK_MS = 60_000
# How GitHub refuses a repository the token can no longer see: 404 (deleted, or private to this token),
# 403 (SAML SSO enforced, an app installation without access), 451 (blocked for legal reasons).
# https://docs.github.com/en/rest/authentication/authenticating-to-the-rest-api#failed-login-limit
REPOSITORY_REFUSALS = (403, 404, 451)
_ANNOUNCED_RENAMES: set[tuple[str, str]] = set()  # log a rename once per process, not once per page
# The repository-wide listing of each collection walked by `since` (review comments: `/pulls/comments`,
# https://docs.github.com/en/rest/pulls/comments#list-review-comments-in-a-repository: since, sort, direction).
LISTINGS = {"issue": "issues", "issue_comment": "issues/comments", "pull_request_review_comment": "pulls/comments"}
COMMENTS = ("issue_comment", "pull_request_review_comment")  # keyed by their global id
class GitHubSource:
    """Issues, pull requests, comments and reviews of the repositories in the connection (`owner/name` each)."""

    api = "github"
    collections = ("issue", "pull_request", "issue_comment", "pull_request_review", "pull_request_review_comment")

    def __init__(self, repos: Sequence[str] | str, factory: ObservationFactory | None = None,
                 lookback_ms: int = LOOKBACK_MS, page_size: int = PER_PAGE, max_recent: int = MAX_RECENT) -> None:
        self.repos = unique_repos([repos] if isinstance(repos, str) else list(repos))
        bad = [r for r in self.repos if r.count("/") != 1] or ([] if self.repos else ["(none)"])
        if bad:
            raise ValueError(f"github repos must look like owner/name, got {bad[0]!r}")
        self.factory = factory or ObservationFactory(self.api)
        self.lookback_ms = lookback_ms
        self.page_size = page_size
        self.max_recent = max_recent  # dedupe memory per repository and run (see `keyset`)
        self._resolved: dict[str, Repository] = {}  # configured name -> the repository, once per run
        self.reviews = ReviewWalks(self)

    # ---- the Source protocol ------------------------------------------------------------------
    def incremental_start(self, client: ApiClient, collection: str) -> dict[str, Any]:
        start = KeysetPosition(server_time_ms(self._any_answer(client), self.api)).to_cursor()
        return {"repos": {repo: dict(start) for repo in self.repos}}

    def backfill(self, client, collection, cursor, start_date) -> Iterator[Batch]:
        states = self._states(cursor)
        refused = _Refusals()
        for repo in self.repos:
            if states.setdefault(repo, {}).get("done"):
                continue
            try:
                yield from self._backfill_repo(client, collection, repo, states, start_date)
            except FatalError as error:
                refused.note(repo, error)
        # A refused repository is not backfilled: the backfill stays unfinished until it answers again
        # or leaves the connection, and the other repositories' progress is kept in the cursor meanwhile.
        yield Batch([], self._cursor(states), done=not refused)
        refused.raise_if_any()

    def incremental(self, client, collection, cursor) -> Iterator[Batch]:
        states = self._states(cursor)
        refused = _Refusals()
        for repo in self.repos:
            state = states.setdefault(repo, {})
            position = KeysetPosition.from_cursor(state, self.max_recent)
            floor = max(0, position.version - self.lookback_ms)
            try:
                if collection == "pull_request":
                    yield from self._poll_pulls(client, repo, states, position, floor)
                elif collection == "pull_request_review":
                    yield from self.reviews.poll(client, repo, states, position, floor)
                else:
                    yield from self._keyset(client, collection, repo, states, position, floor, "poll")
            except FatalError as error:
                refused.note(repo, error)
        yield Batch([], self._cursor(states), done=True)
        refused.raise_if_any()

    def list_ids(self, client, collection) -> Iterator[str]:
        refused, listed = _Refusals(), set()
        for repo in self.repos:
            try:
                yield from self._list_repo(client, collection, repo)
                listed.add(self._resolved[repo].id)
            except FatalError as error:
                refused.note(repo, error)
        refused.raise_if_any(_may_belong_to_others(collection, listed))

    def fetch(self, client, collection, object_id) -> Observation | Gone:
        if collection in COMMENTS:
            return self._fetch_comment(client, object_id, LISTINGS[collection])
        if collection == "pull_request_review":
            return self.reviews.fetch(client, object_id)
        if is_name_keyed(object_id):
            return Gone(RE_KEYED)
        repository_id, number = split_id(object_id)
        data = self._get_one(client, repository_id, f"{'pulls' if collection == 'pull_request' else 'issues'}/{number}")
        return data if isinstance(data, Gone) else self._observe(repository_id, collection, data, "reconcile")

    # ---- walks ---------------------------------------------------------------------------------
    def _backfill_repo(self, client, collection, repo, states, start_date) -> Iterator[Batch]:
        if collection == "pull_request":
            yield from self._backfill_pulls(client, repo, states)
            return
        if collection == "pull_request_review":
            yield from self.reviews.backfill(client, repo, states, _start_ms(start_date))
            return
        state = states[repo]
        position = KeysetPosition.from_cursor(state, self.max_recent)
        if not state and start_date:
            position.version = _start_ms(start_date)
        yield from self._keyset(client, collection, repo, states, position, position.version, "backfill")

    def _list_repo(self, client, collection, repo) -> Iterator[str]:
        if collection == "pull_request_review":
            yield from self.reviews.list_ids(client, repo)
            return
        listing = LISTINGS.get(collection, "pulls")
        params = {"per_page": self.page_size} | ({} if collection in COMMENTS else {"state": "all"})
        page = get_page(client, self._path(client, repo, listing), params)
        repository_id = self._resolved[repo].id
        while True:
            for item in page.items:
                if collection == "issue" and "pull_request" in item:
                    continue
                yield self._id(repository_id, collection, item)
            if page.next_url is None:
                return
            page = get_page(client, page.next_url)

    def _keyset(self, client, collection, repo, states, position, since_ms, source) -> Iterator[Batch]:
        path = self._path(client, repo, LISTINGS[collection])
        repository_id = self._resolved[repo].id
        etag = states[repo].get("etag")
        walk = KeysetWalk(client, path, {} if collection in COMMENTS else {"state": "all"}, position,
                          lambda item: self._id_version(repository_id, collection, item), self.page_size,
                          etag[1] if etag and etag[0] == ms_to_iso(since_ms) else None)
        for fresh in walk.pages(since_ms):
            observations = [self._observe(repository_id, collection, item, source) for item in fresh
                            if collection != "issue" or "pull_request" not in item]
            states[repo] = position.to_cursor(self.lookback_ms, self._budget())
            yield Batch(observations, self._cursor(states))
        states[repo] = {**position.to_cursor(self.lookback_ms, self._budget()), "done": source == "backfill"}
        if source == "poll" and walk.new_etag and walk.new_etag[1]:
            states[repo]["etag"] = list(walk.new_etag)

    def _backfill_pulls(self, client, repo, states) -> Iterator[Batch]:
        state = states[repo] if "next" in states[repo] else {}  # an old sort=updated walk restarts
        path = self._path(client, repo, "pulls")
        repository_id = self._resolved[repo].id
        walk = CreatedOrderWalk(client, path, self.page_size, state)
        for items in walk.pages():
            states[repo] = dict(walk.state)
            yield Batch([self._observe(repository_id, "pull_request", pr, "backfill") for pr in items],
                        self._cursor(states))

    def _poll_pulls(self, client, repo, states, position, floor) -> Iterator[Batch]:
        before = dict(states[repo])
        path = self._path(client, repo, "pulls")
        repository_id = self._resolved[repo].id
        walk = UpdatedDescWalk(client, path, position,
                               lambda item: self._id_version(repository_id, "pull_request", item), self.page_size,
                               before.get("etag"))
        for fresh in walk.pages(floor):
            # The cursor moves only when the walk reached the floor: a crash mid-walk re-reads it all.
            yield Batch([self._observe(repository_id, "pull_request", pr, "poll") for pr in fresh],
                        self._cursor(states))
        states[repo] = {**position.to_cursor(self.lookback_ms, self._budget()), "etag": walk.new_etag}

    # ---- single objects ------------------------------------------------------------------------
    def _get_one(self, client, repository_id: int, rest: str) -> dict | Gone:
        """One object, or Gone when it is gone from this repository (404, 410, transferred away); a
        repository that refuses raises UnavailablePart (its objects are not known to be gone)."""
        path = f"/repositories/{repository_id}/{rest}"
        try:
            result = client.get_json(path)
        except FatalError as error:
            if error.status in REPOSITORY_REFUSALS:
                self._check_repository(client, repository_id)
            if error.status in (404, 410):  # GitHub answers 410 Gone for deleted issues
                return Gone(f"GitHub answered {error.status} for {path}")
            raise
        if result.response.history and _repository_id_in(str(result.response.url)) != repository_id:
            moved_to = _repo_and_number(result.data) or str(result.response.url)
            log.warning("github %s moved permanently to %s: transferred away from repository %s, so it is "
                        "deleted here", path, moved_to, self._label(repository_id))
            return Gone(f"transferred to {moved_to}")
        return result.data

    def _fetch_comment(self, client, comment_id: str, listing: str = "issues/comments") -> Observation | Gone:
        """A comment (of `listing`) from whichever configured repository holds it (comment ids are global, the
        endpoint is per repository). Gone only when every repository answered and none has it."""
        answered, refused = [], None
        for repo in self.repos:
            try:
                repository_id = self._repository(client, repo).id
                data = client.get_json(f"/repositories/{repository_id}/{listing}/{comment_id}").data
            except FatalError as error:
                if repo not in self._resolved:  # the repository's own lookup was refused
                    refused = refused or _Refusals.as_unavailable(repo, error)
                    continue
                if error.status in REPOSITORY_REFUSALS:
                    self._check_repository(client, self._resolved[repo].id)
                if error.status not in (404, 410):
                    raise
                answered.append(self._resolved[repo].id)
                continue
            return self._observe(repository_id, _COMMENT_OF[listing], data, "reconcile")
        if refused is not None:
            raise refused
        for repository_id in answered:  # a repository that stopped answering meanwhile cannot vouch
            self._check_repository(client, repository_id)
        return Gone("GitHub has no such comment in the connection's repositories")

    def _check_repository(self, client, repository_id: int) -> None:
        """Raise UnavailablePart when the repository itself refuses (its objects cannot be judged now)."""
        try:
            client.get(f"/repositories/{repository_id}")
        except FatalError as error:
            if error.status in REPOSITORY_REFUSALS:
                raise UnavailablePart.of(f"repository {self._label(repository_id)}", error) from None
            raise

    # ---- repositories --------------------------------------------------------------------------
    def _path(self, client: ApiClient, repo: str, rest: str) -> str:
        return f"/repos/{self._repository(client, repo).full_name}/{rest}"

    def _repository(self, client: ApiClient, repo: str) -> Repository:
        """The configured repository as GitHub names it now, looked up once per run: a renamed one
        redirects (followed) and is announced once; a name in another case is the same repository."""
        if repo not in self._resolved:
            data = client.get_json(f"/repos/{repo}").data
            found = Repository(int(require(data, "id", self.api, f"/repos/{repo}")),
                               str(require(data, "full_name", self.api, f"/repos/{repo}")))
            if found.full_name.lower() != repo.lower() and (repo, found.full_name) not in _ANNOUNCED_RENAMES:
                _ANNOUNCED_RENAMES.add((repo, found.full_name))
                log.warning("github repository %s was renamed to %s (HTTP 301, followed); update the "
                            "connection's repos. Record keys name the repository by id, so they stay the same.",
                            repo, found.full_name)
            self._resolved[repo] = found
        return self._resolved[repo]

    def _any_answer(self, client: ApiClient):
        """The first configured repository's answer (for the server time); a refused one is skipped."""
        for repo in self.repos[:-1]:
            try:
                return client.get(f"/repos/{repo}")
            except FatalError as error:
                if error.status not in REPOSITORY_REFUSALS:
                    raise
        return client.get(f"/repos/{self.repos[-1]}")

    def _label(self, repository_id: int) -> str:
        name = next((r.full_name for r in self._resolved.values() if r.id == repository_id), None)
        return f"{name} (id {repository_id})" if name else f"id {repository_id}"

    # ---- cursors and observations --------------------------------------------------------------
    def _states(self, cursor) -> dict[str, dict]:
        if not cursor:
            return {}
        if "repos" not in cursor:
            return {self.repos[0]: dict(cursor)}  # a cursor from the single-repository version
        # A configured name matches its state in any case: GitHub names are not case sensitive.
        saved = {repo.lower(): dict(state or {}) for repo, state in cursor["repos"].items()}
        return {repo: saved[repo.lower()] for repo in self.repos if repo.lower() in saved}

    def _cursor(self, states: dict[str, dict]) -> dict[str, Any]:
        return {"repos": {repo: states.get(repo, {}) for repo in self.repos}}

    def _budget(self) -> int:
        return MAX_CURSOR_BYTES // len(self.repos)  # every repo's memory shares one checkpoint

    def _id_version(self, repository_id: int, collection: str, item: Any) -> tuple[str, int]:
        updated = require(item, "updated_at", self.api, f"/repositories/{repository_id}")
        return self._id(repository_id, collection, item), iso_to_ms(updated)

    def _id(self, repository_id: int, collection: str, item: Any) -> str:
        if collection in COMMENTS:
            return str(require(item, "id", self.api, f"/repositories/{repository_id}/{LISTINGS[collection]}"))
        return record_id(repository_id, require(item, "number", self.api, f"/repositories/{repository_id}"))

    def _observe(self, repository_id: int, collection: str, item: Any, source: str) -> Observation:
        object_id, version = self._id_version(repository_id, collection, item)
        return self.factory.make(collection, object_id, version, record_data(collection, item), source=source)


class _Refusals:
    """The repositories that refused a walk, one line each; the walk goes on with the others."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    @staticmethod
    def as_unavailable(repo: str, error: FatalError) -> FatalError:
        """A refusal of the repository as UnavailablePart; any other fatal error as it is."""
        return UnavailablePart.of(f"repository {repo}", error) if error.status in REPOSITORY_REFUSALS else error

    def note(self, repo: str, error: FatalError) -> None:
        """Remember a refused repository; any other fatal error is raised at once."""
        unavailable = self.as_unavailable(repo, error)
        if not isinstance(unavailable, UnavailablePart):
            raise error
        log.error("%s; the other repositories of the connection go on", unavailable)
        self.lines.append(str(unavailable))

    def __bool__(self) -> bool:
        return bool(self.lines)

    def raise_if_any(self, may_hold: Callable[[str], bool] = lambda _object_id: True) -> None:
        if self.lines:
            raise PartsUnavailable(self.lines, may_hold)


def _may_belong_to_others(collection: str, listed: set[int]) -> Callable[[str], bool]:
    """Whether an id may belong to a repository that was not listed: an issue or PR whose repository id is
    not one of `listed`; any comment (a comment id does not name its repository)."""
    def may_hold(object_id: str) -> bool:
        if collection in COMMENTS or is_name_keyed(object_id):
            return True
        try:
            return split_id(object_id.partition("/")[0])[0] not in listed  # a review: <repository id>#<n>/<id>
        except ValueError:
            return True
    return may_hold


_COMMENT_OF = {LISTINGS[collection]: collection for collection in COMMENTS}


def _start_ms(start_date: str | None) -> int | None:
    """A backfill's `start_date` (a date or an ISO 8601 instant) in ms; None without one."""
    if not start_date:
        return None
    return iso_to_ms(start_date if "T" in start_date else f"{start_date}T00:00:00+00:00")


def _repository_id_in(url: str) -> int | None:
    """The id in a `/repositories/<id>/...` URL (where GitHub redirects point), else None."""
    parts = url.split("/repositories/", 1)
    head = parts[1].split("/", 1)[0] if len(parts) == 2 else ""
    return int(head) if head.isdigit() else None


def _repo_and_number(data: Any) -> str | None:
    """`owner/repo#n` of an issue from its html_url (`https://github.com/owner/repo/issues/n`)."""
    parts = str(data.get("html_url", "")).rstrip("/").split("/") if isinstance(data, dict) else []
    if len(parts) >= 4 and parts[-2] in ("issues", "pull"):
        return f"{parts[-4]}/{parts[-3]}#{parts[-1]}"
    return None
