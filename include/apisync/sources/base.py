"""What every source module provides: pages of observations plus the cursor that follows them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from apisync import errors
from apisync.events import Observation
from apisync.formats import http_date_s, iso_utc
from apisync.http import ApiClient, FatalError, MalformedResponseError


@dataclass(frozen=True, slots=True)
class Batch:
    """One page worth of observations and the cursor to checkpoint once they are durable in Kafka."""

    observations: list[Observation]
    cursor: dict[str, Any]
    done: bool = False
    total: int | None = None  # objects in the whole listing, when the API says (for an ETA)
    note: str = ""  # something the operator must hear about (e.g. a gap in a change feed)


@dataclass(frozen=True, slots=True)
class Gone:
    """`Source.fetch`'s answer for an object the API no longer has here, and why (for the deleted event)."""

    reason: str


class UnavailablePart(FatalError):
    """The API refuses one part of a source now (one repository of several: deleted, private, SSO
    enforced), while the other parts answer. `params` names the part."""

    def __str__(self) -> str:
        return (f"{self.api} {self.params} is unavailable: HTTP {self.status}: {self.reason} "
                f"({self.method} {self.endpoint})")

    @classmethod
    def of(cls, part: str, error: FatalError) -> UnavailablePart:
        """The refusal `error` as the unavailability of `part`."""
        return cls(error.api, error.method, error.endpoint, error.status, error.reason, params=part)


class PartsUnavailable(errors.RetriableError):
    """Raised by a walk once it finished every part it could read: one line per part the API refused.

    `may_hold(object_id)` says whether an object may belong to one of those parts, so a delete sweep
    leaves it alone (it was not listed because its part was not, not because it is gone).
    """

    def __init__(self, lines: list[str], may_hold: Callable[[str], bool] = lambda _object_id: True) -> None:
        self.lines, self.may_hold = list(lines), may_hold
        super().__init__("; ".join(self.lines))


def gone_reason(fetched: Observation | Gone | None, default: str) -> str | None:
    """None while the object exists; else why it is gone (`default` when the source did not say)."""
    if isinstance(fetched, Observation):
        return None
    return fetched.reason if isinstance(fetched, Gone) else default


class Source(Protocol):
    """One API. Cursors are plain JSON dicts built only from server-side values."""

    api: str
    collections: tuple[str, ...]

    def incremental_start(self, client: ApiClient, collection: str) -> dict[str, Any]:
        """Where incremental sync must begin, taken BEFORE a backfill starts so nothing is missed."""

    def backfill(self, client: ApiClient, collection: str, cursor: Mapping[str, Any] | None,
                 start_date: str | None) -> Iterator[Batch]:
        """Every object, page by page, resuming after `cursor`."""

    def incremental(self, client: ApiClient, collection: str, cursor: Mapping[str, Any]) -> Iterator[Batch]:
        """Changes after `cursor`, oldest first, page by page."""

    def list_ids(self, client: ApiClient, collection: str) -> Iterator[str]:
        """Every live object id (for delete reconciliation)."""

    def fetch(self, client: ApiClient, collection: str, object_id: str) -> Observation | Gone | None:
        """One object now; None (or Gone, saying why) if the API says it no longer exists."""


@dataclass(slots=True)
class ObservationFactory:
    """Builds observations of one API with a shared `synced_at` clock."""

    api: str
    clock: Any = field(default=lambda: datetime.now(UTC))

    def make(self, collection: str, object_id: Any, version: int, data: Mapping[str, Any] | None, *,
             source: str, deleted: bool = False, reason: str | None = None) -> Observation:
        synced_at = iso_utc(self.clock())
        return Observation(self.api, collection, str(object_id), int(version), source, synced_at,
                           dict(data) if data is not None else None, deleted, reason=reason)


def server_time_ms(response: httpx.Response, api: str) -> int:
    """The API server's clock from its `Date` header (never the worker's clock)."""
    seconds = http_date_s(response.headers.get("date"))
    if seconds is None:
        raise MalformedResponseError(api, "GET", response.request.url.path, response.status_code,
                                     "response has no readable Date header to take the server time from")
    return int(seconds * 1000)


def require(obj: Any, field_name: str, api: str, endpoint: str) -> Any:
    """A field every object of this listing must carry; a missing one is a malformed page."""
    if not isinstance(obj, Mapping) or obj.get(field_name) in (None, ""):
        raise MalformedResponseError(api, "GET", endpoint, 200, f"an object on the page has no {field_name!r}")
    return obj[field_name]
