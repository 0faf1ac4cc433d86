"""One small paginator per API style, chosen explicitly; each exposes a resumable state dict.

Contract: `first_request()` gives the request for the page the state points at; after fetching
it, `advance(page)` moves the state past that page and returns the next request (or None).
`state` is a plain dict to checkpoint once a page is durable; `Paginator(..., state=saved)`
resumes exactly there. A cursor handed back twice in a row raises PaginationLoopError.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from apisync.http.errors import MalformedResponseError, PaginationLoopError


@dataclass(frozen=True, slots=True)
class PageRequest:
    """Where to GET the next page: a path or absolute URL plus query params."""

    target: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Page:
    """One fetched page: its records, the raw response, and the state to checkpoint after it."""

    records: list[Any]
    response: httpx.Response
    state: dict[str, Any]


class Paginator(ABC):
    """Base: holds the resumable state, walks pages, detects repeating cursors."""

    def __init__(self, api: str, path: str, params: Mapping[str, Any] | None = None,
                 *, state: Mapping[str, Any] | None = None) -> None:
        self.api, self.path, self.params = api, path, dict(params or {})
        self._state: dict[str, Any] = dict(state or {"done": False})

    @property
    def state(self) -> dict[str, Any]:
        """A copy of the resumable position (JSON-serialisable)."""
        return dict(self._state)

    @property
    def done(self) -> bool:
        return bool(self._state.get("done"))

    def first_request(self) -> PageRequest | None:
        """The request for the page the current state points at (None when finished)."""
        return None if self.done else self._request_for_state()

    def advance(self, response: httpx.Response, data: Any) -> PageRequest | None:
        """Move past the page just fetched; return the next request or None at the end."""
        cursor = self._next_cursor(response, data)
        if cursor is None:
            self._state = {"done": True}
            return None
        if cursor == self._state.get("cursor"):
            raise PaginationLoopError(self.api, "GET", self.path, response.status_code,
                                      f"API returned the same page cursor {cursor!r} twice in a row")
        self._state = {"done": False, "cursor": cursor}
        return self._request_for_state()

    @abstractmethod
    def records(self, data: Any) -> list[Any]:
        """The objects on one decoded page."""

    @abstractmethod
    def _next_cursor(self, response: httpx.Response, data: Any) -> str | None:
        """The cursor for the page after this one, or None if this was the last."""

    @abstractmethod
    def _request_for_state(self) -> PageRequest:
        """Build the request for the current state."""

    def _malformed(self, response: httpx.Response, what: str) -> MalformedResponseError:
        return MalformedResponseError(self.api, "GET", response.request.url.path,
                                      response.status_code, f"page {what}")


class StartingAfterPaginator(Paginator):
    """Cursor lists: `limit`, `starting_after` = last id of the page, `has_more`."""

    def __init__(self, path: str, params: Mapping[str, Any] | None = None, *, limit: int = 100,
                 state: Mapping[str, Any] | None = None, api: str = "") -> None:
        super().__init__(api, path, {**(params or {}), "limit": limit}, state=state)

    def records(self, data: Any) -> list[Any]:
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise MalformedResponseError(self.api, "GET", self.path, None, "list page has no data array")
        return data["data"]

    def _next_cursor(self, response: httpx.Response, data: Any) -> str | None:
        items = self.records(data)
        if not data.get("has_more"):
            return None
        if not items or "id" not in items[-1]:
            raise self._malformed(response, "says has_more but its last object has no id")
        return str(items[-1]["id"])

    def _request_for_state(self) -> PageRequest:
        cursor = self._state.get("cursor")
        params = {**self.params, "starting_after": cursor} if cursor else dict(self.params)
        return PageRequest(self.path, params)


class HeaderLinkPaginator(Paginator):
    """RFC 8288 links: follow `Link: <url>; rel="next"` until it is absent."""

    def __init__(self, path: str, params: Mapping[str, Any] | None = None, *,
                 state: Mapping[str, Any] | None = None, api: str = "",
                 records_key: str | None = None) -> None:
        super().__init__(api, path, params, state=state)
        self.records_key = records_key

    def records(self, data: Any) -> list[Any]:
        items = data.get(self.records_key) if self.records_key and isinstance(data, dict) else data
        if not isinstance(items, list):
            raise MalformedResponseError(self.api, "GET", self.path, None, "page is not a JSON array")
        return items

    def _next_cursor(self, response: httpx.Response, data: Any) -> str | None:
        link = response.links.get("next")
        return link.get("url") if link else None

    def _request_for_state(self) -> PageRequest:
        cursor = self._state.get("cursor")
        # The next URL already carries every query parameter; adding params would duplicate them.
        return PageRequest(cursor, {}) if cursor else PageRequest(self.path, dict(self.params))


class NextRecordsUrlPaginator(Paginator):
    """Query results: follow the body's `nextRecordsUrl` until `done` is true."""

    def __init__(self, path: str, params: Mapping[str, Any] | None = None, *,
                 state: Mapping[str, Any] | None = None, api: str = "") -> None:
        super().__init__(api, path, params, state=state)

    def records(self, data: Any) -> list[Any]:
        if not isinstance(data, dict) or not isinstance(data.get("records"), list):
            raise MalformedResponseError(self.api, "GET", self.path, None, "query page has no records array")
        return data["records"]

    def _next_cursor(self, response: httpx.Response, data: Any) -> str | None:
        self.records(data)
        if data.get("done", True):
            return None
        url = data.get("nextRecordsUrl")
        if not url:
            raise self._malformed(response, "says done=false but has no nextRecordsUrl")
        return str(url)

    def _request_for_state(self) -> PageRequest:
        cursor = self._state.get("cursor")
        return PageRequest(cursor, {}) if cursor else PageRequest(self.path, dict(self.params))


def iterate_pages(client, paginator: Paginator) -> Iterator[Page]:
    """Fetch page after page; each Page carries the state to checkpoint once it is durable."""
    request = paginator.first_request()
    while request is not None:
        result = client.get_json(request.target, params=request.params or None)
        records = paginator.records(result.data)
        request = paginator.advance(result.response, result.data)
        yield Page(records, result.response, paginator.state)
