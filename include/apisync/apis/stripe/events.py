"""Stripe's /v1/events read oldest first, one page at a time, with a bounded memory of what was emitted.

Stripe lists events newest first. A window is emitted oldest first (each record's changes in order)
without holding it in memory: the walk anchors on the newest event created before the window
(`created[lt]`, `limit=1`) and pages towards newer events with `ending_before`, which fetches "the
previous page of the list" (https://docs.stripe.com/api/pagination). When no event precedes the window,
a newest-first walk down to the window's oldest page (keeping only that page) provides the first anchor.

The events list is eventually consistent: an event can become visible seconds after a newer one. A window
ends at `high`, the server time when it began, and every page is read after that; an event is listed at
most `settle_s` after its `created` second. So once the walk has passed every event up to second t, each
event created before t - settle_s was visible when passed, and the cursor `at` may name the last whole
second passed (t - 1; `high` at the window's end): the next run re-reads from `at - settle_s`. A checkpoint
after any page therefore skips nothing, ties at one second included.

Inside one second only the list order tells events apart, and a late event can take any place in it.
The cursor therefore also names the newest event passed whose second was already settled when passed
(`after`: created <= high - settle_s): every event listed below it was visible then, so a resumed run
goes on above it with `ending_before` instead of re-reading the window. Thousands of events stamped with
one second are thus committed page by page once that second is settled; before that, a resumed run
re-reads them and `seen` keeps the duplicates down.

`seen` (ids emitted at seconds that re-read covers) only saves duplicates: at most `max_seen` ids, ~31
bytes of checkpoint each, those of the oldest seconds forgotten first. A forgotten event that is re-read
is emitted again and the version fence absorbs it; an event is skipped only if it was emitted.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from apisync.apis.stripe.lists import ListPosition, cursor_object_gone, list_data, walk_newest_first
from apisync.events import ms_to_iso
from apisync.http import ApiClient, FatalError, MalformedResponseError
from apisync.sources.base import require

log = logging.getLogger("apisync.apis.stripe")

EVENTS_PATH = "/v1/events"
MAX_SEEN = 1_000  # ~31 KB of checkpoint JSON, far below Kafka's 1 MB message limit


class SeenEvents:
    """Ids of emitted events by `created` second; at most `limit`, the oldest seconds forgotten first
    (a run walks up, and the next one re-reads only the newest seconds)."""

    def __init__(self, limit: int = MAX_SEEN) -> None:
        self.limit = limit
        self._second_of: dict[str, int] = {}
        self._by_second: dict[int, list[str]] = {}
        self._seconds: list[int] = []  # min-heap of the keys of _by_second

    @classmethod
    def from_cursor(cls, seen: Any, default_second: int, limit: int = MAX_SEEN) -> SeenEvents:
        """`{second: [ids]}`; a plain list of ids (older checkpoints) counts as emitted at `default_second`."""
        events = cls(limit)
        rows = seen.items() if isinstance(seen, Mapping) else [(default_second, seen or ())]
        for second, ids in rows:
            for event_id in ids:
                events.add(str(event_id), int(second))
        return events

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._second_of

    def __len__(self) -> int:
        return len(self._second_of)

    def add(self, event_id: str, created: int) -> None:
        """Remember an emitted event; past the limit one of the oldest second is forgotten (a possible
        duplicate later, never a skip)."""
        if event_id in self._second_of:
            return
        self._second_of[event_id] = created
        ids = self._by_second.get(created)
        if ids is None:
            ids = self._by_second[created] = []
            heapq.heappush(self._seconds, created)
        ids.append(event_id)
        if len(self._second_of) > self.limit:
            self._forget_one_of_the_oldest()

    def _forget_one_of_the_oldest(self) -> None:
        oldest = self._seconds[0]
        ids = self._by_second[oldest]
        del self._second_of[ids.pop()]
        if not ids:
            del self._by_second[oldest]
            heapq.heappop(self._seconds)

    def to_cursor(self, floor: int) -> dict[str, list[str]]:
        """`{second: [ids]}` of the events created at or after `floor` (the next run re-reads no older)."""
        return {str(second): list(ids) for second, ids in sorted(self._by_second.items()) if second >= floor}


@dataclass(frozen=True, slots=True)
class EventWindow:
    """The incremental cursor: events up to server second `at` are read; `seen`: ids emitted since
    at − settle; `after`: the settled event a window under way resumes above (`{"created", "id"}`);
    `relist`: where a re-listing of the collection stands while one is under way."""

    at: int
    seen: Any = field(default_factory=dict)
    relist: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None

    @classmethod
    def from_cursor(cls, cursor: Mapping[str, Any]) -> EventWindow:
        at = cursor.get("at", cursor.get("since"))  # `since`: the hand-over of cursors written before windows
        if at is None:
            raise ValueError("stripe incremental cursor has no 'at'; re-run the backfill with restart")
        return cls(int(at), cursor.get("seen") or {}, cursor.get("relist"), cursor.get("after"))

    def to_cursor(self) -> dict[str, Any]:
        cursor = {"at": self.at, "seen": self.seen}
        if self.relist is not None:
            cursor["relist"] = dict(self.relist)
        if self.after is not None:
            cursor["after"] = {"created": int(self.after["created"]), "id": str(self.after["id"])}
        return cursor


@dataclass(frozen=True, slots=True)
class EventPage:
    """Events of one page, oldest first, and whether it is the window's last."""

    events: list[dict[str, Any]]
    last: bool


