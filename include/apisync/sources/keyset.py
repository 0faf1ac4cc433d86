"""A (version, id) position for walking a listing ordered by last change, with bounded overlap dedupe.

Each run restarts a little before the saved version (the lookback: late commits may carry an older
stamp), and `recent` remembers which (version, id, content) inside that window were already emitted,
so the overlap and same-second ties at page boundaries are usually emitted once. Content counts too:
stamps are whole seconds, so an update and a delete of one object can share a version.

Dedupe is an optimisation; the version fence downstream is the guarantee. So the memory is bounded by
dropping entries, never by skipping: at most `max_recent` entries in a run and `max_bytes` of JSON in
the checkpoint, the oldest (version, id) first: the newest are the ones a restart, an ascending walk's
next query and a newest-first walk's next run re-read. A re-read object whose entry was dropped is
emitted again, a duplicate the fence answers "unchanged". `is_new` is False only for an (id, version,
content) this position emitted, so no walk order (ascending, newest first, by creation) and no burst
size can make it skip an object.

A walk that emits out of version order (a sweep in creation order) sets `resume_ms`, the version below
which it has read everything: the checkpoint restarts there instead of at the newest version emitted.
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


def digest(content: Any) -> str:
    """A 32-bit fingerprint of an object's content: it only tells two contents of ONE (id, version) apart."""
    return hashlib.blake2b(orjson.dumps(content, option=orjson.OPT_SORT_KEYS), digest_size=4).hexdigest()


@dataclass(slots=True)
class KeysetPosition:
    """The newest (version, id) emitted so far and the recently emitted (version, id, digest) entries."""

    version: int = 0
    last_id: str = ""
    recent: dict[str, list] = field(default_factory=dict)  # id -> [version, content digest]
    max_recent: int = MAX_RECENT
    resume_ms: int | None = None  # set by a walk emitting out of version order: everything below is read
    _heap: list = field(default_factory=list, repr=False)  # (version, id) min-heap over `recent`

    @classmethod
    def from_cursor(cls, cursor: Mapping[str, Any] | None, max_recent: int = MAX_RECENT) -> KeysetPosition:
        """The position a cursor saved; a `forgotten` mark of older cursors is ignored (it only cost re-reads)."""
        if not cursor or not cursor.get("since"):
            return cls(max_recent=max_recent)
        position = cls(iso_to_ms(cursor["since"]), str(cursor.get("last_id") or ""), max_recent=max_recent)
        recent = cursor.get("recent") or {}
        # Older checkpoints stored {id: [version, digest]}; newer ones [[version, id, digest], ...].
        rows = [[v[0], k, v[1]] for k, v in recent.items()] if isinstance(recent, Mapping) else recent
        for version, object_id, fingerprint in rows:
            position._remember(str(object_id), int(version), str(fingerprint))
        return position

    def to_cursor(self, lookback_ms: int = 0, max_bytes: int = MAX_CURSOR_BYTES) -> dict[str, Any]:
        """The JSON cursor; `recent` keeps what a restart `lookback_ms` earlier can re-read, within `max_bytes`."""
        since, last_id = (self.version, self.last_id) if self.resume_ms is None else (self.resume_ms, "")
        floor = since - lookback_ms
        rows = sorted([v[0], k, v[1]] for k, v in self.recent.items() if v[0] >= floor)
        return {"since": ms_to_iso(since), "last_id": last_id, "recent": _newest_within(rows, max_bytes)}

    def is_new(self, object_id: str, version: int, content: Any) -> bool:
        """False only for an object this position emitted with this version and content (and still remembers)."""
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
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        # Only the dedupe entry goes: a re-read of that object is emitted again, a duplicate, never skipped.
        version, object_id = heapq.heappop(self._heap)
        if self.recent.get(object_id, [None])[0] == version:  # else a stale heap entry: re-emitted since
            del self.recent[object_id]

    def _compact_heap(self) -> None:
        # Re-emitted ids leave stale heap entries behind; rebuild so the heap stays O(max_recent).
        self._heap = [(v[0], k) for k, v in self.recent.items()]
        heapq.heapify(self._heap)


def _newest_within(rows: list[list], max_bytes: int) -> list[list]:
    """The newest rows (sorted ascending) whose JSON fits in `max_bytes`."""
    size = 0
    for index in range(len(rows) - 1, -1, -1):
        size += len(orjson.dumps(rows[index])) + 1
        if size > max_bytes:
            return rows[index + 1:]
    return rows
