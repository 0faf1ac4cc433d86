"""In-memory objects per collection, with sorted indexes so lists never sort per request."""
from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Iterator
from typing import Any

import orjson

KeyFn = Callable[[str, dict[str, Any]], tuple]


class Entry:
    """One object's current data and version; the JSON bytes are cached until it changes."""

    __slots__ = ("data", "version", "_body", "_views")

    def __init__(self, data: dict[str, Any], version: int) -> None:
        self.data = data
        self.version = version
        self._body: bytes | None = None
        self._views: dict[str, bytes] | None = None

    @property
    def body(self) -> bytes:
        """The object serialized once (lists join these bytes instead of re-encoding)."""
        if self._body is None:
            self._body = orjson.dumps(self.data)
        return self._body

    def view(self, key: str, render: Callable[[dict[str, Any]], dict[str, Any]]) -> bytes:
        """The object rendered another way (e.g. an older API version), serialized once per key."""
        if self._views is None:
            self._views = {}
        body = self._views.get(key)
        if body is None:
            body = self._views[key] = orjson.dumps(render(self.data))
        return body


class SortedIndex:
    """Ascending list of (sort key..., id) tuples kept sorted with bisect."""

    __slots__ = ("keys",)

    def __init__(self) -> None:
        self.keys: list[tuple] = []

    def add(self, key: tuple) -> None:
        """Insert a key (O(n) memmove, cheap at simulator sizes)."""
        insort(self.keys, key)

    def discard(self, key: tuple) -> None:
        """Remove a key if present."""
        pos = bisect_left(self.keys, key)
        if pos < len(self.keys) and self.keys[pos] == key:
            del self.keys[pos]

    def position(self, key: tuple) -> int:
        """Index where `key` is or would be."""
        return bisect_left(self.keys, key)

    def __len__(self) -> int:
        return len(self.keys)


class Collection:
    """Live objects by id plus the ids deleted (with their last key kept for cursors)."""

    def __init__(self, name: str, indexes: dict[str, KeyFn]) -> None:
        self.name = name
        self.entries: dict[str, Entry] = {}
        self.deleted: dict[str, int] = {}
        self.graveyard: dict[str, Entry] = {}
        self._key_fns = indexes
        self.indexes = {index: SortedIndex() for index in indexes}
        self._keys: dict[str, dict[str, tuple]] = {}

    def put(self, oid: str, data: dict[str, Any], version: int) -> Entry:
        """Create or replace an object, re-indexing it."""
        self._unindex(oid)
        entry = Entry(data, version)
        self.entries[oid] = entry
        self.deleted.pop(oid, None)
        self.graveyard.pop(oid, None)
        keys = {name: fn(oid, data) for name, fn in self._key_fns.items()}
        for name, key in keys.items():
            self.indexes[name].add(key)
        self._keys[oid] = keys
        return entry

    def delete(self, oid: str, version: int) -> Entry | None:
        """Remove an object; its last data stays in `graveyard`, its id in `deleted`."""
        entry = self.entries.pop(oid, None)
        if entry is None:
            return None
        self._unindex(oid, keep_keys=True)
        self.deleted[oid] = version
        self.graveyard[oid] = entry
        return entry

    def key_of(self, index: str, oid: str) -> tuple | None:
        """The sort key an object has (or had, if deleted) in an index."""
        keys = self._keys.get(oid)
        return None if keys is None else keys[index]

    def iter_ids(self, index: str, start: int, step: int) -> Iterator[str]:
        """Ids along an index from position `start`, walking by `step` (+1 or -1)."""
        keys = self.indexes[index].keys
        pos = start
        while 0 <= pos < len(keys):
            yield keys[pos][-1]
            pos += step

    def _unindex(self, oid: str, keep_keys: bool = False) -> None:
        keys = self._keys.get(oid)
        if keys is None:
            return
        for name, key in keys.items():
            self.indexes[name].discard(key)
        if not keep_keys:
            del self._keys[oid]

    def __len__(self) -> int:
        return len(self.entries)
