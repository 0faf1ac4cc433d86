"""The backfill's prefetch and page grouping, without Kafka or an API: order, errors, bounds, cursors."""

import threading
import time

import pytest

from apisync.events import Observation
from apisync.sources import Batch
from apisync.sync import runner
from apisync.sync.runner import PrefetchedPages, _commit_pages, _transactions


def page(n: int, size: int = 2, done: bool = False) -> Batch:
    observations = [Observation("stripe", "customer", f"cus_{n}_{i}", 1000 + n, "backfill", "", {"n": n})
                    for i in range(size)]
    return Batch(observations, {"page": n}, done=done)


def walk(count: int, log: list | None = None, finished: threading.Event | None = None):
    for n in range(1, count + 1):
        if log is not None:
            log.append(n)
        yield page(n, done=n == count)
    if finished is not None:
        finished.set()  # the prefetch thread queued every page and asked for one more


# Generous: only a stuck walk takes this long, however loaded the machine is.
PATIENCE_S = 60.0


def wait_until(condition, what: str) -> None:
    """Poll `condition()` until it holds; fail (naming `what`) only if it never does."""
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {PATIENCE_S:.0f}s"
        time.sleep(0.01)


def test_pages_come_out_in_walk_order_and_all_of_them():
    with PrefetchedPages(walk(7)) as pages:
        assert [batch.cursor["page"] for batch in pages] == list(range(1, 8))


def test_a_cursor_the_walk_mutates_later_is_copied_when_yielded():
    finished = threading.Event()

    def mutating():
        cursor = {"after": None, "seen": []}
        for n in range(1, 4):
            cursor["after"] = f"cus_{n}"
            cursor["seen"].append(n)
            yield Batch([], cursor, done=n == 3)  # the same dict object every time, as a careless source might
        finished.set()

    with PrefetchedPages(mutating()) as pages:
        assert finished.wait(PATIENCE_S), "the walk did not run to its end"  # it mutated after every yield
        cursors = [batch.cursor for batch in pages]
    assert cursors == [{"after": "cus_1", "seen": [1]}, {"after": "cus_2", "seen": [1, 2]},
                       {"after": "cus_3", "seen": [1, 2, 3]}]


def test_an_error_comes_out_after_the_pages_fetched_before_it_and_stays():
    def failing():
        yield page(1)
        yield page(2)
        raise RuntimeError("HTTP 500 on page 3")

    with PrefetchedPages(failing()) as pages:
        assert next(pages).cursor == {"page": 1}
        assert pages.ready(PATIENCE_S).cursor == {"page": 2}
        assert pages.ready(PATIENCE_S) is None  # the error is next (taken, not waited for): ready() never raises it
        with pytest.raises(RuntimeError, match="page 3"):
            next(pages)
        with pytest.raises(RuntimeError, match="page 3"):
            next(pages)


def test_the_walk_runs_at_most_max_objects_ahead():
    fetched: list[int] = []
    with PrefetchedPages(walk(50, fetched), max_objects=6) as pages:  # pages of 2 objects
        next(pages)
        # one handed out, three queued, and one more fetched and waiting for room
        wait_until(lambda: len(fetched) >= 1 + 3 + 1, "the walk did not fill the room it had")
        time.sleep(0.3)  # a walk that ignored the bound would run on meanwhile; a bounded one cannot
        assert len(fetched) == 1 + 3 + 1
        next(pages)  # room for one more page
        wait_until(lambda: len(fetched) >= 2 + 3 + 1, "the walk did not take the room a page left")
        time.sleep(0.3)
        assert len(fetched) == 2 + 3 + 1


def test_big_pages_are_fetched_ahead_by_objects_not_by_pages():
    # Salesforce answers up to 2,000 records a page: a bound in pages would hold 2,000 times more
    fetched: list[int] = []

    def big_pages():
        for n in range(1, 20):
            fetched.append(n)
            yield page(n, size=4)

    with PrefetchedPages(big_pages(), max_objects=10) as pages:
        next(pages)
        wait_until(lambda: len(fetched) >= 1 + 2 + 1, "the walk did not fill the room it had")
        time.sleep(0.3)  # a walk bounded in pages would run on meanwhile
        assert len(fetched) == 1 + 2 + 1  # two pages of 4 fit in 10 objects, the third waits


def test_a_page_larger_than_the_bound_still_goes_through():
    with PrefetchedPages(iter([page(1, size=5), page(2, size=5, done=True)]), max_objects=3) as pages:
        assert [batch.cursor["page"] for batch in pages] == [1, 2]


