"""Stripe's event window under bursts several times its bound: every event emitted, the checkpoint bounded.

Each scenario drives the simulated Stripe in-process (real routes, events hidden for a while after their
creation, whole-second `created` stamps) and checks two things: every event of the burst reaches an
observation (the downstream version fence absorbs repeats, never a skip), and every checkpoint the
runs commit stays far below Kafka's 1 MB message limit, whatever the burst.
"""

from __future__ import annotations

import pytest
from stripe_sim_harness import Runs, StripeSim, cursor_bytes, event_fingerprint

from apisync.apis.stripe.events import MAX_SEEN, EventWindow, SeenEvents
from apisync.apis.stripe.source import SETTLE_S, StripeSource

MAX_CHECKPOINT_BYTES = 64_000  # the bound this module promises; Kafka refuses messages over 1 MB
SMALL_BOUND = 40


def burst(sim: StripeSim, events: int, shape: str) -> None:
    """`events` customer changes: all in one second, spread over the settle window, or surfacing late."""
    if shape == "one_second":
        sim.mutate(events)
        return
    seconds = SETTLE_S // 2
    for step in range(seconds):
        sim.mutate(events // seconds + (1 if step < events % seconds else 0))
        sim.advance(1)


def run_until_done(sim: StripeSim, source: StripeSource, runs: Runs, crash_after: int | None,
                   max_runs: int = 400) -> int:
    """Incremental runs, each crashing after `crash_after` committed batches, until one finishes; the
    scheduler's retry comes 5 s later on the server clock. Returns how many runs it took."""
    for attempt in range(1, max_runs + 1):
        if runs.run(source, sim.client(), crash_after=crash_after):
            return attempt
        sim.advance(5)
    raise AssertionError(f"no run finished in {max_runs} attempts")


WALKS = [
    pytest.param("one_second", 0.0, id="ties-in-one-second"),
    pytest.param("spread", 0.0, id="spread-over-the-window"),
    pytest.param("spread", 8.0, id="surfacing-late"),
]


@pytest.mark.parametrize("bound", [SMALL_BOUND, MAX_SEEN], ids=["small-bound", "default-bound"])
@pytest.mark.parametrize("crash_after", [None, 2], ids=["no-crash", "crash-every-2-batches"])
@pytest.mark.parametrize(("shape", "lag_s"), WALKS)
def test_a_burst_of_3x_the_bound_skips_no_event_and_keeps_the_checkpoint_bounded(bound, crash_after, shape, lag_s):
    sim = StripeSim(objects=30, lag_s=lag_s)
    # The default bound is the source's own default: nothing passed, as in production.
    source = StripeSource() if bound == MAX_SEEN else StripeSource(page_size=10, max_seen=bound)
    start = sim.now_s()
    runs = Runs(EventWindow(start).to_cursor())
    size = 3 * bound + bound // 2
    sim.advance(1)
    burst(sim, size, shape)
    sim.advance(1)
    run_until_done(sim, source, runs, crash_after)  # the first run reads while events are still surfacing
    sim.advance(SETTLE_S + lag_s + 1)  # every event is visible now: one more run reads them
    run_until_done(sim, source, runs, crash_after)

    truth = sim.events_since(start)
    assert len(truth) == size
    missing = {event_fingerprint(e) for e in truth} - runs.emitted()
    assert not missing, f"{len(missing)} of {size} events never emitted"
    sizes = [cursor_bytes(c) for c in runs.cursors]
    print(f"\n{shape} lag={lag_s} bound={bound} burst={size} crash_after={crash_after}: {len(runs.cursors)} "
          f"checkpoints, largest {max(sizes)} bytes, {len(runs.observations)} observations")
    assert max(sizes) <= MAX_CHECKPOINT_BYTES
    assert all(len(ids) <= bound for ids in [sum(c["seen"].values(), []) for c in runs.cursors])
    assert max(runs.batch_sizes) <= source.page_size  # memory: one page at a time, never the window
    assert len(runs.cursors) > 3  # progress is committed inside the window, not once at its end


def test_30k_events_in_one_settle_window_keep_every_checkpoint_flat():
    """30,000 events in one minute, enough to push an unbounded checkpoint past Kafka's 1 MB limit."""
    sim = StripeSim(objects=200)
    source = StripeSource()
    runs = Runs(EventWindow(sim.now_s()).to_cursor())
    start = sim.now_s()
    sim.advance(1)
    for _ in range(30):
        sim.mutate(1_000)
        sim.advance(2)
    assert runs.run(source, sim.client())
    sim.advance(SETTLE_S + 1)
    assert runs.run(source, sim.client())
    sizes = [cursor_bytes(c) for c in runs.cursors]
    print(f"\n30,000 events: {len(sizes)} checkpoints, largest {max(sizes)} bytes")
    assert max(sizes) <= MAX_CHECKPOINT_BYTES
    missing = {event_fingerprint(e) for e in sim.events_since(start)} - runs.emitted()
    assert not missing


def test_a_resumed_run_goes_on_above_the_last_settled_event_instead_of_re_reading():
    """A backlog older than the settle window resumes at its position: a crash loop still progresses."""
    sim = StripeSim(objects=30)
    source = StripeSource(page_size=10, max_seen=SMALL_BOUND)
    start = sim.now_s()
    runs = Runs(EventWindow(start).to_cursor())
    sim.advance(1)
    sim.mutate(5 * SMALL_BOUND)  # 200 events in one second, 5x what `seen` remembers
    sim.advance(SETTLE_S + 5)  # settled before the first run reads them
    attempts = run_until_done(sim, source, runs, crash_after=1)
    assert attempts <= 5 * SMALL_BOUND // source.page_size + 2  # one page of progress per crashed run
    assert runs.cursors[0].get("after", {}).get("created") == start + 1
    missing = {event_fingerprint(e) for e in sim.events_since(start)} - runs.emitted()
    assert not missing
    assert len(runs.observations) <= 5 * SMALL_BOUND + attempts * source.page_size  # few repeats


@pytest.mark.parametrize("emitted", [3 * SMALL_BOUND, 10 * SMALL_BOUND])
def test_seen_keeps_the_newest_seconds_within_its_bound(emitted):
    seen = SeenEvents(SMALL_BOUND)
    second = {f"evt_{n:05d}": 1_000 + n // 7 for n in range(emitted)}
    for event_id, created in second.items():
        seen.add(event_id, created)
    assert len(seen) == SMALL_BOUND
    kept = {event_id for event_id in second if event_id in seen}
    forgotten = second.keys() - kept
    assert min(second[k] for k in kept) >= max(second[f] for f in forgotten)  # the oldest seconds go first
    restored = SeenEvents.from_cursor(seen.to_cursor(0), 0, SMALL_BOUND)
    assert all(event_id in restored for event_id in kept)


def test_a_cursor_written_before_the_bound_still_dedupes():
    legacy = {"at": 1_000, "seen": ["evt_b", "evt_a"]}
    window = EventWindow.from_cursor(legacy)
    seen = SeenEvents.from_cursor(window.seen, window.at)
    assert "evt_a" in seen and "evt_b" in seen
    assert sorted(seen.to_cursor(1_000 - SETTLE_S)["1000"]) == ["evt_a", "evt_b"]
