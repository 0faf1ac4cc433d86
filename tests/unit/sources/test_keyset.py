"""KeysetPosition: overlap dedupe on (id, version, content), cursor round trip, window pruning."""

from apisync.sources.keyset import KeysetPosition


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
    assert set(position.to_cursor(lookback_ms=60_000)["recent"]) == {"new"}
