"""KeysetPosition: overlap dedupe on (id, version, content), cursor round trip, window pruning, and a memory
bounded by dropping entries (duplicates), never by skipping, in every walk order and for any burst."""

import random

import orjson
import pytest

from apisync.sources.keyset import MAX_CURSOR_BYTES, MAX_RECENT, KeysetPosition, digest

BASE = 1_800_000_000_000
ORDERS = {  # how a walk meets the objects of one burst: by (version, id), newest first, by creation
    "ascending": lambda objects: sorted(objects),
    "newest_first": lambda objects: sorted(objects, reverse=True),
    "created_order": lambda objects: random.Random(7).sample(objects, len(objects)),
}


def test_same_version_with_new_content_is_new():
    position = KeysetPosition()
    position.advance("a", 1000, {"IsDeleted": False})
    assert not position.is_new("a", 1000, {"IsDeleted": False})
    # A delete stamped in the same whole second as the update before it must not be dropped.
    assert position.is_new("a", 1000, {"IsDeleted": True})
    assert position.is_new("a", 2000, {"IsDeleted": False})


def test_position_only_moves_forward_and_survives_a_round_trip():
    position = KeysetPosition()
    position.advance("b", 5000, {})
    position.advance("a", 3000, {})  # an older late arrival inside the lookback
    assert (position.version, position.last_id) == (5000, "b")
    restored = KeysetPosition.from_cursor(position.to_cursor(lookback_ms=10_000))
    assert (restored.version, restored.last_id) == (5000, "b")
    assert not restored.is_new("a", 3000, {}) and not restored.is_new("b", 5000, {})


def test_cursor_forgets_what_the_lookback_can_no_longer_re_read():
    position = KeysetPosition()
    position.advance("old", 1_000, {})
    position.advance("new", 100_000, {})
    assert [row[1] for row in position.to_cursor(lookback_ms=60_000)["recent"]] == ["new"]


def test_a_cursor_from_the_older_dict_form_still_dedupes():
    legacy = {"since": "2026-01-01T00:00:00.000Z", "last_id": "b",
              "recent": {"a": [1_767_225_599_000, digest({"x": 1})]}}
    restored = KeysetPosition.from_cursor(legacy)
    assert not restored.is_new("a", 1_767_225_599_000, {"x": 1}) and restored.is_new("a", 1_767_225_599_000, {})


def test_a_legacy_forgotten_mark_is_ignored_so_nothing_below_it_is_skipped():
    legacy = {"since": "2026-01-01T00:00:00.000Z", "last_id": "b", "recent": [], "forgotten": [1_767_225_600_000, "z"]}
    assert KeysetPosition.from_cursor(legacy).is_new("a", 1_767_225_599_000, {})


def _burst(count: int, per_ms: int = 20) -> list[tuple[int, str]]:
    """`count` distinct (version, id), `per_ms` of them in each millisecond: one lookback window."""
    return [(BASE + n // per_ms, f"{n:07d}") for n in range(count)]


def _walk(position: KeysetPosition, observations) -> list[tuple[int, str]]:
    """Emit what the position calls new, as the walks do; returns the emitted (version, id)."""
    emitted = []
    for version, object_id in observations:
        if position.is_new(object_id, version, version):
            position.advance(object_id, version, version)
            emitted.append((version, object_id))
    return emitted


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("bound", [10, MAX_RECENT])
def test_a_burst_three_times_the_memory_skips_nothing_in_any_walk_order(order, bound):
    burst = _burst(3 * bound + 7)
    position = KeysetPosition(max_recent=bound)
    emitted = _walk(position, ORDERS[order](burst))
    size = len(orjson.dumps(position.to_cursor(lookback_ms=60_000)))
    print(f"{order} burst {len(burst)} bound {bound}: emitted {len(emitted)}, memory {len(position.recent)}, "
          f"checkpoint {size} bytes")
    assert sorted(emitted) == sorted(burst)  # each object once: nothing skipped
    assert len(position.recent) <= bound and size <= MAX_CURSOR_BYTES + 200


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("bound", [10, MAX_RECENT])
def test_a_restart_after_a_burst_emits_late_commits_below_the_position(order, bound):
    """A long transaction's rows surface after the burst with older stamps; the restart re-reads the window."""
    burst = _burst(3 * bound + 7)
    late = [(version, object_id + "L") for version, object_id in burst[:: max(1, bound // 5)]]
    position = KeysetPosition(max_recent=bound)
    _walk(position, ORDERS[order](burst))
    cursor = position.to_cursor(lookback_ms=60_000)
    print(f"{order} bound {bound}: checkpoint {len(orjson.dumps(cursor))} bytes, {len(cursor['recent'])} entries")
    restarted = KeysetPosition.from_cursor(cursor, max_recent=bound)
    emitted = _walk(restarted, ORDERS[order](burst + late))
    assert set(late) <= set(emitted)  # every late commit, whatever the memory forgot
    assert len(emitted) < len(burst) + len(late)  # and the remembered part of the window is deduped


def test_is_new_is_false_only_for_what_was_emitted_with_that_version_and_content():
    """Random re-reads, updates and restarts over a small memory: a `False` always names a true duplicate."""
    rng, position, emitted = random.Random(3), KeysetPosition(max_recent=8), set()
    for step in range(5_000):
        object_id = f"o{rng.randrange(60)}"
        version, content = BASE + rng.randrange(40) * 1000, rng.randrange(3)
        if not position.is_new(object_id, version, content):
            assert (object_id, version, content) in emitted
        else:
            position.advance(object_id, version, content)
            emitted.add((object_id, version, content))
        if step % 500 == 499:
            position = KeysetPosition.from_cursor(position.to_cursor(lookback_ms=20_000, max_bytes=200), 8)


def test_600k_objects_in_one_window_keep_the_cursor_and_memory_bounded():
    """A mass update (600 k objects inside one lookback window) never grows the checkpoint past its bound (far
    below Kafka's 1 MB message limit) nor the run's memory; a restart re-reads the window and skips nothing."""
    position = KeysetPosition()
    sizes = []
    for n in range(600_000):  # ascending (version, id), 20 objects per millisecond: all inside 60 s
        object_id, version = f"{n:07d}", BASE + n // 20
        assert position.is_new(object_id, version, n)
        position.advance(object_id, version, n)
        if n % 100_000 == 99_999:
            sizes.append((len(position.recent), len(orjson.dumps(position.to_cursor(60_000)))))
    print(f"(memory entries, checkpoint bytes) every 100 k objects: {sizes}")
    assert all(recent <= MAX_RECENT and size <= 64_000 for recent, size in sizes)
    assert len(set(sizes)) == 1  # flat: the same bounded size after 100 k as after 600 k
    restored = KeysetPosition.from_cursor(position.to_cursor(60_000))
    # The newest part of the window is remembered (deduped) ...
    last = f"{599_999:07d}"
    assert not restored.is_new(last, BASE + 599_999 // 20, 599_999)
    # ... the rest is re-emitted on a re-read (duplicates the fence absorbs), never skipped.
    assert all(restored.is_new(f"{n:07d}", BASE + n // 20, n) for n in range(0, 500_000, 997))
    assert restored.is_new("9999999", BASE + 30_000, "next")
    assert restored.is_new(last, BASE + 599_999 // 20, "changed in the same second")
