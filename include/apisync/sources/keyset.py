"""A (version, id) position for walking a listing ordered by last change, with overlap dedupe.

Each run restarts a little before the saved version (the lookback: late commits may carry an older
stamp), and `recent` remembers which (id, version, content) inside that window were already emitted,
so the overlap and same-second ties at page boundaries are neither lost nor emitted twice. Content
counts too: stamps are whole seconds, so an update and a delete of one object can share a version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from apisync.events import iso_to_ms, ms_to_iso


def digest(content: Any) -> str:
    """A 64-bit fingerprint of an object's content; a collision (which would hide a change) is negligible."""
    return hashlib.blake2b(orjson.dumps(content, option=orjson.OPT_SORT_KEYS), digest_size=8).hexdigest()


@dataclass(slots=True)
class KeysetPosition:
    """The newest (version, id) emitted so far and the recently emitted versions per id."""

    version: int = 0
    last_id: str = ""
    recent: dict[str, list] = field(default_factory=dict)  # id -> [version, content digest]

    @classmethod
    def from_cursor(cls, cursor: Mapping[str, Any] | None) -> KeysetPosition:
        if not cursor or not cursor.get("since"):
            return cls()
        return cls(iso_to_ms(cursor["since"]), str(cursor.get("last_id") or ""),
                   {str(k): list(v) for k, v in (cursor.get("recent") or {}).items()})

    def to_cursor(self, lookback_ms: int = 0) -> dict[str, Any]:
        """The JSON cursor; `recent` keeps only what a restart `lookback_ms` earlier can re-read."""
        floor = self.version - lookback_ms
        recent = {k: v for k, v in self.recent.items() if v[0] >= floor}
        return {"since": ms_to_iso(self.version), "last_id": self.last_id, "recent": recent}

    def is_new(self, object_id: str, version: int, content: Any) -> bool:
        """False for an object already emitted in the overlap window with this version and content."""
        return self.recent.get(object_id) != [version, digest(content)]

    def advance(self, object_id: str, version: int, content: Any) -> None:
        """Record an emitted object and move the position forward (never back)."""
        self.recent[object_id] = [version, digest(content)]
        if (version, object_id) > (self.version, self.last_id):
            self.version, self.last_id = version, object_id
