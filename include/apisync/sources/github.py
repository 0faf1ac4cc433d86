"""GitHub: issues and comments walk `since` + sort=updated ascending as a keyset; pull requests
backfill from /pulls and follow their changes through /issues (GitHub lists PRs there too).

Each page restarts the query at the newest `updated_at` seen instead of following page numbers:
page numbers shift when an object is updated mid-walk (it jumps to the end), which skips another
object; a keyset on `since` cannot skip. `since` is inclusive, so same-second ties are re-read and
dropped by the position's `recent` memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from apisync.events import Observation, iso_to_ms, ms_to_iso
from apisync.http import ApiClient, FatalError, HeaderLinkPaginator, iterate_pages
from apisync.sources.base import Batch, ObservationFactory, require, server_time_ms
from apisync.sources.keyset import KeysetPosition

PER_PAGE = 100
LOOKBACK_MS = 60_000


class GitHubSource:
    """One repository (`owner/name`) of GitHub."""

    api = "github"
    collections = ("issue", "pull_request", "issue_comment")

    def __init__(self, repo: str, factory: ObservationFactory | None = None, lookback_ms: int = LOOKBACK_MS,
                 page_size: int = PER_PAGE) -> None:
        if repo.count("/") != 1:
            raise ValueError(f"github repo must look like owner/name, got {repo!r}")
        self.repo = repo
        self.factory = factory or ObservationFactory(self.api)
        self.lookback_ms = lookback_ms
        self.page_size = page_size

    def incremental_start(self, client: ApiClient, collection: str) -> dict[str, Any]:
        response = client.get(self._path("issues"), {"per_page": 1})
        return KeysetPosition(server_time_ms(response, self.api)).to_cursor()

    def backfill(self, client, collection, cursor, start_date) -> Iterator[Batch]:
        if collection == "pull_request":
            params = {"state": "all", "sort": "updated", "direction": "asc", "per_page": self.page_size}
            paginator = HeaderLinkPaginator(self._path("pulls"), params, state=cursor)
            for page in iterate_pages(client, paginator):
                observations = [self._observe("pull_request", pr, "backfill") for pr in page.records]
                yield Batch(observations, page.state, done=paginator.done)
            return
        position = KeysetPosition.from_cursor(cursor)
        if not cursor and start_date:
            position.version = iso_to_ms(start_date if "T" in start_date else f"{start_date}T00:00:00+00:00")
        yield from self._walk(client, collection, position, position.version, "backfill")

    def incremental(self, client, collection, cursor) -> Iterator[Batch]:
        position = KeysetPosition.from_cursor(cursor)
        yield from self._walk(client, collection, position, max(0, position.version - self.lookback_ms), "poll")

    def list_ids(self, client, collection) -> Iterator[str]:
        path, params = {
            "issue": (self._path("issues"), {"state": "all", "per_page": self.page_size}),
            "pull_request": (self._path("pulls"), {"state": "all", "per_page": self.page_size}),
            "issue_comment": (self._path("issues/comments"), {"per_page": self.page_size}),
        }[collection]
        for page in iterate_pages(client, HeaderLinkPaginator(path, params)):
            for item in page.records:
                if collection == "issue" and "pull_request" in item:
                    continue
                yield self._id(collection, item)

    def fetch(self, client, collection, object_id) -> Observation | None:
        path = {"issue": "issues", "pull_request": "pulls", "issue_comment": "issues/comments"}[collection]
        try:
            data = client.get_json(self._path(f"{path}/{object_id}")).data
        except FatalError as error:
            if error.status in (404, 410):  # GitHub answers 410 Gone for deleted issues
                return None
            raise
        return self._observe(collection, data, "reconcile")

    def _walk(self, client, collection, position: KeysetPosition, since_ms: int, source: str) -> Iterator[Batch]:
        """Keyset pages: after every page with news, restart the query at the newest version seen."""
        listing = "issues/comments" if collection == "issue_comment" else "issues"
        while True:
            params = {"since": ms_to_iso(since_ms), "sort": "updated", "direction": "asc", "per_page": self.page_size}
            if listing == "issues":
                params["state"] = "all"
            paginator = HeaderLinkPaginator(self._path(listing), params)
            batch = None
            for page in iterate_pages(client, paginator):
                fresh = [item for item in page.records if position.is_new(*self._id_version(collection, item), item)]
                if fresh or paginator.done:
                    batch = Batch(self._observe_page(client, collection, fresh, position, source),
                                  position.to_cursor(self.lookback_ms), done=paginator.done)
                    break
            if batch is None:
                return
            yield batch
            if batch.done:
                return
            since_ms = position.version

    def _observe_page(self, client, collection, items, position: KeysetPosition, source) -> list[Observation]:
        observations = []
        for item in items:
            object_id, version = self._id_version(collection, item)
            position.advance(object_id, version, item)
            is_pr = "pull_request" in item
            if collection == "issue" and not is_pr:
                observations.append(self._observe("issue", item, source))
            elif collection == "pull_request" and is_pr:
                # /issues shows only the issue facet of a PR: fetch the full pull request.
                full = self.fetch(client, "pull_request", object_id)
                if full is not None:
                    observations.append(self._observe("pull_request", full.data, source))
            elif collection == "issue_comment":
                observations.append(self._observe("issue_comment", item, source))
        return observations

    def _id_version(self, collection: str, item: Any) -> tuple[str, int]:
        listing = "issues/comments" if collection == "issue_comment" else "issues"
        updated = require(item, "updated_at", self.api, self._path(listing))
        return self._id(collection, item), iso_to_ms(updated)

    def _id(self, collection: str, item: Any) -> str:
        field = "id" if collection == "issue_comment" else "number"
        return str(require(item, field, self.api, self._path(collection)))

    def _observe(self, collection: str, item: Any, source: str) -> Observation:
        object_id, version = self._id_version(collection, item)
        return self.factory.make(collection, object_id, version, item, source=source)

    def _path(self, rest: str) -> str:
        return f"/repos/{self.repo}/{rest}"
