"""Progress lines for task logs: pages, records, records/s, cursor, rate-limit wait and ETA."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from apisync.formats import shorten

log = logging.getLogger("apisync.airflow.progress")

_MAX_CURSOR = 120  # a cursor is a small dict; cap it so one odd value cannot flood the log


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _cursor(cursor: Any) -> str:
    if isinstance(cursor, Mapping):
        text = ",".join(f"{k}={v}" for k, v in cursor.items())
    else:
        text = "-" if cursor is None else str(cursor)
    return shorten(text, _MAX_CURSOR)


def progress_line(label: str, progress: Any) -> str:
    """One readable line from an apisync.sync.Progress."""
    return (f"{label} progress: pages={progress.pages} records={progress.records} "
            f"rate={progress.records_per_s:.1f}/s cursor={_cursor(progress.cursor)} "
            f"rate_limit_wait={progress.rate_limit_wait_s:.1f}s eta={_duration(progress.eta_s)}")


class ProgressLogger:
    """on_progress callback that logs at most one line per interval (and always the first)."""

    def __init__(self, label: str, interval_s: float = 5.0, logger: logging.Logger = log,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.interval_s = interval_s
        self._log = logger
        self._clock = clock
        self._last: float | None = None
        self.lines = 0

    def __call__(self, progress: Any) -> None:
        now = self._clock()
        if self._last is not None and now - self._last < self.interval_s:
            return
        self._last = now
        self.lines += 1
        self._log.info("%s", progress_line(self.label, progress))


def summary_line(summary: Mapping[str, Any]) -> str:
    """The per-run summary as one line (the same dict goes to XCom)."""
    return " ".join(f"{key}={value}" for key, value in summary.items())
