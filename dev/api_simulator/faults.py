"""Fault injection switched at run time through /_admin/faults, scoped by API and path prefix."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import count
from typing import Any

from .config import APIS

# Applied by the gateway before/after the handler runs.
# `hold` keeps each matching request waiting until the fault is cleared (at most delay_s), then serves it:
# a test holds an API's tasks in flight until it has seen them overlap, instead of hoping they do.
TRANSPORT_KINDS = ("http_500", "slow", "timeout", "malformed_json", "truncated", "reset", "rate_limited", "hold",
                   "refused")
# Applied inside handlers, where the page or object is known.
HANDLER_KINDS = ("repeat_cursor", "delete_between_list_and_fetch")
DEFAULT_DELAY = {"slow": 2.0, "timeout": 30.0, "hold": 10.0}  # a hold stays below clients' read timeouts
# `rate_limited` answers as the API's own limiter does (gateway.limit_error), for the named limit:
# Stripe "rate" (429, no Retry-After), GitHub "secondary" (429 + retry-after) or "primary" (403 +
# x-ratelimit-remaining 0 and x-ratelimit-reset), Salesforce "daily" (403 REQUEST_LIMIT_EXCEEDED).
# HubSpot "ten_secondly" (429 TEN_SECONDLY_ROLLING) or "secondly" (429 SECONDLY, the search limit).
# `refused` answers a 4xx the API gives for one object however often it is asked: a key without the
# permission for it (Stripe restricted keys and HubSpot scopes: 403), a repository blocked for legal
# reasons (GitHub: 451), a request the API cannot take for it (400). Scope it to one object with `path`.
REFUSED_STATUSES = (400, 403, 451)
RATE_LIMITS = {"stripe": ("rate",), "github": ("secondary", "primary"), "salesforce": ("daily",),
               "hubspot": ("ten_secondly", "secondly")}


class FaultError(ValueError):
    """A fault spec the admin API refuses."""


@dataclass(slots=True)
class Fault:
    """One active fault; `remaining` None means until cleared."""

    id: str
    kind: str
    api: str | None
    path_prefix: str | None
    remaining: int | None
    delay_s: float
    status: int
    limit: str | None = None  # rate_limited: which of the API's limits answers
    retry_after_s: int = 1  # rate_limited: GitHub's retry-after, or how far away x-ratelimit-reset is
    path: str | None = None  # exactly this path (one object), where path_prefix would also cover its siblings

    def matches(self, api: str, path: str) -> bool:
        """Whether this fault covers a request."""
        return ((self.api is None or self.api == api) and (not self.path_prefix or path.startswith(self.path_prefix))
                and (self.path is None or path == self.path))

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the admin API."""
        return {"id": self.id, "kind": self.kind, "api": self.api, "path_prefix": self.path_prefix,
                "count": self.remaining, "delay_s": self.delay_s, "status": self.status, "limit": self.limit,
                "retry_after_s": self.retry_after_s, "path": self.path}


class Faults:
    """The active faults, consumed in the order they were added."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = count(1)

    def add(self, spec: dict[str, Any]) -> Fault:
        """Validate and activate a fault spec."""
        kind = spec.get("kind")
        if kind not in TRANSPORT_KINDS + HANDLER_KINDS:
            raise FaultError(f"unknown fault kind {kind!r}; use one of {', '.join(TRANSPORT_KINDS + HANDLER_KINDS)}")
        api = spec.get("api")
        if api is not None and api not in APIS:
            raise FaultError(f"unknown api {api!r}")
        remaining = spec.get("count", 1)
        if remaining is not None and (not isinstance(remaining, int) or remaining < 1):
            raise FaultError("count must be a positive integer or null")
        delay = float(spec.get("delay_s") or DEFAULT_DELAY.get(kind, 0.0))
        status = _status(spec, kind)
        path = spec.get("path")
        if path is not None and not (isinstance(path, str) and path.startswith("/")):
            raise FaultError("path must be an absolute request path such as /v1/customers/cus_123")
        fault = Fault(f"flt_{next(self._ids)}", kind, api, spec.get("path_prefix"), remaining, delay, status,
                      path=path)
        if kind == "rate_limited":
            fault.limit, fault.retry_after_s = _rate_limit(spec, api)
        self._faults.append(fault)
        return fault

    def take(self, api: str, path: str, kinds: tuple[str, ...]) -> Fault | None:
        """Consume one use of the first active fault of `kinds` matching the request."""
        for fault in self._faults:
            if fault.kind in kinds and fault.matches(api, path):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    def is_active(self, fault: Fault) -> bool:
        """Whether `fault` is still in force (not cleared, not used up)."""
        return any(f is fault for f in self._faults)

    def active(self) -> list[dict[str, Any]]:
        """All active faults as JSON."""
        return [f.as_dict() for f in self._faults]

    def clear(self) -> None:
        """Remove every fault."""
        self._faults.clear()


def _status(spec: dict[str, Any], kind: str) -> int:
    """The answer's status: a 5xx for http_500 (default 500), one of REFUSED_STATUSES for refused (default 403)."""
    if kind == "refused":
        status = int(spec.get("status") or 403)
        if status not in REFUSED_STATUSES:
            raise FaultError(f"a refused fault answers one of {', '.join(map(str, REFUSED_STATUSES))}")
        return status
    status = int(spec.get("status") or 500)
    if not 500 <= status <= 599:
        raise FaultError("status must be a 5xx code")
    return status


def _rate_limit(spec: dict[str, Any], api: str | None) -> tuple[str, int]:
    """Validate a rate_limited spec: one API, one of its limits (the first by default), retry_after_s >= 1."""
    if api is None:
        raise FaultError("a rate_limited fault needs an api: each API answers its limits differently")
    limit = spec.get("limit") or RATE_LIMITS[api][0]
    if limit not in RATE_LIMITS[api]:
        raise FaultError(f"{api} has no {limit!r} limit; use one of {', '.join(RATE_LIMITS[api])}")
    retry_after = spec.get("retry_after_s", 1)
    if not isinstance(retry_after, int) or retry_after < 1:
        raise FaultError("retry_after_s must be a positive integer")
    return limit, retry_after
