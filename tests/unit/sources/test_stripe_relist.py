"""Stripe's 30-day gap re-list walks like a backfill: a checkpoint per page, a resume after a crash from the
last one, and a hand-over to the event feed that misses no change made while it ran. Newest-first walks
keep a bounded memory of the ids of one `created` second, even when thousands share it."""

from __future__ import annotations

import pytest
from stripe_sim_harness import Runs, StripeSim, cursor_bytes

from apisync.apis.stripe.events import EventWindow
from apisync.apis.stripe.lists import MAX_IDS_AT_CREATED, ListPosition, walk_newest_first
from apisync.apis.stripe.source import SETTLE_S, StripeSource

MAX_CHECKPOINT_BYTES = 64_000
MONTH_S = 31 * 86400


def test_a_gap_relist_commits_each_page_resumes_after_crashes_and_hands_over_without_a_gap():
    sim = StripeSim(objects=350, lag_s=3.0)
    source = StripeSource(page_size=10)  # 35 pages: the relist is many times one batch
    runs = Runs(EventWindow(sim.now_s()).to_cursor())
    sim.advance(MONTH_S)  # nobody polled for a month: the events of the gap are gone
    sim.mutate(20, "update")
    sim.mutate(3, "delete")  # inside the retention: the re-list replays their delete events
    sim.advance(SETTLE_S)
    crashes = 0
    while not runs.run(source, sim.client(), crash_after=3):
        crashes += 1
        # Changes while the re-list is under way: the listing may or may not see them, the feed must.
        for kind in ("create", "update", "delete"):
            sim.mutate(2, kind)
        sim.advance(2)
    sim.advance(SETTLE_S + 4)
    assert runs.run(source, sim.client())

    relisting = [c for c in runs.cursors if "relist" in c]
    print(f"\nrelist: {crashes} crashes, {len(relisting)} checkpoints inside the re-list, largest "
          f"{max(cursor_bytes(c) for c in runs.cursors)} bytes")
    assert crashes >= 10 and len(relisting) >= 30  # progress committed page by page, not once at the end
    assert max(runs.batch_sizes) <= source.page_size
    assert max(cursor_bytes(c) for c in runs.cursors) <= MAX_CHECKPOINT_BYTES
    newest = runs.newest()
    for object_id, data in sim.live().items():
        assert object_id in newest and newest[object_id].data == data, f"customer {object_id} lost or stale"
    deleted = sim.model.data["customer"].deleted  # before and while the re-list ran
    assert len(deleted) > 3 and all(newest[i].deleted for i in deleted)


def test_a_resumed_relist_goes_on_from_its_position():
    sim = StripeSim(objects=120)
    source = StripeSource(page_size=10)
    runs = Runs(EventWindow(sim.now_s()).to_cursor())
    sim.advance(MONTH_S)
    assert not runs.run(source, sim.client(), crash_after=4)
    assert "older than Stripe's 30-day event retention" in _notes(source, sim, runs.cursor)
    listed_before = {o.id for o in runs.observations}
    requests = sim.requests
    assert runs.run(source, sim.client())
    listed_after = [o.id for o in runs.observations[len(listed_before):] if o.source == "poll"]
    assert not listed_before & set(listed_after)  # nothing listed twice: the resume started at the position
    assert listed_before | set(listed_after) >= set(sim.live())
    assert sim.requests - requests <= 120 // 10 - 4 + 4  # the remaining pages and the event window


@pytest.mark.parametrize(("max_ids", "same_second"), [(20, 70), (MAX_IDS_AT_CREATED, 3_500)],
                         ids=["small-bound", "default-bound"])
def test_a_second_holding_3x_the_remembered_ids_is_walked_without_a_skip_when_the_cursor_object_goes(
        max_ids, same_second):
    sim = StripeSim(objects=5)
    sim.mutate(same_second, "create")  # an import: thousands of customers stamped with one second
    client, position, limit = sim.client(), ListPosition(max_ids=max_ids), 10 if max_ids < 100 else 100
    emitted, largest, most_ids = [], 0, 0
    for number, page in enumerate(walk_newest_first(client, "/v1/customers", {}, position, limit)):
        emitted += [obj["id"] for obj in page.objects]
        largest = max(largest, cursor_bytes(position.to_cursor()))
        most_ids = max(most_ids, len(position.ids_at_created))
        if number in (2, 5, 30):
            sim.sim.delete_now("stripe", "customer", position.after)  # Stripe: 400 resource_missing next
    print(f"\n{same_second} customers in one second: largest position {largest} bytes, "
          f"{len(emitted) - len(set(emitted))} listed twice")
    assert set(sim.live()) <= set(emitted)
    assert most_ids <= max_ids and largest <= MAX_CHECKPOINT_BYTES


def _notes(source: StripeSource, sim: StripeSim, cursor: dict) -> str:
    return " ".join(batch.note for batch in source.incremental(sim.client(), "customer", cursor))
