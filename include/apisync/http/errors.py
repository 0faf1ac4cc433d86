"""Errors raised by the HTTP layer: one line a person understands, never a secret.

`RetriableError` and `FatalError` here are the root families' HTTP members, so `except
apisync.errors.FatalError` catches an HTTP 401 too.
"""
from __future__ import annotations

from apisync import errors
from apisync.formats import shorten

_MAX_REASON = 200


class ApiError(errors.ApisyncError):
    """A request to a third-party API failed; str() is one line naming api, endpoint and status."""

    def __init__(
        self,
        api: str,
        method: str,
        endpoint: str,
        status: int | None,
        reason: str,
        *,
        params: str = "",
    ) -> None:
        self.api = api
        self.method = method
        self.endpoint = endpoint
        self.status = status
        self.reason = _one_line(reason)
        self.params = params
        super().__init__(str(self))

    def __str__(self) -> str:
        status = f"HTTP {self.status}" if self.status is not None else "no response"
        where = f"{self.api} {self.method} {self.endpoint}"
        if self.params:
            where += f" ({self.params})"
        return f"{where} failed: {status}: {self.reason}"

    def __reduce__(self):
        # Keep the error picklable (multiprocessing, Airflow XCom of exceptions).
        return (
            _rebuild,
            (type(self), self.api, self.method, self.endpoint, self.status, self.reason, self.params),
        )


class RetriableError(ApiError, errors.RetriableError):
    """Transient failure: the same request may succeed later (5xx, timeouts, rate limits)."""


class FatalError(ApiError, errors.FatalError):
    """Permanent failure: repeating the request cannot help (bad auth, not found, bad request)."""


class RateLimitedError(RetriableError):
    """The API said to wait longer than this client is willing to block."""


class MalformedResponseError(RetriableError):
    """The API answered with a body that is not the JSON it promised, even after retries."""


class PaginationLoopError(RetriableError):
    """A paginator was handed the same cursor twice in a row; resuming from a checkpoint may help."""


def _one_line(text: str) -> str:
    """Collapse whitespace and cap length so errors stay one readable line."""
    return shorten(" ".join(str(text).split()), _MAX_REASON)


def _rebuild(cls, api, method, endpoint, status, reason, params):
    return cls(api, method, endpoint, status, reason, params=params)
