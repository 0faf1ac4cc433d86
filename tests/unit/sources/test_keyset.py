"""KeysetPosition: overlap dedupe on (id, version, content), cursor round trip, window pruning."""

import orjson

from apisync.sources.keyset import MAX_RECENT, KeysetPosition, digest


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


def test_600k_objects_in_one_window_keep_the_cursor_and_memory_bounded():
    """Issue 11 item 1: a mass update (600 k objects inside one lookback window) never grows the checkpoint
    past its bound (far below Kafka's 1 MB message limit) nor the run's memory, and skips/duplicates nothing."""
    position = KeysetPosition()
    base = 1_800_000_000_000
    sizes = []
    for n in range(600_000):  # ascending (version, id), 20 objects per millisecond: all inside 60 s
        object_id = f"{n:07d}"
        version = base + n // 20
        assert position.is_new(object_id, version, n)
        position.advance(object_id, version, n)
        if n % 100_000 == 99_999:
            sizes.append((len(position.recent), len(position._heap), len(orjson.dumps(position.to_cursor(60_000)))))
    assert all(recent <= MAX_RECENT and heap <= 2 * MAX_RECENT + 1 and size <= 64_000 for recent, heap, size in sizes)
    assert len({s[0] for s in sizes}) == 1  # flat: the same bounded size after 100 k as after 600 k
    # A restart from the checkpoint re-reads the whole window: nothing already emitted is new again ...
    restored = KeysetPosition.from_cursor(position.to_cursor(60_000))
    assert not any(restored.is_new(f"{n:07d}", base + n // 20, n) for n in range(0, 600_000, 997))
    # ... while anything after the position, or a changed content at a remembered version, is.
    assert restored.is_new("9999999", base + 30_000, "next")
    last = f"{599_999:07d}"
    assert restored.is_new(last, base + 599_999 // 20, "changed in the same second")
