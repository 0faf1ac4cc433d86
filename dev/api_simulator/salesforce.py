"""Salesforce REST routes: query/queryAll with batches, sobject GET, getUpdated / getDeleted."""
from __future__ import annotations

from collections import OrderedDict
from itertools import count

import orjson
from starlette.routing import Route

from .ids import salesforce_id
from .responses import ApiError, get_sim, json_response
from .salesforce_model import FIELDS, VERSION
from .soql import Query, SoqlError, parse
from .timefmt import parse_iso, salesforce_time

PREFIX = f"/services/data/{VERSION}"
MAX_BATCH, MIN_BATCH = 2000, 200
INDEX_ORDERS = ((("SystemModstamp", False), ("Id", False)), (("SystemModstamp", False),))


def error(status: int, code: str, message: str):
    """Salesforce's error shape: a JSON list of {message, errorCode}."""
    return json_response([{"message": message, "errorCode": code}], status)


class Cursors:
    """Open query locators (snapshots of the result), oldest dropped first."""

    def __init__(self, keep: int = 200) -> None:
        self._open: OrderedDict[str, list[bytes]] = OrderedDict()
        self._ids = count(1)
        self._keep = keep

    def open(self, records: list[bytes]) -> str:
        """Store a result and return its locator id."""
        # A query locator is an 18-character id; its 5-digit serial wraps, far beyond the `keep` open ones.
        locator = salesforce_id("01g", next(self._ids) % 100_000)
        self._open[locator] = records
        while len(self._open) > self._keep:
            self._open.popitem(last=False)
        return locator

    def get(self, locator: str) -> list[bytes] | None:
        """The stored result, or None if unknown or expired."""
        return self._open.get(locator)


def _batch_size(request) -> int:
    # docs (Sforce-Query-Options): batchSize 200..2000, default 2000; larger values are not an error.
    options = request.headers.get("sforce-query-options", "")
    for part in options.split(","):
        name, _, value = part.strip().partition("=")
        if name.lower() == "batchsize" and value.isdigit():
            return min(max(int(value), MIN_BATCH), MAX_BATCH)
    return MAX_BATCH


def _run(model, query: Query, include_deleted: bool) -> list[bytes]:
    """Filter, order, limit and project rows; the (SystemModstamp, Id) order reuses the index."""
    col = model.rows[query.sobject]
    if query.order in INDEX_ORDERS:
        rows = [col.entries[k[-1]].data for k in col.indexes["modstamp"].keys]
    else:
        rows = [e.data for e in col.entries.values()]
    rows = [r for r in rows if (include_deleted or not r["IsDeleted"]) and (query.where is None or query.where(r))]
    if query.order not in INDEX_ORDERS:
        for field, desc in reversed(query.order):
            # SOQL puts nulls first in ascending order (docs: ORDER BY, NULLS FIRST default).
            rows.sort(key=lambda r: (r.get(field) is not None, r.get(field)), reverse=desc)
    if query.limit is not None:
        rows = rows[:query.limit]
    return [orjson.dumps({"attributes": r["attributes"], **{f: r.get(f) for f in query.fields}}) for r in rows]


def _answer(request, records: list[bytes], locator: str, offset: int, batch: int, kind: str):
    end = min(offset + batch, len(records))
    done = end >= len(records)
    next_url = None if done else f"{PREFIX}/{kind}/{locator}-{end}"
    if next_url and offset > 0 and get_sim(request).take_fault("salesforce", request.url.path, "repeat_cursor"):
        next_url = f"{PREFIX}/{kind}/{locator}-{offset}"  # fault: this batch points at itself again
    body = (b'{"totalSize":' + str(len(records)).encode() + b',"done":' + (b"true" if done else b"false")
            + (b',"nextRecordsUrl":' + orjson.dumps(next_url) if next_url else b"")
            + b',"records":[' + b",".join(records[offset:end]) + b"]}")
    return json_response(body)


async def run_query(request):
    """GET query?q= and queryAll?q= (queryAll includes IsDeleted rows)."""
    kind = request.path_params["kind"]
    if kind not in ("query", "queryAll"):
        return error(404, "NOT_FOUND", "The requested resource does not exist")
    text = request.query_params.get("q")
    if text is None:
        return error(400, "MALFORMED_QUERY", "A query string has to be specified")
    sim = get_sim(request)
    model = sim.models["salesforce"]
    model.commit_due()
    try:
        query = parse(text, FIELDS)
    except SoqlError as exc:
        return error(400, exc.code, str(exc))
    records = _run(model, query, include_deleted=kind == "queryAll")
    locator = sim.sf_cursors.open(records)
    return _answer(request, records, locator, 0, _batch_size(request), kind)


