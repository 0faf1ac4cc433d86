"""Progress reports during a run and the small summary left behind (never payloads)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from apisync.errors import RetriableError


@dataclass(frozen=True, slots=True)
class Progress:
    """What a long run has done so far; the Airflow operator logs one line per report."""

    pages: int
    records: int
    records_per_s: float
    cursor: Any
    rate_limit_wait_s: float
    eta_s: float | None = None

    def line(self) -> str:
        eta = f", ETA {self.eta_s:.0f}s" if self.eta_s is not None else ""
        return (f"{self.pages} pages, {self.records} records, {self.records_per_s:.1f} records/s, "
                f"waited {self.rate_limit_wait_s:.1f}s on rate limits{eta}; cursor {self.cursor}")


@dataclass(slots=True)
class RunSummary:
    """One run's counts and cursors; small enough for an XCom."""

    api: str
    collection: str
    job: str
    pages: int = 0
    records: int = 0
    deletes: int = 0
    cursor_before: Any = None
    cursor_after: Any = None
    seconds: float = 0.0
    rate_limit_wait_s: float = 0.0
    lag_s: float | None = None  # age of the newest change synced in this run; None when nothing changed
    note: str = ""
    # Parts of the source the API refused (one line each): everything else was synced, then the run failed.
    unavailable: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class IncompleteRun(RetriableError):
    """A run that synced every part of the source that answered, then failed for the parts that did not.

    Not fatal: Airflow retries it (a repository whose access comes back is synced by a retry) and
    alerts when the tries are used up. `summary` is the run's summary, `unavailable` filled in.
    """

    def __init__(self, summary: RunSummary) -> None:
        self.summary = summary
        super().__init__(f"{summary.api} {summary.collection} {summary.job}: the rest is synced, but "
                         f"{'; '.join(summary.unavailable)}")


def incomplete(summary: RunSummary, lines: list[str]) -> IncompleteRun:
    """Record the unavailable parts in `summary` (and its note) and return the error that ends the run."""
    summary.unavailable = list(lines)
    summary.note = "; ".join(filter(None, (summary.note, f"unavailable: {'; '.join(lines)}")))
    return IncompleteRun(summary)


@dataclass(slots=True)
class ProgressTracker:
    """Accumulates pages into a RunSummary and reports Progress through a callback."""

    summary: RunSummary
    on_progress: Callable[[Progress], None] | None = None
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def page(self, records: int, deletes: int, cursor: Any, waited_s: float, total: int | None = None) -> None:
        s = self.summary
        s.pages, s.records, s.deletes = s.pages + 1, s.records + records, s.deletes + deletes
        s.cursor_after, s.rate_limit_wait_s = cursor, waited_s
        s.seconds = self.clock() - self.started
        rate = s.records / s.seconds if s.seconds > 0 else 0.0
        eta = (total - s.records) / rate if total and rate > 0 and total > s.records else None
        if self.on_progress:
            self.on_progress(Progress(s.pages, s.records, rate, short_cursor(cursor), waited_s, eta))


_MEMORY = ("recent", "incremental_start", "seen", "ids_at_created")


def short_cursor(cursor: Any) -> Any:
    """Only the position: cursors also carry dedupe memory and the incremental hand-over point."""
    if isinstance(cursor, dict):
        return {k: short_cursor(v) for k, v in cursor.items() if k not in _MEMORY}
    return cursor
