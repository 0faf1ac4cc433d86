"""HubSpot CRM search: the request body's limits, filter evaluation, and an eventually consistent index.

Documented behaviour reproduced here (HubSpot "Search the CRM" guide, section Limitations,
https://developers.hubspot.com/docs/api-reference/search/guide#limitations, unless noted):
- A query returns at most 10,000 results: `after` at 10,000 or beyond answers 400, while `total` still
  counts every match and `paging.next` keeps pointing past the cap, so a client that simply follows
  `paging` walks into the 400 (airbytehq/airbyte#10700: "400 Client Error: Bad Request for url:
  .../crm/v3/objects/company/search" after the 10,000th record; HubSpot/hubspot-api-nodejs#132).
- Up to 200 objects per page (changelog "Increasing our API limits", 2024; default 10).
- Up to 5 filterGroups (OR) of up to 6 filters (AND), 18 filters in all (the guide; the 2024 changelog
  "Expanded Filtering Capabilities and Error Messaging in HubSpot's Search API" announced 5 / 10 / 25,
  we keep the guide's tighter numbers).
- Eventually consistent: a created, updated or archived object reaches the search index a little later
  ("changes made by other API calls will take several seconds to propagate to the search indexing",
  Locoia's HubSpot connector notes; estuary/connectors#1861 "HubSpot APIs are inconsistent ... when
  requesting very recent data"; supaglue-labs/supaglue#665; airbytehq/airbyte#69203 added a lookback
  window for records the search API returned late). Each change waits a seeded delay drawn uniformly
  from [0, `hubspot_search_lag_s`]; until then search shows the object's previous state (or nothing,
  for a new one). Reads, lists, truth and webhooks are not delayed.
- Archived objects are never searchable.
"""
from __future__ import annotations

import heapq
import operator
import random
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .clock import Clock
from .store import Collection, Entry
from .timefmt import hubspot_time

MAX_RESULTS = 10_000
MAX_LIMIT, DEFAULT_LIMIT = 200, 10
MAX_GROUPS, MAX_FILTERS_PER_GROUP, MAX_FILTERS = 5, 6, 18
DATE_PROPS = frozenset({"createdate", "hs_lastmodifieddate", "lastmodifieddate", "closedate"})
NUMBER_PROPS = frozenset({"hs_object_id", "amount"})
MODIFIED = ("hs_lastmodifieddate", "lastmodifieddate")
RANGE_OPS = ("LT", "LTE", "GT", "GTE")
OPERATORS = ("EQ", "NEQ", *RANGE_OPS, "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY", "NOT_HAS_PROPERTY",
             "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN")


class SearchError(ValueError):
    """A search body HubSpot would refuse (400 VALIDATION_ERROR)."""


def comparable(prop: str, raw: Any) -> Any:
    """A property value (or filter value) in a form that compares like HubSpot compares it."""
    if raw is None:
        return None
    text = str(raw).strip()
    try:
        if prop in DATE_PROPS:  # dates filter as epoch milliseconds or ISO 8601 (the guide accepts both)
            if text.lstrip("-").isdigit():
                return int(text)
            value = text[:-1] + "+00:00" if text.endswith("Z") else text
            moment = datetime.fromisoformat(value)
            return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)
        if prop in NUMBER_PROPS:
            return float(text)
    except ValueError:
        raise SearchError(f"{text[:40]!r} is not a valid value for {prop}") from None
    return text.casefold()


_COMPARE = {"EQ": operator.eq, "NEQ": operator.ne, "LT": operator.lt, "LTE": operator.le, "GT": operator.gt,
            "GTE": operator.ge}


@dataclass(frozen=True, slots=True)
class Filter:
    """One filter of a filterGroup, its values already comparable; `test` is compiled once per query."""

    prop: str
    op: str
    value: Any = None
    high: Any = None
    values: frozenset = frozenset()
    test: Callable[[Any], bool] = field(default=bool, compare=False)

    @classmethod
    def build(cls, prop: str, op: str, value: Any = None, high: Any = None, values: frozenset = frozenset()) -> Filter:
        """A filter with its test compiled for its operator."""
        return cls(prop, op, value, high, values, _test(op, value, high, values))