def walk_oldest_first(client: ApiClient, params: Mapping[str, Any], low: int, high: int, limit: int,
                      after: Mapping[str, Any] | None = None) -> Iterator[EventPage]:
    """Events created in [low, high] that match `params` (e.g. `types[]`), oldest first, a page at a time;
    with `after` (an event of second `low`), only those listed above it."""
    window = {**params, "created[gte]": low, "created[lte]": high}
    head, anchor = ([], dict(after)) if after else _start(client, params, window, limit)
    while anchor is not None:
        if head:
            yield EventPage(head, last=False)
        try:
            result = client.get_json(EVENTS_PATH, {**window, "limit": limit, "ending_before": anchor["id"]})
        except FatalError as error:
            if not cursor_object_gone(error):
                raise
            # Retention removed the anchor (a catch-up at the 30-day edge): anchor again at its second.
            reached = max(low, int(anchor["created"]))
            log.info("stripe events: anchor %s is gone; resuming at created >= %s", anchor["id"],
                     ms_to_iso(reached * 1000))
            window["created[gte]"] = reached
            head, anchor = _start(client, params, window, limit)
            continue
        events = checked_events(result.data)
        has_more = bool(result.data.get("has_more"))
        if has_more and not events:
            raise MalformedResponseError("stripe", "GET", EVENTS_PATH, 200, "page says has_more but holds no event")
        if not has_more:
            yield EventPage(events[::-1], last=True)
            return
        head, anchor = events[::-1], events[0]
    yield EventPage([], last=True)  # the window holds no event


def _start(client: ApiClient, params: Mapping[str, Any], window: Mapping[str, Any],
           limit: int) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Where a walk up from `window["created[gte]"]` begins: (events to emit first, oldest first; the anchor
    for `ending_before`). The anchor is the newest event created before the window; without one, the
    window's oldest page comes first and its newest event is the anchor. (None: the window is empty.)"""
    before = client.get_json(EVENTS_PATH, {**params, "created[lt]": window["created[gte]"], "limit": 1})
    previous = checked_events(before.data)
    if previous:
        return [], previous[0]
    oldest: list[dict[str, Any]] = []
    for page in walk_newest_first(client, EVENTS_PATH, window, ListPosition(), limit):
        oldest = page.objects or oldest  # only the last page is kept: memory stays one page
    return oldest[::-1], (oldest[0] if oldest else None)


def checked_events(data: Any) -> list[dict[str, Any]]:
    """The events of a list page, each with the `id` and `created` the walks rely on."""
    events = list_data(data, EVENTS_PATH)
    for event in events:
        require(event, "id", "stripe", EVENTS_PATH)
        require(event, "created", "stripe", EVENTS_PATH)
    return events
