"""Backfill and incremental runs: pages from a source into `<api>.changes`, each page in one Kafka
transaction together with its checkpoint, so a cursor is never ahead of (or behind) durable data.

The next page's HTTP request overlaps the current page's transaction: the source's walk runs in a
thread (`PrefetchedPages`) at most PREFETCH_OBJECTS ahead, and pages that are already fetched when a
transaction starts, or arrive within TRANSACTION_LINGER_S, go into it too (up to MAX_TRANSACTION_MESSAGES),
with the checkpoint of the last one: fewer, larger transactions, each of which costs the broker ~10 ms
of CPU whatever its size.
Pages are still committed strictly in walk order and each transaction carries the cursor that follows
exactly its pages, so a crash anywhere re-reads from the last committed cursor as before.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from apisync.api_client import MeteredLimiter, api_client
from apisync.checkpoints import CheckpointStore, PageWriter, checkpoint_key, checkpoint_value
from apisync.errors import RetriableError
from apisync.events import Observation, record_value
from apisync.http import ApiError
from apisync.kafka.connect import check_kafka
from apisync.kafka.producer import Outgoing
from apisync.kafka.topics import CHECKPOINTS_TOPIC
from apisync.metrics import NULL_METRICS, Metrics, metric_name
from apisync.registry import build_source
from apisync.settings import SyncSettings
from apisync.sources import Batch, Source
from apisync.sources.base import PartsUnavailable
from apisync.sync.progress import Progress, ProgressTracker, RunSummary, incomplete, short_cursor

log = logging.getLogger("apisync.sync")
MAX_TRANSACTION_MESSAGES = 2000  # consecutive pages join one transaction up to about this many messages
# A transaction waits this long for pages still being fetched (up to MAX_TRANSACTION_MESSAGES), as
# linger.ms does for a producer's batches: each transaction costs the broker ~10 ms of CPU whatever its
# size, so a walk faster than the commits would pay it for every few pages (the bench's backfill rows
# measure it). A walk that ends, or a budget that holds the next page back, ends the wait at once or after
# this long.
TRANSACTION_LINGER_S = 0.05
# Objects fetched ahead of the transaction being written: bounds memory whatever the page size (100 for
# Stripe, up to 2,000 for Salesforce); two transactions' worth, so a slow commit lets the next one fill.
# (Four pages, as before, capped a transaction at ~500 Stripe objects: 2.5x as many transactions.)
PREFETCH_OBJECTS = 2 * MAX_TRANSACTION_MESSAGES


class BackfillNotDone(RetriableError):
    """Incremental sync waits for a finished backfill; it has nothing safe to start from before."""


def changes_topic(api: str) -> str:
    return f"{api}.changes"


def change_message(obs: Observation) -> Outgoing:
    """One `<api>.changes` message: key = record key, value = the observation envelope."""
    value = record_value(obs)
    value["deleted"] = obs.deleted
    if obs.reason:
        value["reason"] = obs.reason
    return Outgoing(changes_topic(obs.api), obs.key, value)


def run_backfill(settings: SyncSettings, collection: str, *, restart: bool = False, start_date: str | None = None,
                 on_progress: Callable[[Progress], None] | None = None, source: Source | None = None,
                 metrics: Metrics = NULL_METRICS) -> RunSummary:
    """Load every object of one collection, resuming from the last committed page."""
    api = settings.api.api
    source = source or build_source(settings.api)
    _check_collection(source, collection)
    check_kafka(settings.kafka)  # a refused login fails now, in one line, not as a timeout later
    store = CheckpointStore(settings.kafka)
    backfill_key = checkpoint_key(api, "backfill", collection)
    incremental_key = checkpoint_key(api, "incremental", collection)
    saved = None if restart else store.load(backfill_key)
    summary = RunSummary(api, collection, "backfill", cursor_before=saved and saved["cursor"])
    if saved and saved.get("done"):
        summary.note = "backfill already complete; trigger with restart=true to run it again"
        return summary
    writer = PageWriter.for_key(settings.kafka, backfill_key)
    with api_client(settings, "backfill", source, metrics) as (client, limiter):
        try:
            if saved is None:
                # Before the first page: note where incremental sync must begin, so no change made
                # while the backfill runs is missed. Committed as the backfill's first checkpoint.
                start = source.incremental_start(client, collection)
                # A restart replaces the incremental cursor at the end (remembered across resumes).
                saved = checkpoint_value({"page": None, "incremental_start": start, "restarted": restart}, 0)
                writer.write_page([], backfill_key, saved)
            cursor = saved["cursor"]
            tracker = ProgressTracker(summary, on_progress)
            page_metrics = PageMetrics(metrics, summary)

            def page_messages(batch: Batch) -> list[Outgoing]:
                messages = [change_message(obs) for obs in batch.observations]
                if batch.done:
                    messages += _incremental_handover(store, incremental_key, cursor["incremental_start"],
                                                      bool(cursor.get("restarted")))
                return messages

            with parts_reported(summary):
                _commit_pages(writer, backfill_key,
                              source.backfill(client, collection, cursor.get("page"), start_date),
                              saved.get("pages", 0), located=lambda: summary.cursor_after or cursor.get("page"),
                              messages=page_messages,
                              checkpoint=lambda last, n: checkpoint_value({**cursor, "page": last.cursor}, n,
                                                                          last.done),
                              report=lambda batch: _report(tracker, batch, {**cursor, "page": batch.cursor},
                                                           limiter, page_metrics))
        finally:
            writer.close()
    log.info("%s %s backfill finished: %d records in %d pages", api, collection, summary.records, summary.pages)
    return summary


def run_incremental(settings: SyncSettings, collection: str, *,
                    on_progress: Callable[[Progress], None] | None = None, source: Source | None = None,
                    metrics: Metrics = NULL_METRICS) -> RunSummary:
    """Changes since the saved cursor; refuses to run before the collection's backfill finished."""
    api = settings.api.api
    source = source or build_source(settings.api)
    _check_collection(source, collection)
    check_kafka(settings.kafka)
    store = CheckpointStore(settings.kafka)
    backfill = store.load(checkpoint_key(api, "backfill", collection))
    saved = store.load(checkpoint_key(api, "incremental", collection))
    if not (backfill and backfill.get("done")) or saved is None:
        raise BackfillNotDone(f"{api} {collection}: the backfill has not finished yet; "
                              "incremental sync starts after it")
    key = checkpoint_key(api, "incremental", collection)
    summary = RunSummary(api, collection, "incremental", cursor_before=saved["cursor"])
    writer = PageWriter.for_key(settings.kafka, key)
    pages = saved.get("pages", 0)
    with api_client(settings, "incremental", source, metrics) as (client, limiter):
        try:
            tracker = ProgressTracker(summary, on_progress)
            page_metrics = PageMetrics(metrics, summary)
            with parts_reported(summary):
                _commit_pages(writer, key, source.incremental(client, collection, saved["cursor"]), pages,
                              located=lambda: summary.cursor_after or saved["cursor"],
                              messages=lambda batch: [change_message(obs) for obs in batch.observations],
                              checkpoint=lambda last, n: checkpoint_value(last.cursor, n),
                              report=lambda batch: _report(tracker, batch, batch.cursor, limiter, page_metrics))
        finally:
            writer.close()
    return summary


