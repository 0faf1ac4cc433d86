"""Stripe list walks, newest first, that survive the deletion of their cursor object with a bounded memory.

A list cursor (`starting_after`) that names an object deleted since answers 400 `resource_missing`
(stripe-php#1264). The position therefore also remembers the `created` second of the oldest object
emitted and the ids emitted at that second; when the cursor object is gone the walk re-anchors with
`created[lte]` at that second and skips those ids. It never skips an object it has not emitted, nor wedges.

The ids of one second are a bounded memory (MAX_IDS_AT_CREATED, ~25 bytes of checkpoint each): a billing
run or an import can stamp thousands of objects with one `created` second. Past the bound the ids emitted
first are forgotten; after a re-anchor those objects are emitted again, which the version fence absorbs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from apisync.events import ms_to_iso
from apisync.http import ApiClient, FatalError, MalformedResponseError
from apisync.sources.base import require

log = logging.getLogger("apisync.apis.stripe")

MAX_IDS_AT_CREATED = 1_000


@dataclass(slots=True)
class ListPosition:
    """Where a newest-first walk stands: the last id, and the oldest `created` second with its ids."""

    after: str | None = None
    created: int | None = None
    ids_at_created: list[str] = field(default_factory=list)
    max_ids: int = MAX_IDS_AT_CREATED

    @classmethod
    def from_cursor(cls, cursor: Mapping[str, Any] | None, max_ids: int = MAX_IDS_AT_CREATED) -> ListPosition:
        cursor = cursor or {}
        # A checkpoint in the plain paginator's form (`{"cursor": ...}`) resumes too.
        after = cursor.get("after") or cursor.get("cursor")
        ids = list(cursor.get("ids_at_created") or ())[-max_ids:]
        return cls(after, cursor.get("created"), ids, max_ids)

    def to_cursor(self) -> dict[str, Any]:
        return {"after": self.after, "created": self.created, "ids_at_created": list(self.ids_at_created)}

    def emitted(self, obj: Mapping[str, Any]) -> bool:
        """Already walked past: only objects of the oldest second can come back after a re-anchor."""
        return obj.get("created") == self.created and obj.get("id") in self.ids_at_created

    def advance(self, obj: Mapping[str, Any]) -> None:
        created = int(obj["created"])
        if self.created is None or created < self.created:
            self.created, self.ids_at_created = created, []
        if created == self.created and obj["id"] not in self.ids_at_created:
            self.ids_at_created.append(obj["id"])
            if len(self.ids_at_created) > self.max_ids:
                del self.ids_at_created[0]  # forgotten: re-emitted (never skipped) after a re-anchor
        self.after = obj["id"]


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a walk: the objects not emitted before, the response, and whether more follow."""

    objects: list[dict[str, Any]]
    response: Any
    has_more: bool


def walk_newest_first(client: ApiClient, path: str, params: Mapping[str, Any], position: ListPosition,
                      limit: int) -> Iterator[ListPage]:
    """A Stripe list, newest first, that survives the deletion of its cursor object."""
    while True:
        query = {**params, "limit": limit}
        if position.after:
            query["starting_after"] = position.after
        try:
            result = client.get_json(path, query)
        except FatalError as error:
            if not (position.after and position.created is not None and cursor_object_gone(error)):
                raise
            log.info("stripe %s: cursor object %s no longer exists; resuming at created <= %s",
                     path, position.after, ms_to_iso(position.created * 1000))
            query.pop("starting_after")
            query["created[lte]"] = min(position.created, int(params.get("created[lte]", position.created)))
            result = client.get_json(path, query)
        objects = list_data(result.data, path)
        fresh = [obj for obj in objects if not position.emitted(obj)]
        for obj in objects:  # newest first: the position ends at the oldest object of the page
            require(obj, "id", "stripe", path)
            require(obj, "created", "stripe", path)
            position.advance(obj)
        has_more = bool(result.data.get("has_more"))
        if has_more and not objects:
            raise MalformedResponseError("stripe", "GET", path, 200, "page says has_more but holds no object")
        yield ListPage(fresh, result.response, has_more)
        if not has_more:
            return


def cursor_object_gone(error: FatalError) -> bool:
    """Stripe's answer to a cursor naming an object that no longer exists (deleted, or aged-out event)."""
    reason = error.reason or ""
    return error.status == 400 and ("resource_missing" in reason or "retention" in reason)


def list_data(data: Any, path: str) -> list[dict[str, Any]]:
    """The `data` array of a Stripe list page; anything else is a malformed page."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise MalformedResponseError("stripe", "GET", path, 200, "list page has no data array")
    return data["data"]
