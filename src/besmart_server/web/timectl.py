"""The page's one time control, kept in the URL: a period (day, week, month, year, custom), its
start, an optional "as of" acquisition time and "compare with the previous period".

Periods follow the calendar of a time zone kept in the URL (`tz`, an IANA name; the client's
time zone setting when absent): a day runs from
local midnight to local midnight (23 or 25 hours across a DST change), a week starts on a
local Monday. Datetimes here are naive wall times in that zone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from besmart_server.server.signals import calendar

PERIODS = ("day", "week", "month", "year", "custom")
# Weather overlays a page may draw on its charts: name → (signal type moid, label).
WEATHER = {"temperature": (139, "air temperature"), "irradiance": (1031, "irradiance (GHI)")}
DEFAULT_PERIOD = "week"
_MINUTE_FMT = "%Y-%m-%dT%H:%M"


def zone(name: str | None) -> str:
    """A known IANA zone name, else "UTC"."""
    try:
        calendar.zone(name or "")
    except calendar.CalendarError:
        return "UTC"
    return name or "UTC"


def _ms(d: datetime, tz: str = "UTC") -> int:
    return int(d.replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def wall(ms: int, tz: str) -> datetime:
    """UTC ms as the naive wall time of zone `tz`."""
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(ZoneInfo(tz)).replace(tzinfo=None)


def _parse_day(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def parse_minute(text: str | None) -> datetime | None:
    """A `YYYY-MM-DDTHH:MM` (the datetime-local input's value) as UTC; None when absent/bad."""
    if not text:
        return None
    try:
        return datetime.strptime(text[:16], _MINUTE_FMT)
    except ValueError:
        return None


def _add_months(d: date, n: int) -> date:
    m = d.month - 1 + n
    return date(d.year + m // 12, m % 12 + 1, 1)


@dataclass(frozen=True, slots=True)
class Window:
    """One view's time: [since, till) as naive wall times in `tz`, and the URL state."""

    period: str
    since: datetime
    till: datetime
    as_of: datetime | None = None
    compare: bool = False
    weather: str | None = None  # a key of WEATHER
    tz: str = "UTC"  # IANA zone of the calendar and the labels

    @property
    def since_ms(self) -> int:
        """Start, UTC ms."""
        return _ms(self.since, self.tz)

    @property
    def till_ms(self) -> int:
        """End (exclusive), UTC ms."""
        return _ms(self.till, self.tz)

    @property
    def as_of_ms(self) -> int | None:
        """The as-of acquisition time, UTC ms."""
        return None if self.as_of is None else _ms(self.as_of, self.tz)

    def shifted(self, n: int) -> Window:
        """The window `n` periods later (earlier for negative n)."""
        if self.period == "day":
            delta = timedelta(days=n)
            return replace(self, since=self.since + delta, till=self.till + delta)
        if self.period == "week":
            delta = timedelta(weeks=n)
            return replace(self, since=self.since + delta, till=self.till + delta)
        if self.period == "month":
            start = _add_months(self.since.date(), n)
            return replace(
                self,
                since=datetime.combine(start, datetime.min.time()),
                till=datetime.combine(_add_months(start, 1), datetime.min.time()),
            )
        if self.period == "year":
            y = self.since.year + n
            return replace(self, since=datetime(y, 1, 1), till=datetime(y + 1, 1, 1))
        delta = (self.till - self.since) * n
        return replace(self, since=self.since + delta, till=self.till + delta)

    def params(self, **changes: object) -> dict[str, str]:
        """The URL query of this window (with `changes` applied to the fields first)."""
        w = replace(self, **changes) if changes else self  # type: ignore[arg-type]
        out = {"period": w.period}
        if w.period == "custom":
            out["since"] = w.since.strftime(_MINUTE_FMT)
            out["till"] = w.till.strftime(_MINUTE_FMT)
        else:
            out["start"] = w.since.date().isoformat()
        if w.as_of is not None:
            out["as_of"] = w.as_of.strftime(_MINUTE_FMT)
        if w.compare:
            out["compare"] = "1"
        if w.weather:
            out["weather"] = w.weather
        out["tz"] = w.tz  # always: a shared URL must not depend on the client's setting
        return out

    def query(self, **changes: object) -> str:
        """`params` as a query string."""
        return urlencode(self.params(**changes))

    def preset(self, period: str) -> str:
        """The query of `period` starting where this window starts (snapped to its calendar)."""
        return urlencode(
            window(
                period,
                self.since.date().isoformat(),
                None,
                None,
                as_of=None if self.as_of is None else self.as_of.strftime(_MINUTE_FMT),
                compare=self.compare,
                weather=self.weather,
                tz=self.tz,
                today=self.since.date(),
            ).params()
        )


# The calendar a page can show: its window and the periods before and after it (the page links
# both) must be datetimes Python holds, a day's margin for any zone's offset (9999-12-31 and a
# day or week after it was a 500).
_FIRST = datetime(1, 1, 2)
_LAST = datetime(9999, 12, 31)


def _fits(w: Window) -> bool:
    around = (w.shifted(-1), w, w.shifted(1))
    return all(x.since >= _FIRST and x.till <= _LAST for x in around)


def window(
    period: str | None,
    start: str | None,
    since: str | None,
    till: str | None,
    *,
    as_of: str | None = None,
    compare: bool = False,
    weather: str | None = None,
    tz: str | None = None,
    today: date,
) -> Window:
    """The window a URL asks for; anything missing or malformed falls back to the current week,
    and so does a window at the ends of the calendar (years 1 and 9999)."""
    try:
        w = _window(
            period,
            start,
            since,
            till,
            as_of=as_of,
            compare=compare,
            weather=weather,
            tz=tz,
            today=today,
        )
        fits = _fits(w)
    except (OverflowError, ValueError):  # the day or the year after 9999-12-31
        fits = False
    if not fits:
        w = _window(None, None, None, None, compare=compare, weather=weather, tz=tz, today=today)
    if w.as_of is not None and not _FIRST <= w.as_of <= _LAST:
        w = replace(w, as_of=None)
    return w


def _window(
    period: str | None,
    start: str | None,
    since: str | None,
    till: str | None,
    *,
    as_of: str | None = None,
    compare: bool = False,
    weather: str | None = None,
    tz: str | None = None,
    today: date,
) -> Window:
    p = period if period in PERIODS else DEFAULT_PERIOD
    as_of_dt = parse_minute(as_of)
    wx = weather if weather in WEATHER else None
    z = zone(tz)
    if p == "custom":
        s, t = parse_minute(since), parse_minute(till)
        if s is not None and t is not None and s < t:
            return Window(p, s, t, as_of_dt, compare, wx, z)
        p = DEFAULT_PERIOD
    d = _parse_day(start) or today
    if p == "day":
        s_d, t_d = d, d + timedelta(days=1)
    elif p == "week":
        s_d = d - timedelta(days=d.weekday())
        t_d = s_d + timedelta(weeks=1)
    elif p == "month":
        s_d = date(d.year, d.month, 1)
        t_d = _add_months(s_d, 1)
    else:
        s_d, t_d = date(d.year, 1, 1), date(d.year + 1, 1, 1)
    mn = datetime.min.time()
    return Window(p, datetime.combine(s_d, mn), datetime.combine(t_d, mn), as_of_dt, compare, wx, z)
