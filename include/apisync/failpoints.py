"""Named points where the fault suite stops or kills this very process, to prove recovery from there.

`APISYNC_FAILPOINTS="page.after_produce=kill@2,normalizer.fenced=stop"` makes the second pass through
`failpoint("page.after_produce")` SIGKILL the process, and the first pass through
`failpoint("normalizer.fenced")` SIGSTOP it (a zombie, resumed later by the test). Unset, a failpoint is
one dictionary lookup. Why not a mock: the suite runs the real processes against real Kafka and Redis,
and a crash must happen exactly between two real effects (say, Kafka produce and commit), which only
the process itself can time. (FoundationDB's buggify and TiKV's fail-rs do the same.)
"""

from __future__ import annotations

import os
import signal

_SIGNALS = {"kill": signal.SIGKILL, "stop": signal.SIGSTOP}


def _parse(spec: str) -> dict[str, tuple[str, int]]:
    points = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, action = item.partition("=")
        action, _, nth = action.partition("@")
        if action not in _SIGNALS:
            raise ValueError(f"APISYNC_FAILPOINTS: {name!r} needs kill or stop, got {action!r}")
        points[name] = (action, int(nth or 1))
    return points


_ARMED = _parse(os.environ.get("APISYNC_FAILPOINTS", ""))
_HITS: dict[str, int] = {}


def failpoint(name: str) -> None:
    """Stop or kill this process here if the environment armed this point for this pass."""
    if name not in _ARMED:
        return
    _HITS[name] = _HITS.get(name, 0) + 1
    action, nth = _ARMED[name]
    if _HITS[name] == nth:
        os.kill(os.getpid(), _SIGNALS[action])
