"""GitHub: issues, pull requests and issue comments of one or more repositories.

Key contract: issues and pull requests are `<owner>/<repo>#<number>` (numbers are unique only per
repository), comments GitHub's comment `id` (unique across GitHub). `<owner>/<repo>` is the name in the
connection, so keys stay put when GitHub redirects a renamed repository. How each listing is walked
without skipping: `github_walks`.

Redirects (https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api#follow-redirects):
the client follows 301s. A renamed repository answers every old path with a 301 to
`/repositories/<id>/...`; it is followed and logged once so the user can update the connection. An
issue transferred to another repository answers 301 to the issue there: for this repository it is
gone, so `fetch` answers `Gone("transferred to owner/repo#n")` (reconcile and re-fetches turn that into
a tombstone and a `deleted` event whose `reason` says where it went).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from apisync.events import Observation, iso_to_ms, ms_to_iso
from apisync.http import ApiClient, FatalError
from apisync.sources.base import Batch, Gone, ObservationFactory, require, server_time_ms
from apisync.sources.github_walks import CreatedOrderWalk, KeysetWalk, UpdatedDescWalk, get_page
from apisync.sources.keyset import MAX_CURSOR_BYTES, MAX_RECENT, KeysetPosition

log = logging.getLogger("apisync.sources.github")
PER_PAGE = 100
LOOKBACK_MS = 60_000
_ANNOUNCED_RENAMES: set[tuple[str, str]] = set()  # log a rename once per process, not once per page


def qualified_id(repo: str, number: Any) -> str:
    """`owner/repo#number`: the record id of an issue or pull request."""
    return f"{repo}#{number}"


def split_id(object_id: str) -> tuple[str, str]:
    """`owner/repo#number` -> (owner/repo, number)."""
    repo, _, number = object_id.rpartition("#")
    if not repo or not number:
        raise ValueError(f"github issue/PR id must look like owner/repo#number, got {object_id!r}")
    return repo, number


class GitHubSource:
    """Issues, pull requests and comments of the repositories in the connection (`owner/name` each)."""

    api = "github"
    collections = ("issue", "pull_request", "issue_comment")

    def __init__(self, repos: Sequence[str] | str, factory: ObservationFactory | None = None,
                 lookback_ms: int = LOOKBACK_MS, page_size: int = PER_PAGE, max_recent: int = MAX_RECENT) -> None:
        self.repos = [repos] if isinstance(repos, str) else list(repos)
        bad = [r for r in self.repos if r.count("/") != 1] or ([] if self.repos else ["(none)"])
        if bad:
            raise ValueError(f"github repos must look like owner/name, got {bad[0]!r}")
        self.factory = factory or ObservationFactory(self.api)
        self.lookback_ms = lookback_ms
        self.page_size = page_size
        self.max_recent = max_recent  # dedupe memory per repository and run (see `keyset`)
        self._paths: dict[str, str] = {}  # configured repo -> its current name (after a rename)

    # ---- the Source protocol ------------------------------------------------------------------
    def incremental_start(self, client: ApiClient, collection: str) -> dict[str, Any]:
        response = client.get(f"/repos/{self.repos[0]}", None)
        start = KeysetPosition(server_time_ms(response, self.api)).to_cursor()
        return {"repos": {repo: dict(start) for repo in self.repos}}

    def backfill(self, client, collection, cursor, start_date) -> Iterator[Batch]:
        states = self._states(cursor)
        for repo in self.repos:
            state = states.setdefault(repo, {})
            if state.get("done"):
                continue
            if collection == "pull_request":
                yield from self._backfill_pulls(client, repo, states)
            else:
                position = KeysetPosition.from_cursor(state, self.max_recent)
                if not state and start_date:
                    position.version = iso_to_ms(start_date if "T" in start_date else f"{start_date}T00:00:00+00:00")
                yield from self._keyset(client, collection, repo, states, position, position.version, "backfill")
        yield Batch([], self._cursor(states), done=True)

    def incremental(self, client, collection, cursor) -> Iterator[Batch]:
        states = self._states(cursor)
        for repo in self.repos:
            state = states.setdefault(repo, {})
            position = KeysetPosition.from_cursor(state, self.max_recent)
            floor = max(0, position.version - self.lookback_ms)
            if collection == "pull_request":
                yield from self._poll_pulls(client, repo, states, position, floor)
            else:
                yield from self._keyset(client, collection, repo, states, position, floor, "poll")
        yield Batch([], self._cursor(states), done=True)

    def list_ids(self, client, collection) -> Iterator[str]:
        for repo in self.repos:
            listing = {"issue": "issues", "pull_request": "pulls", "issue_comment": "issues/comments"}[collection]
            params = {"per_page": self.page_size} | ({} if collection == "issue_comment" else {"state": "all"})
            page = get_page(client, self._path(client, repo, listing), params)
            while True:
                for item in page.items:
                    if collection == "issue" and "pull_request" in item:
                        continue
                    yield self._id(repo, collection, item)
                if page.next_url is None:
                    break
                page = get_page(client, page.next_url)

    def fetch(self, client, collection, object_id) -> Observation | Gone:
        if collection == "issue_comment":
            for repo in self.repos:  # comment ids are global, but the endpoint is per repository
                data = self._get_one(client, repo, f"issues/comments/{object_id}")
                if not isinstance(data, Gone):
                    return self._observe(repo, collection, data, "reconcile")
            return Gone("GitHub has no such comment in the connection's repositories")
        repo, number = split_id(object_id)
        data = self._get_one(client, repo, f"{'pulls' if collection == 'pull_request' else 'issues'}/{number}")
        return data if isinstance(data, Gone) else self._observe(repo, collection, data, "reconcile")

    # ---- walks ---------------------------------------------------------------------------------
    def _keyset(self, client, collection, repo, states, position, since_ms, source) -> Iterator[Batch]:
        listing = "issues/comments" if collection == "issue_comment" else "issues"
        state = states[repo]
        etag = state.get("etag")
        walk = KeysetWalk(client, self._path(client, repo, listing), {} if collection == "issue_comment"
                          else {"state": "all"}, position, lambda item: self._id_version(repo, collection, item),
                          self.page_size, etag[1] if etag and etag[0] == ms_to_iso(since_ms) else None)
        for fresh in walk.pages(since_ms):
            observations = [self._observe(repo, collection, item, source) for item in fresh
                            if collection != "issue" or "pull_request" not in item]
            states[repo] = position.to_cursor(self.lookback_ms, self._budget())
            yield Batch(observations, self._cursor(states))
        states[repo] = {**position.to_cursor(self.lookback_ms, self._budget()), "done": source == "backfill"}
        if source == "poll" and walk.new_etag and walk.new_etag[1]:
            states[repo]["etag"] = list(walk.new_etag)

    def _backfill_pulls(self, client, repo, states) -> Iterator[Batch]:
        state = states[repo] if "next" in states[repo] else {}  # an old sort=updated walk restarts
        walk = CreatedOrderWalk(client, self._path(client, repo, "pulls"), self.page_size, state)
        for items in walk.pages():
            states[repo] = dict(walk.state)
            yield Batch([self._observe(repo, "pull_request", pr, "backfill") for pr in items], self._cursor(states))

    def _poll_pulls(self, client, repo, states, position, floor) -> Iterator[Batch]:
        before = dict(states[repo])
        walk = UpdatedDescWalk(client, self._path(client, repo, "pulls"), position,
                               lambda item: self._id_version(repo, "pull_request", item), self.page_size,
                               before.get("etag"))
        for fresh in walk.pages(floor):
            # The cursor moves only when the walk reached the floor: a crash mid-walk re-reads it all.
            yield Batch([self._observe(repo, "pull_request", pr, "poll") for pr in fresh], self._cursor(states))
        states[repo] = {**position.to_cursor(self.lookback_ms, self._budget()), "etag": walk.new_etag}

    # ---- helpers -------------------------------------------------------------------------------
    def _get_one(self, client, repo: str, rest: str) -> dict | Gone:
        """One object, or Gone when it is gone from this repository (404, 410, transferred away)."""
        try:
            result = client.get_json(self._path(client, repo, rest))
        except FatalError as error:
            if error.status in (404, 410):  # GitHub answers 410 Gone for deleted issues
                return Gone(f"GitHub answered {error.status} for {repo}/{rest}")
            raise
        if result.response.history and not _belongs_to(result.data, self._paths.get(repo, repo)):
            moved_to = _repo_and_number(result.data) or str(result.response.url)
            log.warning("github %s/%s moved permanently to %s: transferred away from %s, so it is deleted here",
                        repo, rest, moved_to, repo)
            return Gone(f"transferred to {moved_to}")
        return result.data

    def _path(self, client: ApiClient, repo: str, rest: str) -> str:
        return f"/repos/{self._current_name(client, repo)}/{rest}"

    def _current_name(self, client: ApiClient, repo: str) -> str:
        """The repository's name now: a renamed one redirects (followed) and is announced once."""
        if repo not in self._paths:
            data = client.get_json(f"/repos/{repo}").data
            name = str(data.get("full_name") or repo) if isinstance(data, dict) else repo
            if name.lower() != repo.lower() and (repo, name) not in _ANNOUNCED_RENAMES:
                _ANNOUNCED_RENAMES.add((repo, name))
                log.warning("github repository %s was renamed to %s (HTTP 301, followed); update the "
                            "connection's repos. Record keys keep the configured name.", repo, name)
            self._paths[repo] = name
        return self._paths[repo]

    def _states(self, cursor) -> dict[str, dict]:
        if not cursor:
            return {}
        if "repos" in cursor:
            return {repo: dict(state or {}) for repo, state in cursor["repos"].items()}
        return {self.repos[0]: dict(cursor)}  # a cursor from the single-repository version

    def _cursor(self, states: dict[str, dict]) -> dict[str, Any]:
        return {"repos": {repo: states.get(repo, {}) for repo in self.repos}}

    def _budget(self) -> int:
        return MAX_CURSOR_BYTES // len(self.repos)  # every repo's memory shares one checkpoint

    def _id_version(self, repo: str, collection: str, item: Any) -> tuple[str, int]:
        updated = require(item, "updated_at", self.api, f"/repos/{repo}")
        return self._id(repo, collection, item), iso_to_ms(updated)

    def _id(self, repo: str, collection: str, item: Any) -> str:
        if collection == "issue_comment":
            return str(require(item, "id", self.api, f"/repos/{repo}/issues/comments"))
        return qualified_id(repo, require(item, "number", self.api, f"/repos/{repo}/{collection}"))

    def _observe(self, repo: str, collection: str, item: Any, source: str) -> Observation:
        object_id, version = self._id_version(repo, collection, item)
        return self.factory.make(collection, object_id, version, item, source=source)


def _repo_and_number(data: Any) -> str | None:
    """`owner/repo#n` of an issue from its html_url (`https://github.com/owner/repo/issues/n`)."""
    parts = str(data.get("html_url", "")).rstrip("/").split("/") if isinstance(data, dict) else []
    if len(parts) >= 4 and parts[-2] in ("issues", "pull"):
        return f"{parts[-4]}/{parts[-3]}#{parts[-1]}"
    return None


def _belongs_to(data: Any, repo: str) -> bool:
    """Whether an object's API url lies in `repo` (after a redirect, a transferred issue does not)."""
    url = str(data.get("url", "")) if isinstance(data, dict) else ""
    return f"/repos/{repo.lower()}/" in url.lower()
