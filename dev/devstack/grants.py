"""Checking a rate limiter from outside: the most grants that fell inside any one window.

Shared by the rate-limit tests (one process, several workers, the Celery scale-out tier) and `make bench`.
"""

from __future__ import annotations

from collections.abc import Iterable


def max_in_window(times_s: Iterable[float], window_s: float = 1.0) -> int:
    """Most grants inside any closed window [t, t + window] (integer microseconds, no float fuzz)."""
    us = sorted(round(t * 1_000_000) for t in times_s)
    width, best, j = round(window_s * 1_000_000), 0, 0
    for i in range(len(us)):
        while us[i] - us[j] > width:
            j += 1
        best = max(best, i - j + 1)
    return best
