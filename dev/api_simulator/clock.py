"""The simulator's server clock: wall time plus an admin-controlled offset."""
from __future__ import annotations

import time
from collections.abc import Callable


class Clock:
    """Server time in epoch seconds; `advance` moves it forward without sleeping."""

    def __init__(self, time_fn: Callable[[], float] = time.time, start: float | None = None) -> None:
        self._time_fn = time_fn
        self._offset = 0.0 if start is None else start - time_fn()

    def now(self) -> float:
        """Current server time, epoch seconds (float)."""
        return self._time_fn() + self._offset

    def now_s(self) -> int:
        """Current server time truncated to whole seconds, like the APIs' stamps."""
        return int(self.now())

    def advance(self, seconds: float) -> float:
        """Move the clock forward and return the new time."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += seconds
        return self.now()