@contextmanager
def parts_reported(summary: RunSummary) -> Iterator[None]:
    """A walk that ends with PartsUnavailable (every page before it committed) ends the run with
    IncompleteRun, after one line in the log; the summary names the parts."""
    try:
        yield
    except PartsUnavailable as unavailable:
        error = incomplete(summary, unavailable.lines)
        log.error("%s", error)
        raise error from None


def _commit_pages(writer: PageWriter, key: str, pages: Iterator[Batch], done: int, *, located: Callable[[], Any],
                  messages: Callable[[Batch], list[Outgoing]], checkpoint: Callable[[Batch, int], dict],
                  report: Callable[[Batch], None]) -> None:
    """Walk (prefetched) → transactions of consecutive pages, each with the checkpoint after its last page.

    `done`: pages committed before this run (the checkpoint's page count goes on from it); `located`:
    the committed cursor, named in an API error raised mid-walk.
    """
    with PrefetchedPages(pages) as walk:
        for group in _transactions(_located(walk, located), walk):
            done += len(group)
            writer.write_pages([messages(batch) for batch in group], key, checkpoint(group[-1], done))
            for batch in group:
                report(batch)


def _incremental_handover(store: CheckpointStore, key: str, start: dict, restart: bool) -> list[Outgoing]:
    """The incremental cursor, written with the backfill's last page. An existing one is kept (it is
    older, so re-reading from it can only repeat changes, never skip deletes) unless the backfill was
    restarted: that is how an operator replaces a broken or expired incremental cursor."""
    if store.load(key) is not None and not restart:
        return []
    return [Outgoing(CHECKPOINTS_TOPIC, key, checkpoint_value(start, 0))]