def test_ready_does_not_block_and_end_is_kept_for_next():
    gate = threading.Event()

    def slow():
        yield page(1)
        gate.wait(PATIENCE_S)
        yield page(2, done=True)

    with PrefetchedPages(slow()) as pages:
        assert next(pages).cursor == {"page": 1}
        # Page 2 exists only after the gate opens, and the gate opens only after ready() returned: a
        # ready() that waited for the next page would come back with page 2 (after PATIENCE_S), not None.
        assert pages.ready() is None
        gate.set()
        assert next(pages).cursor == {"page": 2}
        assert pages.ready(PATIENCE_S) is None  # the end: taken, and kept for next()
        with pytest.raises(StopIteration):
            next(pages)


def test_close_stops_an_endless_walk():
    def endless():
        n = 0
        while True:
            n += 1
            yield page(n)

    pages = PrefetchedPages(endless(), max_objects=4)
    next(pages)
    pages.close(timeout=PATIENCE_S)
    assert not pages._thread.is_alive()


def test_transactions_take_the_ready_pages_up_to_the_message_cap_and_end_at_done(monkeypatch):
    monkeypatch.setattr(runner, "MAX_TRANSACTION_MESSAGES", 5)  # pages of 2 messages: 3 pages reach it
    finished = threading.Event()
    with PrefetchedPages(walk(8, finished=finished), max_objects=16) as pages:
        assert finished.wait(PATIENCE_S), "the walk did not run to its end"  # everything fetched and queued
        groups = [[batch.cursor["page"] for batch in group] for group in _transactions(pages, pages)]
    assert groups == [[1, 2, 3], [4, 5, 6], [7, 8]]
    assert [n for group in groups for n in group] == list(range(1, 9))


def test_a_transaction_lingers_for_pages_still_being_fetched(monkeypatch):
    # A page every 20 ms, commits faster than that: without the linger each transaction would take the
    # one page ready when it starts (ten transactions, each ~10 ms of broker CPU whatever its size).
    # The linger outlasts the walk however slow a loaded machine makes it; the done page ends it early.
    monkeypatch.setattr(runner, "TRANSACTION_LINGER_S", PATIENCE_S)

    def paced():
        for n in range(1, 11):
            time.sleep(0.02)
            yield page(n, done=n == 10)

    with PrefetchedPages(paced()) as pages:
        groups = [[batch.cursor["page"] for batch in group] for group in _transactions(pages, pages)]
    assert [n for group in groups for n in group] == list(range(1, 11))
    assert len(groups) == 1  # the linger outlasts the walk: every page in one transaction


def test_a_linger_ends_as_soon_as_the_walk_does(monkeypatch):
    monkeypatch.setattr(runner, "TRANSACTION_LINGER_S", PATIENCE_S)
    with PrefetchedPages(iter([page(1)])) as pages:  # an incremental walk: its last page is not `done`
        started = time.monotonic()
        groups = list(_transactions(pages, pages))
    # A linger that waited past the end would take all of PATIENCE_S; half of it is never needed otherwise.
    assert len(groups) == 1 and time.monotonic() - started < PATIENCE_S / 2  # the end is not waited for


def test_a_done_page_ends_its_transaction():
    batches = iter([page(1), page(2, done=True), page(3)])  # a walk that (wrongly) goes on after done

    class Ready:
        def ready(self, wait_s=0.0):
            return next(batches, None)

    assert [[b.cursor["page"] for b in g] for g in _transactions(batches, Ready())] == [[1, 2], [3]]


class RecordingWriter:
    def __init__(self):
        self.transactions = []

    def write_pages(self, pages, key, checkpoint):
        self.transactions.append(([[m.key for m in messages] for messages in pages], key, checkpoint))


def test_each_transaction_carries_the_cursor_after_its_last_page_and_counts_on():
    writer, reported = RecordingWriter(), []
    _commit_pages(writer, "stripe.backfill.customer", walk(5), 10, located=lambda: None,
                  messages=lambda batch: [runner.change_message(obs) for obs in batch.observations],
                  checkpoint=lambda last, n: {"cursor": last.cursor, "pages": n, "done": last.done},
                  report=lambda batch: reported.append(batch.cursor["page"]))
    assert reported == [1, 2, 3, 4, 5]  # reported after their commit, in order
    pages = [n for keys, _key, _cp in writer.transactions for n in range(len(keys))]
    assert len(pages) == 5
    last_keys, _key, last_checkpoint = writer.transactions[-1]
    assert last_checkpoint["cursor"] == {"page": 5} and last_checkpoint["done"]
    assert last_checkpoint["pages"] == 15  # 10 committed before this run + 5
    committed = 10
    for keys, _key, checkpoint in writer.transactions:
        committed += len(keys)
        assert checkpoint["pages"] == committed
        assert checkpoint["cursor"] == {"page": committed - 10}
    assert last_keys[-1] == ["stripe.customer.cus_5_0", "stripe.customer.cus_5_1"]