async def more_results(request):
    """GET query/<locator>-<offset> (the nextRecordsUrl)."""
    kind, token = request.path_params["kind"], request.path_params["locator"]
    if kind not in ("query", "queryAll"):
        return error(404, "NOT_FOUND", "The requested resource does not exist")
    locator, _, offset = token.partition("-")
    records = get_sim(request).sf_cursors.get(locator)
    if records is None or not offset.isdigit():
        return error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
    return _answer(request, records, locator, int(offset), _batch_size(request), kind)


def _window(request, max_days: int) -> tuple[int, int]:
    """start/end parsed and floored to the minute (the API ignores seconds); checked against max_days."""
    try:
        start = int(parse_iso(request.query_params["start"])) // 60 * 60
        end = int(parse_iso(request.query_params["end"])) // 60 * 60
    except (KeyError, ValueError):
        raise ApiError(error(400, "MALFORMED_QUERY", "start and end must be ISO 8601 date-times")) from None
    now = get_sim(request).clock.now_s()
    if start < now - max_days * 86400:
        raise ApiError(error(400, "INVALID_REPLICATION_DATE",
                             f"startDate cannot be more than {max_days} days ago"))
    if end <= start:
        raise ApiError(error(400, "INVALID_REPLICATION_DATE", "startDate must chronologically precede endDate"))
    return start, min(end, now // 60 * 60)


async def replication(request):
    """GET sobjects/<Type>/updated/ (≤30 days back) and /deleted/ (≤15 days back)."""
    sobject, what = request.path_params["sobject"], request.path_params["oid"]
    model = get_sim(request).models["salesforce"]
    if sobject not in FIELDS:
        return error(404, "NOT_FOUND", "The requested resource does not exist")
    model.commit_due()
    start, covered = _window(request, 30 if what == "updated" else 15)
    lo = salesforce_time(start)
    hi = salesforce_time(max(covered, start))
    open_since = model.open_since()
    if open_since is not None:
        # docs (GetUpdatedResult): while a long transaction runs, latestDateCovered is its start time
        hi = salesforce_time(min(max(covered, start), open_since // 60 * 60))
    if what == "updated":
        ids = [k[-1] for k in model.rows[sobject].indexes["modstamp"].keys
               if lo <= k[0] < hi and not model.rows[sobject].entries[k[-1]].data["IsDeleted"]]
        return json_response({"ids": ids, "latestDateCovered": hi})
    now = get_sim(request).clock.now_s()
    gone = [{"id": oid, "deletedDate": salesforce_time(when)}
            for oid, when in model.deleted[sobject].items() if start <= when < max(covered, start)]
    earliest = salesforce_time((now - 15 * 86400) // 60 * 60)
    return json_response({"deletedRecords": gone, "earliestDateAvailable": earliest,
                          "latestDateCovered": hi})


async def get_record(request):
    """GET sobjects/<Type>/<Id> — every field; 404 once deleted."""
    sobject, oid = request.path_params["sobject"], request.path_params["oid"]
    if oid in ("updated", "deleted"):
        return await replication(request)
    sim = get_sim(request)
    model = sim.models["salesforce"]
    if sobject not in FIELDS:
        return error(404, "NOT_FOUND", "The requested resource does not exist")
    model.commit_due()
    entry = model.rows[sobject].entries.get(oid)
    if entry is not None and not entry.data["IsDeleted"] and \
            sim.take_fault("salesforce", request.url.path, "delete_between_list_and_fetch"):
        sim.delete_now("salesforce", sobject.lower(), oid)
        entry = model.rows[sobject].entries.get(oid)
    if entry is None or entry.data["IsDeleted"]:
        return error(404, "NOT_FOUND", "The requested resource does not exist")
    return json_response(entry.body)


async def not_found(request):
    """Anything else under /services."""
    return error(404, "NOT_FOUND", "The requested resource does not exist")


routes = [
    Route(PREFIX + "/sobjects/{sobject}/{oid}/", get_record),
    Route(PREFIX + "/sobjects/{sobject}/{oid}", get_record),
    Route(PREFIX + "/{kind}", run_query),
    Route(PREFIX + "/{kind}/{locator}", more_results),
    Route("/services/{rest:path}", not_found),
]
