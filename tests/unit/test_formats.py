from datetime import UTC, datetime, timedelta, timezone

from apisync.formats import epoch_to_iso, http_date_s, iso_utc, ms_to_iso, shorten


def test_every_instant_is_written_in_one_wire_format():
    assert ms_to_iso(1_795_704_812_345) == "2026-11-26T14:53:32.345Z"
    assert ms_to_iso(1_795_704_812_000) == "2026-11-26T14:53:32.000Z"
    assert epoch_to_iso(1_795_704_812.3459) == "2026-11-26T14:53:32.345Z"
    berlin = datetime(2026, 11, 26, 15, 53, 32, 7000, tzinfo=timezone(timedelta(hours=1)))
    assert iso_utc(berlin) == "2026-11-26T14:53:32.007Z"
    assert iso_utc(datetime(2026, 11, 26, 14, 53, 32)) == "2026-11-26T14:53:32.000Z"  # naive = UTC
    # milliseconds are cut, never rounded up into the next second
    assert iso_utc(datetime(2026, 11, 26, 14, 53, 32, 999_999, tzinfo=UTC)) == "2026-11-26T14:53:32.999Z"
    assert datetime.fromisoformat(ms_to_iso(1_795_704_812_345)) == datetime.fromtimestamp(1_795_704_812.345, UTC)


def test_http_dates_and_short_text():
    assert http_date_s("Thu, 26 Nov 2026 14:53:32 GMT") == 1_795_704_812
    assert http_date_s("tomorrow") is None and http_date_s(None) is None and http_date_s("") is None
    assert shorten("abcdef", 6) == "abcdef" and shorten("abcdefg", 6) == "abcde…"