def _test(op: str, value: Any, high: Any, values: frozenset) -> Callable[[Any], bool]:
    """The filter's test on a property's comparable value (None: the object lacks the property)."""
    if op in ("EQ", "NEQ"):  # NEQ also matches objects without the property
        compare = _COMPARE[op]
        return lambda v: compare(v, value)
    if op in RANGE_OPS:
        compare = _COMPARE[op]
        return lambda v: v is not None and compare(v, value)
    if op == "BETWEEN":
        return lambda v: v is not None and value <= v <= high
    if op in ("IN", "NOT_IN"):
        return values.__contains__ if op == "IN" else (lambda v: v not in values)
    if op in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
        return (lambda v: v is not None) if op == "HAS_PROPERTY" else (lambda v: v is None)
    token, want = str(value).strip("*"), op == "CONTAINS_TOKEN"
    return lambda v: (v is not None and token in str(v)) == want


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """A validated search body."""

    groups: tuple[tuple[Filter, ...], ...]
    sorts: tuple[tuple[str, bool], ...]  # (property, descending)
    properties: tuple[str, ...] | None
    limit: int
    after: int
    text: str | None = None

    def matches(self, doc: dict[str, Any]) -> bool:
        """OR over groups, AND within one; no group matches everything."""
        if self.text and not any(self.text in str(v) for v in doc.values() if isinstance(v, str)):
            return False
        if not self.groups:
            return True
        get = doc.get
        for group in self.groups:
            for f in group:
                if not f.test(get(f.prop)):
                    break
            else:
                return True
        return False

    def modified_floor(self) -> int | None:
        """The lowest hs_lastmodifieddate any match can have, if every group bounds it from below."""
        floors = []
        for group in self.groups:
            bounds = [f.value for f in group if f.prop in MODIFIED and f.op in ("GT", "GTE", "EQ", "BETWEEN")]
            if not bounds:
                return None
            floors.append(max(bounds))
        return min(floors) if floors else None


def parse(body: Any) -> SearchQuery:
    """Validate a search body against HubSpot's documented limits (SearchError if refused)."""
    if not isinstance(body, dict):
        raise SearchError("Invalid input JSON: the request body must be a JSON object")
    groups = body.get("filterGroups") or []
    if not isinstance(groups, list) or len(groups) > MAX_GROUPS:
        raise SearchError(f"filterGroups: at most {MAX_GROUPS} filterGroups are allowed")
    parsed = tuple(_group(g) for g in groups)
    if sum(len(g) for g in parsed) > MAX_FILTERS:
        raise SearchError(f"filterGroups: at most {MAX_FILTERS} filters are allowed across all filterGroups")
    limit = _integer(body.get("limit", DEFAULT_LIMIT), "limit")
    if not 1 <= limit <= MAX_LIMIT:
        raise SearchError(f"limit: must be between 1 and {MAX_LIMIT}")
    after = _integer(body.get("after") or 0, "after")
    if after >= MAX_RESULTS:
        # the cap: HubSpot refuses to page to the 10,000th result or beyond
        raise SearchError(f"Cannot page beyond {MAX_RESULTS} results: after must be less than {MAX_RESULTS}")
    props = body.get("properties")
    if props is not None and not (isinstance(props, list) and all(isinstance(p, str) for p in props)):
        raise SearchError("properties: must be a list of property names")
    text = body.get("query")
    return SearchQuery(parsed, _sorts(body.get("sorts") or []), tuple(props) if props else None, limit, after,
                       text.strip().casefold() if isinstance(text, str) and text.strip() else None)


def _integer(raw: Any, name: str) -> int:
    if isinstance(raw, bool) or not (isinstance(raw, int) or (isinstance(raw, str) and raw.isdigit())):
        raise SearchError(f"{name}: must be a non-negative integer")
    return int(raw)


def _group(group: Any) -> tuple[Filter, ...]:
    filters = group.get("filters") if isinstance(group, dict) else None
    if not isinstance(filters, list) or not filters:
        raise SearchError("filterGroups: each filterGroup needs a non-empty filters list")
    if len(filters) > MAX_FILTERS_PER_GROUP:
        raise SearchError(f"filterGroups: at most {MAX_FILTERS_PER_GROUP} filters are allowed per filterGroup")
    return tuple(_filter(f) for f in filters)


def _filter(spec: Any) -> Filter:
    prop, op = (spec.get("propertyName"), spec.get("operator", "EQ")) if isinstance(spec, dict) else (None, None)
    if not isinstance(prop, str) or op not in OPERATORS:
        raise SearchError(f"filters: propertyName is required and operator must be one of {', '.join(OPERATORS)}")
    if op in ("IN", "NOT_IN"):
        values = spec.get("values")
        if not isinstance(values, list):
            raise SearchError(f"filters: {op} needs a values list")
        return Filter.build(prop, op, values=frozenset(comparable(prop, v) for v in values))
    if op in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
        return Filter.build(prop, op)
    if "value" not in spec:
        raise SearchError(f"filters: {op} on {prop} needs a value")
    high = comparable(prop, spec.get("highValue")) if op == "BETWEEN" else None
    if op == "BETWEEN" and high is None:
        raise SearchError("filters: BETWEEN needs a highValue")
    return Filter.build(prop, op, comparable(prop, spec["value"]), high)


