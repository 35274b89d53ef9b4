"""web.timectl: the page's time control as URL state."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from besmart_server.web.timectl import window

TODAY = date(2026, 11, 18)  # a Wednesday


@pytest.mark.parametrize(
    ("period", "start", "since", "till"),
    [
        pytest.param("day", "2026-03-29", datetime(2026, 3, 29), datetime(2026, 3, 30), id="day"),
        pytest.param(
            "week",
            "2026-11-18",
            datetime(2026, 11, 16),
            datetime(2026, 11, 23),
            id="week-snaps-to-monday",
        ),
        pytest.param("month", "2026-02-14", datetime(2026, 2, 1), datetime(2026, 3, 1), id="month"),
        pytest.param("year", "2026-07-01", datetime(2026, 1, 1), datetime(2027, 1, 1), id="year"),
        pytest.param(
            None, None, datetime(2026, 11, 16), datetime(2026, 11, 23), id="default-this-week"
        ),
        pytest.param(
            "bogus",
            "not-a-date",
            datetime(2026, 11, 16),
            datetime(2026, 11, 23),
            id="malformed-falls-back",
        ),
    ],
)
def test_presets(period: str | None, start: str | None, since: datetime, till: datetime) -> None:
    w = window(period, start, None, None, today=TODAY)
    assert (w.since, w.till) == (since, till)


def test_prev_next_follow_the_calendar() -> None:
    m = window("month", "2026-01-31", None, None, today=TODAY)
    assert (m.shifted(1).since, m.shifted(1).till) == (datetime(2026, 2, 1), datetime(2026, 3, 1))
    assert m.shifted(-1).since == datetime(2025, 12, 1)
    y = window("year", "2026-01-01", None, None, today=TODAY)
    assert y.shifted(-1).till == datetime(2026, 1, 1)
    c = window("custom", None, "2026-01-01T06:00", "2026-01-01T18:00", today=TODAY)
    assert (c.shifted(1).since, c.shifted(1).till) == (
        datetime(2026, 1, 1, 18),
        datetime(2026, 1, 2, 6),
    )


def test_url_round_trip_keeps_as_of_and_compare() -> None:
    w = window("day", "2026-05-05", None, None, as_of="2026-05-06T07:15", compare=True, today=TODAY)
    p = w.params()
    assert p == {
        "period": "day",
        "start": "2026-05-05",
        "as_of": "2026-05-06T07:15",
        "compare": "1",
        "tz": "UTC",
    }
    again = window(p["period"], p["start"], None, None, as_of=p["as_of"], compare=True, today=TODAY)
    assert again == w
    assert w.since_ms == 1_777_939_200_000
    assert w.as_of_ms == 1_778_051_700_000
    assert "as_of" not in w.params(as_of=None)


def test_custom_needs_an_ordered_window() -> None:
    w = window("custom", None, "2026-01-02T00:00", "2026-01-01T00:00", today=TODAY)
    assert w.period == "week"


def test_weather_overlay_is_url_state_and_only_known_names() -> None:
    w = window("day", "2026-05-05", None, None, weather="irradiance", today=TODAY)
    assert w.params()["weather"] == "irradiance"
    assert "weather=irradiance" in w.preset("week")
    assert window("day", None, None, None, weather="x", today=TODAY).weather is None


def test_a_zone_sets_the_calendar_and_dst_days_have_23_or_25_hours() -> None:
    spring = window("day", "2026-03-29", None, None, tz="Europe/Warsaw", today=TODAY)
    assert spring.since_ms == 1_774_738_800_000  # 2026-03-28T23:00Z, local midnight (CET)
    assert spring.till_ms - spring.since_ms == 23 * 3_600_000
    autumn = window("day", "2026-10-25", None, None, tz="Europe/Warsaw", today=TODAY)
    assert autumn.till_ms - autumn.since_ms == 25 * 3_600_000
    assert autumn.shifted(1).till_ms - autumn.shifted(1).since_ms == 24 * 3_600_000
    assert autumn.params()["tz"] == "Europe/Warsaw"
    assert "tz=Europe%2FWarsaw" in autumn.preset("week")
    as_of = window(
        "day", "2026-07-01", None, None, as_of="2026-07-01T02:00", tz="Europe/Warsaw", today=TODAY
    )
    assert as_of.as_of_ms == 1_782_864_000_000  # 02:00 CEST = 00:00Z


def test_unknown_or_malformed_zones_fall_back_to_utc() -> None:
    for bad in ("Mars/Olympus", "../../etc/passwd", "/etc/localtime", "", None, "x" * 100):
        assert window("day", "2026-01-01", None, None, tz=bad, today=TODAY).tz == "UTC"


@pytest.mark.parametrize(
    ("period", "start", "since", "till", "tz"),
    [
        pytest.param("day", "9999-12-31", None, None, "UTC", id="day-9999-12-31"),
        pytest.param("day", "9999-12-30", None, None, "Etc/GMT+12", id="day-before-it-west"),
        pytest.param("month", "9999-12-05", None, None, "UTC", id="month-9999-12"),
        pytest.param("year", "9999-06-01", None, None, "UTC", id="year-9999"),
        pytest.param("year", "0001-06-01", None, None, "UTC", id="year-1"),
        pytest.param("week", "0001-01-01", None, None, "UTC", id="week-0001-01-01"),
        pytest.param("week", "0001-01-07", None, None, "Pacific/Kiritimati", id="week-1-east"),
        pytest.param(
            "custom", None, "0001-01-01T00:00", "9999-12-31T00:00", "UTC", id="custom-everything"
        ),
    ],
)
def test_windows_at_the_ends_of_the_calendar_fall_back_to_this_week(
    period: str, start: str | None, since: str | None, till: str | None, tz: str
) -> None:
    """A page links the periods before and after its window: where one of them (or the window)
    is not a datetime Python holds, the URL is treated as malformed (it was a 500)."""
    w = window(period, start, since, till, tz=tz, today=TODAY, as_of="9999-12-31T23:59")
    assert (w.period, w.since, w.till) == ("week", datetime(2026, 11, 16), datetime(2026, 11, 23))
    assert w.as_of is None
    for n in (-1, 1):
        w.shifted(n).query()
    assert w.since_ms < w.till_ms
