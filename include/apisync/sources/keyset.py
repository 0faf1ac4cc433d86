"""A (version, id) position for walking a listing ordered by last change, with overlap dedupe.

Each run restarts a little before the saved version (the lookback: late commits may carry an older
stamp), and `recent` remembers which (id, version) pairs inside that window were already emitted,
so the overlap and same-second ties at page boundaries are neither lost nor emitted twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from apisync.events import iso_to_ms, ms_to_iso


@dataclass(slots=True)
class KeysetPosition:
    """The newest (version, id) emitted so far and the recently emitted versions per id."""

    version: int = 0
    last_id: str = ""
    recent: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_cursor(cls, cursor: Mapping[str, Any] | None) -> KeysetPosition:
        if not cursor or not cursor.get("since"):
            return cls()
        return cls(iso_to_ms(cursor["since"]), str(cursor.get("last_id") or ""),
                   {str(k): int(v) for k, v in (cursor.get("recent") or {}).items()})

    def to_cursor(self, lookback_ms: int = 0) -> dict[str, Any]:
        """The JSON cursor; `recent` keeps only what a restart `lookback_ms` earlier can re-read."""
        floor = self.version - lookback_ms
        recent = {k: v for k, v in self.recent.items() if v >= floor}
        return {"since": ms_to_iso(self.version), "last_id": self.last_id, "recent": recent}

    def is_new(self, object_id: str, version: int) -> bool:
        """False for an (id, version) already emitted in the overlap window."""
        return self.recent.get(object_id) != version

    def advance(self, object_id: str, version: int) -> None:
        """Record an emitted object and move the position forward (never back)."""
        self.recent[object_id] = version
        if (version, object_id) > (self.version, self.last_id):
            self.version, self.last_id = version, object_id