def _sorts(sorts: Any) -> tuple[tuple[str, bool], ...]:
    if not isinstance(sorts, list):
        raise SearchError("sorts: must be a list")
    out = []
    for sort in sorts:
        if isinstance(sort, str):  # the API reference also takes "prop" / "-prop"
            out.append((sort.lstrip("-"), sort.startswith("-")))
        elif isinstance(sort, dict) and isinstance(sort.get("propertyName"), str) \
                and sort.get("direction", "ASCENDING") in ("ASCENDING", "DESCENDING"):
            out.append((sort["propertyName"], sort.get("direction") == "DESCENDING"))
        else:
            raise SearchError("sorts: each sort needs propertyName and direction ASCENDING or DESCENDING")
    return tuple(out)


def _id_key(oid: str, _data: dict) -> tuple:
    return (int(oid), oid)


def _modified_key(oid: str, data: dict) -> tuple:
    # one fixed ISO format with milliseconds: the strings sort like the instants
    return (data["properties"]["hs_lastmodifieddate"], int(oid), oid)


@dataclass(slots=True)
class _Change:
    due: float
    seq: int
    collection: str = field(compare=False)
    oid: str = field(compare=False)
    obj: dict | None = field(compare=False)

    def __lt__(self, other: _Change) -> bool:
        return (self.due, self.seq) < (other.due, other.seq)


class SearchIndex:
    """What the search endpoint sees: each object's last indexed state, changes applied after a delay."""

    def __init__(self, clock: Clock, seed: int, collections: tuple[str, ...], lag: Callable[[], float]) -> None:
        self.clock = clock
        self.rng = random.Random(f"hubspot-search:{seed}")
        self._lag = lag
        self.docs = {c: Collection(c, {"id": _id_key, "modified": _modified_key}) for c in collections}
        self.values: dict[str, dict[str, dict[str, Any]]] = {c: {} for c in collections}
        self._pending: list[_Change] = []
        self._seq = 0
        self._applied: dict[tuple[str, str], int] = {}

    def stage(self, collection: str, oid: str, obj: dict | None, delayed: bool = True) -> None:
        """Queue an object's new state (None: gone from search) to show after a seeded delay."""
        self._seq += 1
        # drawn even when the lag is 0, so the draws never depend on the setting (as stripe_events does)
        delay = self.rng.uniform(0.0, float(self._lag() or 0.0))
        change = _Change(self.clock.now() + delay, self._seq, collection, oid, obj)
        if delayed and delay > 0:
            heapq.heappush(self._pending, change)
        else:
            self._apply(change)

    def refresh(self) -> None:
        """Apply every change whose time has come."""
        now = self.clock.now()
        while self._pending and self._pending[0].due <= now:
            self._apply(heapq.heappop(self._pending))

    def _apply(self, change: _Change) -> None:
        key = (change.collection, change.oid)
        if self._applied.get(key, 0) > change.seq:
            return  # a later state of this object is already indexed: converge on it
        self._applied[key] = change.seq
        docs, values = self.docs[change.collection], self.values[change.collection]
        if change.obj is None:
            docs.delete(change.oid, 0)
            docs.graveyard.pop(change.oid, None)
            values.pop(change.oid, None)
            return
        docs.put(change.oid, change.obj, 0)
        values[change.oid] = {p: comparable(p, v) for p, v in change.obj["properties"].items()}

    def run(self, collection: str, query: SearchQuery) -> tuple[int, list[Entry]]:
        """(total matches, this page's entries) for a query, on the index as it is now."""
        self.refresh()
        values, docs = self.values[collection], self.docs[collection]
        matched = [oid for oid in self._candidates(collection, query) if query.matches(values[oid])]
        if query.sorts and not self._index_ordered(query):
            for prop, desc in reversed(query.sorts):
                # missing values last either way; ties keep the previous (id) order
                present = [o for o in matched if values[o].get(prop) is not None]
                absent = [o for o in matched if values[o].get(prop) is None]
                matched = sorted(present, key=lambda o, p=prop: values[o][p], reverse=desc) + absent
        end = min(query.after + query.limit, MAX_RESULTS)
        return len(matched), [docs.entries[oid] for oid in matched[query.after:end]]

    @staticmethod
    def _index_ordered(query: SearchQuery) -> bool:
        """Whether the sort is the (hs_lastmodifieddate, id) ascending index order."""
        first = query.sorts[0]
        return first[0] in MODIFIED and not first[1] and all(s == ("hs_object_id", False) for s in query.sorts[1:])

    def _candidates(self, collection: str, query: SearchQuery) -> list[str]:
        """Ids in index order; a keyset query on hs_lastmodifieddate starts at its lower bound (bisect)."""
        docs = self.docs[collection]
        if not query.sorts or not self._index_ordered(query):
            return [key[-1] for key in docs.indexes["id"].keys]
        keys = docs.indexes["modified"].keys
        floor = query.modified_floor()
        start = 0 if floor is None or floor < 0 else bisect_left(keys, (hubspot_time(int(floor)),))
        return [key[-1] for key in keys[start:]]