class PrefetchedPages:
    """A source's page iterator run in a thread, at most `depth` pages ahead; pages come out in walk
    order and an error raised by the walk comes out at its place, after the pages fetched before it.

    The walk keeps running after it yielded a page, so each page's cursor is copied when it is
    yielded: a source that went on mutating a cursor object would otherwise let a checkpoint run ahead.
    """

    _PAGE, _END, _ERROR = "page", "end", "error"

    def __init__(self, pages: Iterator[Batch], max_objects: int = PREFETCH_OBJECTS) -> None:
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()  # bounded by the object count below
        self._held: tuple[str, Any] | None = None  # taken by ready() but not a page: next() gives it
        self._room = threading.Condition()
        self._queued = 0  # objects in the queue; a page goes in when it fits, or when the queue is empty
        self._max_objects = max_objects
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._walk, args=(pages,), name="apisync-prefetch", daemon=True)
        self._thread.start()

    def __iter__(self) -> PrefetchedPages:
        return self

    def __next__(self) -> Batch:
        kind, value = self._held or self._queue.get()
        self._held = None
        if kind == self._PAGE:
            return self._taken(value)
        self._held = (kind, value)  # the end or the error stays: every later next() ends the same way
        if kind == self._ERROR:
            raise value
        raise StopIteration

    def ready(self, wait_s: float = 0.0) -> Batch | None:
        """The next page if it is fetched within `wait_s` (0: already), else None (never raises)."""
        if self._held is not None:
            return None
        try:
            kind, value = self._queue.get(timeout=wait_s) if wait_s > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None
        if kind == self._PAGE:
            return self._taken(value)
        self._held = (kind, value)
        return None

    def _taken(self, batch: Batch) -> Batch:
        with self._room:
            self._queued -= len(batch.observations)
            self._room.notify()
        return batch

    def close(self, timeout: float = 10.0) -> None:
        """Stop the walk after its current request (a run that failed or ended early)."""
        self._stop.set()
        with self._room:  # a walk waiting for room sees the stop at once
            self._room.notify_all()
        self._thread.join(timeout)

    def __enter__(self) -> PrefetchedPages:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _walk(self, pages: Iterator[Batch]) -> None:
        try:
            for page in pages:
                copied = dataclasses.replace(page, cursor=orjson.loads(orjson.dumps(page.cursor)))
                if not self._put((self._PAGE, copied), len(page.observations)):
                    return
            self._put((self._END, None))
        except BaseException as exc:  # handed to the consuming thread, raised there at its place
            self._put((self._ERROR, exc))

    def _put(self, item: tuple[str, Any], objects: int = 0) -> bool:
        """Queue an item once its objects fit (False: the walk was stopped meanwhile)."""
        with self._room:
            while self._queued and self._queued + objects > self._max_objects:
                if self._stop.is_set():
                    return False
                self._room.wait(0.1)
            if self._stop.is_set():
                return False
            self._queued += objects
            self._queue.put(item)
        return True


def _transactions(pages: Iterator[Batch], walk: PrefetchedPages) -> Iterator[list[Batch]]:
    """Consecutive pages per transaction: the next page, then those fetched within TRANSACTION_LINGER_S
    of it, up to about MAX_TRANSACTION_MESSAGES messages; a `done` page always ends its group (its
    hand-over goes last)."""
    for first in pages:
        group, size = [first], len(first.observations)
        until = time.monotonic() + TRANSACTION_LINGER_S
        while not group[-1].done and size < MAX_TRANSACTION_MESSAGES:
            ready = walk.ready(until - time.monotonic())
            if ready is None:
                break
            group.append(ready)
            size += len(ready.observations)
        yield group


def _located(batches: Iterator[Batch], cursor: Callable[[], Any]) -> Iterator[Batch]:
    """Name the cursor in an API error raised mid-walk; the checkpoint stays at that cursor."""
    try:
        yield from batches
    except ApiError as error:
        if not error.params:
            error.params = f"checkpoint cursor {short_cursor(cursor())}"
        raise


class PageMetrics:
    """Per committed page: `apisync.<job>.<api>.<collection>.{pages,records,deletes}` counters, the time
    waited on the rate limiter since the previous page (`.rate_limit_wait`, ms) and the lag (`.lag`, s)."""

    def __init__(self, metrics: Metrics, summary: RunSummary) -> None:
        self._metrics, self._waited_s = metrics, 0.0
        self._stem = (summary.job, summary.api, summary.collection)
        self._tags = {"job": summary.job, "api": summary.api, "collection": summary.collection}

    def page(self, records: int, deletes: int, waited_s: float, lag_s: float | None) -> None:
        m, stem, tags = self._metrics, self._stem, self._tags
        m.incr(metric_name(*stem, "pages"), 1, tags)
        m.incr(metric_name(*stem, "records"), records, tags)
        if deletes:
            m.incr(metric_name(*stem, "deletes"), deletes, tags)
        m.timing(metric_name(*stem, "rate_limit_wait"), round((waited_s - self._waited_s) * 1000, 1), tags)
        self._waited_s = waited_s
        if lag_s is not None:
            m.gauge(metric_name(*stem, "lag"), lag_s, tags)


def _report(tracker: ProgressTracker, batch: Batch, cursor: Any, limiter: MeteredLimiter,
            metrics: PageMetrics) -> None:
    deletes = sum(1 for obs in batch.observations if obs.deleted)
    if batch.note:
        tracker.summary.note = "; ".join(filter(None, (tracker.summary.note, batch.note)))
    if batch.observations:
        # Lag: how old the newest change synced is (a metric, so the worker clock is fine here).
        newest = max(obs.version for obs in batch.observations)
        tracker.summary.lag_s = max(0.0, round(time.time() - newest / 1000, 1))
    tracker.page(len(batch.observations), deletes, cursor, limiter.waited_s, batch.total)
    metrics.page(len(batch.observations), deletes, limiter.waited_s,
                 tracker.summary.lag_s if batch.observations else None)


def _check_collection(source: Source, collection: str) -> None:
    if collection not in source.collections:
        raise ValueError(f"{source.api} has no collection {collection!r}; known: {', '.join(source.collections)}")
