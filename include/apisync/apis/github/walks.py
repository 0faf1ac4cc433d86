"""The three ways apisync walks a GitHub listing, each one that cannot skip an object.

GitHub paginates with page numbers behind its `Link` header (https://docs.github.com/en/rest/using-the-rest-api/
using-pagination-in-the-rest-api). A page-number walk over a MUTABLE order skips: an object updated mid-walk
jumps to the end, every later object moves back one place and one slips into a page already read (Airbyte
source-github and tap-github hit this; the simulator reproduces it: 4 of 80 PRs lost). So:

- `KeysetWalk` (issues, comments): `since` + `sort=updated&direction=asc`, re-queried after every page at
  the newest version emitted; only the first page of each query is read. When a whole page shares the
  `since` second (more ties than a page), it sweeps that `since` in `sort=created` order — an immutable
  key, so no page can shift — then continues after the sweep's start. Never follows page numbers of a
  mutable order. Its checkpoints resume at the next query's `since` (`KeysetPosition.resume_ms`), never
  past a version the sweep has not reached yet.
- `CreatedOrderWalk` (PR backfill): `/pulls?state=all&sort=created&direction=asc` by Link; PRs are never
  deleted, so the order only grows at its end. Changes made during the backfill are caught by incremental
  sync from the marker taken before it.
- `UpdatedDescWalk` (PR incremental): `/pulls?state=all&sort=updated&direction=desc` down to the cursor.
  Reviews, pushed commits and merges bump a PR's `updated_at`, not its issue's, so `/issues?since` misses
  them. In a descending walk a mid-walk update moves a PR to the front: later PRs move BACK a place
  (re-read, deduped), none is skipped; the moved PR is newer than the walk's start, so the next run has it.
  A burst larger than the dedupe memory costs duplicates, never a skip (see `keyset`).

Conditional requests: the first page of a poll carries `If-None-Match`; a 304 costs no rate limit
(https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api#use-conditional-requests-if-appropriate).
A 304 only means page 1 is unchanged: for the descending PR walk page 1 holds the newest PRs, so that is
"nothing new"; for the ascending keyset walk it is only when page 1 held the whole listing (see `pages`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from apisync.events import ms_to_iso
from apisync.http import ApiClient, MalformedResponseError
from apisync.sources.base import server_time_ms
from apisync.sources.keyset import KeysetPosition

IdVersion = Callable[[Any], tuple[str, int]]


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a GitHub list: items, the next page's URL, and whether it was a 304."""

    items: list[Any]
    next_url: str | None
    response: httpx.Response

    @property
    def not_modified(self) -> bool:
        return self.response.status_code == 304


def get_page(client: ApiClient, target: str, params: dict | None = None, etag: str | None = None) -> ListPage:
    """GET one list page, conditionally when `etag` is given."""
    result = client.get_json(target, params, {"If-None-Match": etag} if etag else None)
    if result.response.status_code == 304:
        return ListPage([], None, result.response)
    if not isinstance(result.data, list):
        raise MalformedResponseError("github", "GET", result.response.request.url.path, 200,
                                     "page is not a JSON array")
    link = result.response.links.get("next")
    return ListPage(result.data, link.get("url") if link else None, result.response)


@dataclass(slots=True)
class KeysetWalk:
    """Issues or comments of one repo, oldest change first; `pages()` yields the fresh items of each page."""

    client: ApiClient
    path: str  # /repos/o/r/issues or /repos/o/r/issues/comments
    base_params: dict
    position: KeysetPosition
    id_version: IdVersion
    page_size: int
    etag: str | None = None  # for the first query, if it repeats the last run's
    new_etag: tuple | None = None
    _sweep_started: int = 0

    def pages(self, since_ms: int) -> Iterator[list[Any]]:
        first = True
        while True:
            params = {**self.base_params, "since": ms_to_iso(since_ms), "sort": "updated", "direction": "asc",
                      "per_page": self.page_size}
            page = get_page(self.client, self.path, params, self.etag if first else None)
            if first and page.next_url is None and len(page.items) < self.page_size:
                # Only a first page that holds the whole listing with room to spare may answer "anything
                # new?": a change moves its object to the END of an ascending listing, so when the listing
                # has more pages, page 1 (and its ETag) stays the same and a 304 would hide the change.
                self.new_etag = (ms_to_iso(since_ms), page.response.headers.get("etag"))
            first = False
            if page.not_modified:
                return
            newest = max((self.id_version(item)[1] for item in page.items), default=since_ms)
            # Everything below the next query's `since` is read; after the last page, everything is.
            self.position.resume_ms = None if page.next_url is None else newest
            yield self._fresh(page.items)
            if page.next_url is None:
                return
            if newest > since_ms:
                since_ms = newest  # inclusive: the ties at `newest` are re-read and deduped
                continue
            # A whole page in the `since` second: sweep it in an order no update can shift. The sweep emits
            # newer versions before older ones, so its checkpoints resume at `since_ms` (`resume_ms`).
            yield from self._sweep(since_ms)
            since_ms = max(self._sweep_started, since_ms + 1000)

    def _sweep(self, since_ms: int) -> Iterator[list[Any]]:
        params = {**self.base_params, "since": ms_to_iso(since_ms), "sort": "created", "direction": "asc",
                  "per_page": self.page_size}
        page = get_page(self.client, self.path, params)
        self._sweep_started = server_time_ms(page.response, "github")
        while True:
            yield self._fresh(page.items)
            if page.next_url is None:
                return
            page = get_page(self.client, page.next_url)

    def _fresh(self, items: list[Any]) -> list[Any]:
        fresh = [item for item in items if self.position.is_new(*self.id_version(item), item)]
        for item in fresh:
            self.position.advance(*self.id_version(item), item)
        return fresh


@dataclass(slots=True)
class CreatedOrderWalk:
    """PR backfill of one repo by creation order; `state` is the next page's URL (resumable)."""

    client: ApiClient
    path: str
    page_size: int
    state: dict

    def pages(self) -> Iterator[list[Any]]:
        params = {"state": "all", "sort": "created", "direction": "asc", "per_page": self.page_size}
        target = self.state.get("next") or self.path
        while not self.state.get("done"):
            page = get_page(self.client, target, None if self.state.get("next") else params)
            self.state = {"done": page.next_url is None, "next": page.next_url}
            target = page.next_url
            yield page.items


@dataclass(slots=True)
class UpdatedDescWalk:
    """PR changes of one repo, newest first, down to `floor_ms`; the position moves only at the end."""

    client: ApiClient
    path: str
    position: KeysetPosition
    id_version: IdVersion
    page_size: int
    etag: str | None = None
    new_etag: str | None = None

    def pages(self, floor_ms: int) -> Iterator[list[Any]]:
        params = {"state": "all", "sort": "updated", "direction": "desc", "per_page": self.page_size}
        page = get_page(self.client, self.path, params, self.etag)
        # Page 1 of this query changes whenever any PR changes: its ETag is the cheapest "anything new?".
        self.new_etag = page.response.headers.get("etag") if not page.not_modified else self.etag
        while not page.not_modified:
            fresh = [item for item in page.items if self.id_version(item)[1] >= floor_ms
                     and self.position.is_new(*self.id_version(item), item)]
            for item in fresh:
                self.position.advance(*self.id_version(item), item)
            yield fresh
            older = [item for item in page.items if self.id_version(item)[1] < floor_ms]
            if older or page.next_url is None:
                return
            page = get_page(self.client, page.next_url)
