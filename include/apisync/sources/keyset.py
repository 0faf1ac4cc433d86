"""A (version, id) position for walking a listing ordered by last change, with bounded overlap dedupe.

Each run restarts a little before the saved version (the lookback: late commits may carry an older
stamp), and `recent` remembers which (version, id, content) inside that window were already emitted,
so the overlap and same-second ties at page boundaries are neither lost nor emitted twice. Content
counts too: stamps are whole seconds, so an update and a delete of one object can share a version.

The memory is bounded (issue 11): at most `max_recent` entries in a run and `max_bytes` of JSON in the
checkpoint, which must stay far below Kafka's 1 MB message limit. When a mass update puts more objects
in one window, the oldest entries in (version, id) order are forgotten and `forgotten` moves up to the
newest of them: anything re-read at or below it was emitted before (it is at or below the position),
so it is skipped. That shrinks the effective lookback for late commits during a mass update, never
duplicates an object, and never skips one the walk has not passed yet.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from apisync.events import iso_to_ms, ms_to_iso

MAX_RECENT = 2_000
MAX_CURSOR_BYTES = 48_000  # JSON of `recent`; the whole checkpoint stays under 64 KB
Mark = tuple[int, str]  # (version, id): the walk order


def digest(content: Any) -> str:
    """A 32-bit fingerprint of an object's content: it only tells two contents of ONE (id, version) apart."""
    return hashlib.blake2b(orjson.dumps(content, option=orjson.OPT_SORT_KEYS), digest_size=4).hexdigest()


@dataclass(slots=True)
class KeysetPosition:
    """The newest (version, id) emitted so far and the recently emitted (version, id, digest) entries."""

    version: int = 0
    last_id: str = ""
    recent: dict[str, list] = field(default_factory=dict)  # id -> [version, content digest]
    forgotten: Mark | None = None  # entries at or below this mark were dropped to bound memory
    max_recent: int = MAX_RECENT
    _heap: list = field(default_factory=list, repr=False)  # (version, id) min-heap over `recent`

    @classmethod
    def from_cursor(cls, cursor: Mapping[str, Any] | None, max_recent: int = MAX_RECENT) -> KeysetPosition:
        if not cursor or not cursor.get("since"):
            return cls(max_recent=max_recent)
        position = cls(iso_to_ms(cursor["since"]), str(cursor.get("last_id") or ""), max_recent=max_recent)
        forgotten = cursor.get("forgotten")
        position.forgotten = (int(forgotten[0]), str(forgotten[1])) if forgotten else None
        recent = cursor.get("recent") or {}
        # Older checkpoints stored {id: [version, digest]}; newer ones [[version, id, digest], ...].
        rows = [[v[0], k, v[1]] for k, v in recent.items()] if isinstance(recent, Mapping) else recent
        for version, object_id, fingerprint in rows:
            position._remember(str(object_id), int(version), str(fingerprint))
        return position

    def to_cursor(self, lookback_ms: int = 0, max_bytes: int = MAX_CURSOR_BYTES) -> dict[str, Any]:
        """The JSON cursor; `recent` keeps what a restart `lookback_ms` earlier can re-read, within `max_bytes`."""
        floor = self.version - lookback_ms
        rows = sorted([v[0], k, v[1]] for k, v in self.recent.items() if v[0] >= floor)
        forgotten, size = self.forgotten, 0
        keep = len(rows)
        for index in range(len(rows) - 1, -1, -1):  # newest first: they are the likeliest to be re-read
            size += len(orjson.dumps(rows[index])) + 1
            if size > max_bytes:
                keep = len(rows) - index - 1
                break
        if keep < len(rows):
            dropped = rows[len(rows) - keep - 1]
            forgotten = max(forgotten or (0, ""), (dropped[0], dropped[1]))
            rows = rows[len(rows) - keep:]
        cursor = {"since": ms_to_iso(self.version), "last_id": self.last_id, "recent": rows}
        if forgotten is not None and forgotten[0] >= floor:
            cursor["forgotten"] = list(forgotten)
        return cursor

    def is_new(self, object_id: str, version: int, content: Any) -> bool:
        """False for an object already emitted in the overlap window with this version and content."""
        if self.forgotten is not None and (version, object_id) <= self.forgotten:
            return False
        return self.recent.get(object_id) != [version, digest(content)]

    def advance(self, object_id: str, version: int, content: Any) -> None:
        """Record an emitted object and move the position forward (never back)."""
        self._remember(object_id, version, digest(content))
        if (version, object_id) > (self.version, self.last_id):
            self.version, self.last_id = version, object_id

    def _remember(self, object_id: str, version: int, fingerprint: str) -> None:
        self.recent[object_id] = [version, fingerprint]
        heapq.heappush(self._heap, (version, object_id))
        if len(self._heap) > 2 * self.max_recent:
            self._compact_heap()
        while len(self.recent) > self.max_recent:
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        version, object_id = heapq.heappop(self._heap)
        if self.recent.get(object_id, [None])[0] != version:
            return  # a stale heap entry: the object was re-emitted with another version since
        del self.recent[object_id]
        self.forgotten = max(self.forgotten or (0, ""), (version, object_id))

    def _compact_heap(self) -> None:
        # Re-emitted ids leave stale heap entries behind; rebuild so the heap stays O(max_recent).
        self._heap = [(v[0], k) for k, v in self.recent.items()]
        heapq.heapify(self._heap)
