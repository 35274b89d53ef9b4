"""Bucket edges of a `delta_t` read in calendar time: local days, weeks, months, years.

Pure and typed: a `Buckets` gives the starts of its buckets as sorted UTC ms (int64) over any
span, exactly across DST changes (a local day lasts 23, 24 or 25 hours). Without a zone a
whole-minute `delta_t` keeps the epoch-aligned UTC buckets the API always had.

Rules (README, "Calendar time"):
- `delta_t` a whole number of days (d x 1440): buckets start at local midnight, every d days
  counted from 1970-01-01; a multiple of 10080 (weeks) counts from Monday 1969-12-29.
- `delta_t` dividing 1440: buckets start where the local wall clock is a multiple of it since
  local midnight; a wall time that occurs twice (autumn) starts two buckets, one that does not
  occur (spring) starts its bucket at the change itself.
- `month`, `quarter`, `year`: local midnight of the first day of each (quarters from January).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import numpy as np
from numpy.typing import NDArray

Period = Literal["month", "quarter", "year"]
PERIODS: Final[tuple[str, ...]] = get_args(Period)
_MONTHS: Final[dict[str, int]] = {"month": 1, "quarter": 3, "year": 12}

MS_PER_MINUTE: Final = 60_000
MINUTES_PER_DAY: Final = 1440
MINUTES_PER_WEEK: Final = 10080
_EPOCH_DATE: Final = dt.date(1970, 1, 1)
_MONDAY_BEFORE_EPOCH: Final = dt.date(1969, 12, 29)
_LAST_ORDINAL: Final = dt.date(9999, 12, 30).toordinal()  # room for one day of offset
# Calendar arithmetic stays within the years datetime can hold.
_MIN_MS: Final = -62_135_596_800_000 + 2 * 86_400_000  # 0001-01-03 UTC
_MAX_MS: Final = 253_402_300_799_000 - 2 * 86_400_000  # 9999-12-29 UTC

I64 = NDArray[np.int64]
_HOUR_MS: Final = 3_600_000
_MAX_EDGES: Final = 200_000  # Buckets.on_hours looks at most at this many edges


class CalendarError(ValueError):
    """A zone or bucket size the calendar cannot use; `field` names the query field."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    # A system tz database also lists `localtime` (a link to the machine's own zone) and
    # `Factory` (no place at all): neither names a place.
    return frozenset(available_timezones()) - {"localtime", "posixrules", "Factory"}


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The IANA zone of that name; CalendarError for a name the tz database does not list."""
    # Only the database's own names: ZoneInfo would also open paths, and `localtime` or
    # `posixrules`, whose meaning is the server machine's setting, not a place.
    if name not in _zone_names():
        raise CalendarError(f"Unknown time zone {name!r} (an IANA name, e.g. Europe/Warsaw)", "tz")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise CalendarError(
            f"Unknown time zone {name!r} (an IANA name, e.g. Europe/Warsaw)", "tz"
        ) from exc


def parse_delta_t(raw: str | int | None) -> int | Period | None:
    """`delta_t` as the wire gives it: whole minutes, or `month`, `quarter`, `year`."""
    if raw is None or isinstance(raw, int):
        return raw
    text = raw.strip()
    if text in PERIODS:
        return text  # type: ignore[return-value]  # checked against Period's values just above
    try:
        return int(text)
    except ValueError:
        raise CalendarError(
            "delta_t must be a whole number of minutes or one of month, quarter, year", "delta_t"
        ) from None


@dataclass(frozen=True, slots=True)
class Buckets:
    """The buckets of a read: a size (minutes or a calendar period) in a zone (None: UTC epoch)."""

    size: int | Period
    tz: ZoneInfo | None = None

    def __post_init__(self) -> None:
        if isinstance(self.size, int):
            if self.size <= 0:
                raise CalendarError("delta_t must be a positive number of minutes", "delta_t")
            whole_days = self.size % MINUTES_PER_DAY == 0
            if self.tz is not None and not (whole_days or MINUTES_PER_DAY % self.size == 0):
                raise CalendarError(
                    "with tz, delta_t must be a whole number of days (a multiple of 1440) or "
                    "divide a day (1440), or be month, quarter or year",
                    "delta_t",
                )
        elif self.size not in PERIODS:
            raise CalendarError(f"Unknown calendar period {self.size!r}", "delta_t")

    @property
    def epoch_aligned(self) -> bool:
        """Fixed-size buckets aligned to the UTC epoch (the behaviour without `tz`)."""
        return isinstance(self.size, int) and self.tz is None

    @property
    def nominal_ms(self) -> int:
        """A bucket's usual length, for estimating how many a window holds (DST changes add
        or remove a bucket or an hour a few times a year, which such an estimate ignores)."""
        if isinstance(self.size, int):
            return self.size * MS_PER_MINUTE
        return {"month": 28, "quarter": 90, "year": 365}[self.size] * 86_400_000

    def on_hours(self, since: int, till: int) -> bool:
        """Whether every bucket edge within since..till is a UTC hour edge, so that a bucket
        is a whole number of hours (pipeline.HourSums): epoch-aligned whole hours, or in a
        zone whose offsets there are whole hours, sizes of whole hours or days, months,
        quarters, years. Windows of more than _MAX_EDGES buckets are not looked at (False)."""
        if self.epoch_aligned:
            assert isinstance(self.size, int)
            return self.size % 60 == 0
        if isinstance(self.size, int) and self.size % 60:
            return False
        if since >= till or (till - since) // self.nominal_ms > _MAX_EDGES:
            return False
        return bool((self.edges(since, till - 1) % _HOUR_MS == 0).all())

    def edges(self, lo: int, hi: int) -> I64:
        """Sorted bucket starts: the start of the bucket holding `lo`, every start after it up to
        `hi`, and the first start after `hi` (the end of the last bucket). Needs lo <= hi."""
        if lo > hi:
            raise ValueError("lo must not be after hi")
        if self.epoch_aligned:
            assert isinstance(self.size, int)
            step = self.size * MS_PER_MINUTE
            first = (lo // step) * step
            return np.arange(first, (hi // step + 1) * step + 1, step, dtype=np.int64)
        tz = self.tz or dt.UTC
        d_lo = _local_date(min(max(lo, _MIN_MS), _MAX_MS), tz) - dt.timedelta(days=1)
        d_hi = _local_date(min(max(hi, _MIN_MS), _MAX_MS), tz) + dt.timedelta(days=1)
        y_lo, y_hi = d_lo.year - 1, d_hi.year + 1
        within_a_year = isinstance(self.size, str) or self.size <= 366 * MINUTES_PER_DAY
        if within_a_year and y_lo > 1 and y_hi < 9999:
            # Every bucket holding a time of year y starts in year y - 1 or later.
            starts = np.concatenate([_year_starts(self.size, tz, y) for y in range(y_lo, y_hi + 1)])
        else:
            starts = _starts(self.size, d_lo, d_hi, tz)
        # Past years 1..9999 (huge sizes, far windows) a bucket runs to the span's end; its
        # start there is no calendar instant, so a counter is never read at it.
        if starts.shape[0] == 0 or starts[0] > lo:
            starts = np.concatenate([np.array([min(lo, _MIN_MS)], dtype=np.int64), starts])
        if starts[-1] <= hi:
            starts = np.concatenate([starts, np.array([max(hi + 1, _MAX_MS)], dtype=np.int64)])
        i = max(int(np.searchsorted(starts, lo, side="right")) - 1, 0)
        j = int(np.searchsorted(starts, hi, side="right")) + 1
        return starts[i:j]


def _starts(size: int | str, d_lo: dt.date, d_hi: dt.date, tz: dt.tzinfo) -> I64:
    """Bucket starts from before local midnight of d_lo to after that of d_hi."""
    if isinstance(size, str):
        return _period_starts(d_lo, d_hi, _MONTHS[size], tz)
    if size % MINUTES_PER_DAY == 0:
        return _day_starts(d_lo, d_hi, size // MINUTES_PER_DAY, tz)
    return _subday_starts(d_lo, d_hi, size, tz)


# A year of 15-minute starts is 280 kB: this holds at most about 36 MB.
@lru_cache(maxsize=128)
def _year_starts(size: int | str, tz: dt.tzinfo, year: int) -> I64:
    """The bucket starts within one local calendar year, computed once per (size, zone, year):
    reads ask for the same years again and again, and resolving local midnights costs
    microseconds per day."""
    first, last = dt.date(year, 1, 1), dt.date(year, 12, 31)
    starts = _starts(size, first, last, tz)
    begin = _first_instant(first, 0, tz)
    end = _first_instant(dt.date(year + 1, 1, 1), 0, tz)
    out = starts[(starts >= begin) & (starts < end)]
    out.setflags(write=False)  # shared by every read of that year
    return out


def _local_date(ms: int, tz: dt.tzinfo) -> dt.date:
    return dt.datetime.fromtimestamp(ms / 1000, tz).date()


def _ms(wall: dt.datetime) -> int:
    """UTC ms of an aware datetime, exactly (no float rounding)."""
    delta = wall - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _first_instant(day: dt.date, minute: int, tz: dt.tzinfo) -> int:
    """The first instant at which the wall clock reads `minute` past midnight of `day`; for a
    wall time that does not exist (spring), the instant of the change that skips it."""
    wall = dt.datetime.combine(day, dt.time(), tzinfo=tz) + dt.timedelta(minutes=minute)
    return _instants(wall, tz)[0]


def _instants(wall: dt.datetime, tz: dt.tzinfo) -> list[int]:
    """Every instant at which the wall clock reads `wall` (naive fields, tz attached): one, two
    in a fold, or for a wall time in a gap the one instant of the change that skips it."""
    early = _ms(wall.replace(fold=0, tzinfo=tz))
    late = _ms(wall.replace(fold=1, tzinfo=tz))
    if early == late:
        return [early]
    naive = wall.replace(tzinfo=None, fold=0)

    def reads(ms: int) -> bool:
        return _wall_at(ms, tz) == naive

    if reads(early) and reads(late):
        return sorted({early, late})
    # A gap: fold=1 maps it before the change, fold=0 after; the change lies between.
    a, b = min(early, late), max(early, late)
    off_a = _offset_ms(a, tz)
    while b - a > 1:  # the first ms with the later offset
        mid = (a + b) // 2
        if _offset_ms(mid, tz) == off_a:
            a = mid
        else:
            b = mid
    return [b]


def _wall_at(ms: int, tz: dt.tzinfo) -> dt.datetime:
    return (dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=ms + _offset_ms(ms, tz))).replace(
        fold=0
    )


def _offset_ms(ms: int, tz: dt.tzinfo) -> int:
    at = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)
    off = at.astimezone(tz).utcoffset()
    assert off is not None
    return off // dt.timedelta(milliseconds=1)


def _day_starts(d_lo: dt.date, d_hi: dt.date, days: int, tz: dt.tzinfo) -> I64:
    anchor = (_MONDAY_BEFORE_EPOCH if days % 7 == 0 else _EPOCH_DATE).toordinal()
    lo, hi = d_lo.toordinal(), d_hi.toordinal()
    first = lo - (lo - anchor) % days
    out = [
        _first_instant(dt.date.fromordinal(o), 0, tz)
        for o in range(first, hi + days + 1, days)
        if 1 <= o <= _LAST_ORDINAL
    ]
    return np.array(out, dtype=np.int64)


def _period_starts(d_lo: dt.date, d_hi: dt.date, months: int, tz: dt.tzinfo) -> I64:
    index = d_lo.year * 12 + d_lo.month - 1
    index -= index % months
    end = d_hi.year * 12 + d_hi.month - 1 + months
    out = [
        _first_instant(dt.date(i // 12, i % 12 + 1, 1), 0, tz)
        for i in range(index, end + 1, months)
        if 1 <= i // 12 <= 9999
    ]
    return np.array(out, dtype=np.int64)


def _subday_starts(d_lo: dt.date, d_hi: dt.date, minutes: int, tz: dt.tzinfo) -> I64:
    step = minutes * MS_PER_MINUTE
    per_day = MINUTES_PER_DAY // minutes
    pieces: list[I64] = []
    day = d_lo
    start = _first_instant(day, 0, tz)
    while day <= d_hi:
        nxt = day + dt.timedelta(days=1)
        end = _first_instant(nxt, 0, tz)
        if end - start == 86_400_000 and _offset_ms(start, tz) == _offset_ms(end - 1, tz):
            # No change of offset this day: the wall-clock multiples are evenly spaced.
            pieces.append(np.arange(start, end, step, dtype=np.int64))
        else:
            # The day of a change: each wall time resolved on its own (one, two or the change).
            edges = {start}
            for k in range(1, per_day):
                wall = dt.datetime.combine(day, dt.time(), tzinfo=tz) + dt.timedelta(
                    minutes=k * minutes
                )
                edges.update(_instants(wall, tz))
            pieces.append(np.array(sorted(e for e in edges if start <= e < end), dtype=np.int64))
        day, start = nxt, end
    pieces.append(np.array([start], dtype=np.int64))
    return np.concatenate(pieces)


def label_points(time: I64, edges: I64) -> I64:
    """The start of the bucket holding each time (times within the edges' span)."""
    return edges[np.searchsorted(edges, time, side="right") - 1]
