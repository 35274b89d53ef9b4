"""The benchmark's data: deterministic, realistic series and how they are cut into requests.

- ``meters``: S sensors x (A+ counter, P+ power, U1-U3 voltages) at 15 minutes over D days.
  Power follows a daily load shape (morning and evening peaks, a midday bump), a seasonal
  and a weekend factor and smoothed noise; the A+ counter is the running integral of that
  power, so it never decreases; voltages sit around 230 V and sag a little with the load.
- ``minute``: one P+ series at 1 minute over ``minute_days`` (365 days = 525,600 points).
- ``versions``: one P+ series at 15 minutes over ``version_days``, written ``versions`` times
  (acquisition versions 0 … n-1, each a small correction of the one before).

Every series is generated from its own seeded generator, so a series does not change when the
number of sensors does, and two runs produce identical bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

MS_MINUTE = 60_000
MS_15MIN = 15 * MS_MINUTE
MS_HOUR = 60 * MS_MINUTE
MS_DAY = 24 * MS_HOUR
START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
WEATHER_START_MS = 1_672_531_200_000  # 2023-01-01T00:00:00Z (a typical-year file has no 29 Feb)
WEATHER_AT = (50.10, 19.90)  # the queried place, inside the grid below
T_AIR = 139  # air temperature (stored in K)

A_PLUS = 32  # active energy import register, kWh, cumulative
P_PLUS = 1001  # active power import, kW, instantaneous
EA_PLUS = 1011  # active energy import per period, kWh, interval
# Calendar reads (issue 17): ten years of 15-minute energy read in Warsaw's local months.
DECADE_START_MS = 1_451_602_800_000  # 2016-01-01 00:00 Europe/Warsaw
CALENDAR_TZ = "Europe/Warsaw"
U1, U2, U3 = 53, 54, 55  # phase voltages, V, instantaneous
METER_SIGNALS: tuple[int, ...] = (A_PLUS, P_PLUS, U1, U2, U3)

Layout = Literal["time", "series"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class Series:
    """One time series (or one acquisition version of one) as columns."""

    measurement: str  # "sig" (meters), "minute" or "ver": the peers' measurement name
    sensor: str  # sensor name; a besmart sensor, a tag/label at the peers
    moid: int  # besmart signal_type_moid
    time: IntArray  # capture times, UTC ms, strictly increasing
    value: FloatArray
    version: int | None = None  # acquisition version (0 = first) for the versioned series
    acq_ms: int | None = None  # acquisition stamp the peers store beside a version

    def __len__(self) -> int:
        return int(self.time.shape[0])

    @property
    def key(self) -> str:
        base = f"{self.sensor}/{self.moid}"
        return base if self.version is None else f"{base}@v{self.version}"


@dataclass(frozen=True, eq=False)
class Chunk:
    """A contiguous slice ``[start, stop)`` of one series."""

    series: Series
    start: int
    stop: int

    @property
    def time(self) -> IntArray:
        return self.series.time[self.start : self.stop]

    @property
    def value(self) -> FloatArray:
        return self.series.value[self.start : self.stop]

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True, eq=False)
class Batch:
    """What one write request carries (the same points to every engine)."""

    chunks: tuple[Chunk, ...]

    @property
    def points(self) -> int:
        return sum(len(c) for c in self.chunks)


@dataclass(frozen=True)
class Spec:
    """Sizes of a run."""

    sensors: int
    days: int
    minute_days: int
    version_days: int
    versions: int = 5
    weather_days: int = 365  # of the weather grid (hourly, from WEATHER_START_MS)
    decade_days: int = 3653  # of the 15-minute energy series read in local months
    multi_series: int = 100  # series in the multi-series read (whole sensors, rounded up)
    batch_points: int = 10_000  # points per write request
    push_steps: int = 288  # 15-minute readings pushed live after the meters' span (row 1d)
    seed: int = 20240101
    start_ms: int = START_MS

    def __post_init__(self) -> None:
        if min(self.sensors, self.days, self.minute_days, self.version_days, self.push_steps) < 1:
            raise ValueError("sensors, push_steps and every number of days must be at least 1")
        if not 3 <= self.weather_days <= 365:
            raise ValueError("weather_days must be 3 to 365 (one typical year at most)")
        if self.versions < 1 or self.batch_points < 1 or self.multi_series < 1:
            raise ValueError("versions, batch_points and multi_series must be at least 1")


# 20 sensors x 5 signals = the 100 series of the multi-series read; a year of each.
FULL = Spec(sensors=20, days=365, minute_days=365, version_days=365)
QUICK = Spec(
    sensors=2,
    days=7,
    minute_days=7,
    version_days=7,
    weather_days=7,
    decade_days=62,
    batch_points=2_000,
    push_steps=16,
)


@dataclass(frozen=True, eq=False)
class Query:
    """One read of the benchmark, engine-neutral."""

    series: tuple[Series, ...]
    since: int
    till: int
    expected_points: int  # points (or buckets) each series' answer must hold in total
    delta_t_min: int | None = None
    tz: str | None = None  # the zone of calendar buckets (besmart's `tz`)


@dataclass(frozen=True, eq=False)
class WeatherPoint:
    """One weather grid point: a year of hourly values, stamped at the end of each hour
    (as an EPW file has them: 2023-01-01T01:00Z … 2024-01-01T00:00Z)."""

    lat: float
    lon: float
    time: IntArray
    temp_c: FloatArray
    ghi_wm2: FloatArray
    wind_ms: FloatArray


@dataclass(frozen=True, eq=False)
class Workload:
    spec: Spec
    meters: tuple[Series, ...]
    minute: Series
    versions: tuple[Series, ...]
    sensors: tuple[str, ...] = field(default=())
    weather: tuple[WeatherPoint, ...] = field(default=())
    decade: Series | None = None  # 15-minute energy over ten years (the local-month read)
    pushed: tuple[Series, ...] = field(default=())  # the meters' readings after their span

    @property
    def stored_points(self) -> int:
        """Every point version all writes leave in storage."""
        decade = 0 if self.decade is None else len(self.decade)
        return (
            sum(len(s) for s in self.meters)
            + len(self.minute)
            + sum(map(len, self.versions))
            + decade
            + sum(len(s) for s in self.pushed)
        )

    def decade_batches(self) -> list[Batch]:
        """Written after the ingest rows (not part of their rates): the decade of energy."""
        return pack([] if self.decade is None else [self.decade], self.spec.batch_points, "series")

    def ingest_batches(self, layout: Layout = "time") -> list[Batch]:
        """Phase 1: every first version (meters, the minute series, version 0)."""
        size = self.spec.batch_points
        return (
            pack(self.meters, size, layout)
            + pack([self.minute], size, "series")
            + pack(self.versions[:1], size, "series")
        )

    def push_batches(self) -> list[Batch]:
        """Row 1d, after the meters' year is stored: their next readings as a head-end system
        pushes them live, one request a 15-minute step holding one point of every series."""
        return pack(self.pushed, len(self.pushed), "time")

    def writer_streams(self, writers: int) -> list[list[Batch]]:
        """The meters' first versions split among `writers` clients by sensor (each writes
        its own sensors' series, in batches of the time layout): concurrent writers of
        disjoint series."""
        names = list(self.sensors) or sorted({s.sensor for s in self.meters})
        group = {name: i % writers for i, name in enumerate(names)}
        size = self.spec.batch_points
        return [
            pack([s for s in self.meters if group[s.sensor] == k], size, "time")
            for k in range(writers)
        ]

    def version_batches(self) -> list[Batch]:
        """Phase 1b: versions 1 … n-1 of the versioned series, oldest first."""
        return pack(self.versions[1:], self.spec.batch_points, "series")

    # -- the reads -----------------------------------------------------------------------

    def raw_query(self) -> Query:
        """One series of 15-minute data over the whole span (a year: 35,040 points)."""
        series = self.meters[METER_SIGNALS.index(P_PLUS)]
        return Query((series,), int(series.time[0]), _end(series, MS_15MIN), len(series))

    def last_query(self) -> Query:
        """The newest version per capture time over the versioned series."""
        newest = self.versions[-1]
        return Query(self.versions, int(newest.time[0]), _end(newest, MS_15MIN), len(newest))

    def daily_query(self) -> Query:
        """Daily means of the 1-minute series."""
        s = self.minute
        return Query((s,), int(s.time[0]), _end(s, MS_MINUTE), self.spec.minute_days, 1440)

    def daily_tz_query(self) -> Query:
        """Daily means of the 1-minute series in Warsaw's local days (23/24/25 hours)."""
        s = self.minute
        till = _end(s, MS_MINUTE)
        days = _calendar_buckets(s.time, 1440)
        return Query((s,), int(s.time[0]), till, days, 1440, CALENDAR_TZ)

    def monthly_query(self) -> Query:
        """Energy of each of Warsaw's local months over the decade series."""
        assert self.decade is not None
        s = self.decade
        months = _calendar_buckets(s.time, "month")
        return Query((s,), int(s.time[0]), _end(s, MS_15MIN), months, None, CALENDAR_TZ)

    def multi_query(self) -> Query:
        """Whole sensors' series (about ``multi_series`` of them) over one day."""
        n_sensors = min(self.spec.sensors, math.ceil(self.spec.multi_series / len(METER_SIGNALS)))
        chosen = self.meters[: n_sensors * len(METER_SIGNALS)]
        since = self.spec.start_ms + (self.spec.days // 2) * MS_DAY
        till = since + MS_DAY
        per_series = int(np.count_nonzero((chosen[0].time >= since) & (chosen[0].time < till)))
        return Query(chosen, since, till, per_series * len(chosen))

    def weather_query(self) -> Query:
        """Hourly T_AIR at ``WEATHER_AT`` (interpolated from the grid), all but the first and
        the last day of the grid's span (a full run: 2 Jan to 31 Dec, 8,712 hours)."""
        since = WEATHER_START_MS + MS_DAY
        till = WEATHER_START_MS + (self.spec.weather_days - 1) * MS_DAY
        return Query((), since, till, (till - since) // MS_HOUR, 60)


def _end(series: Series, step: int) -> int:
    return int(series.time[-1]) + step


def _calendar_buckets(time: IntArray, size: int | str) -> int:
    """How many of CALENDAR_TZ's buckets of `size` (minutes or "month") hold a time."""
    from besmart_server.server.signals.calendar import Buckets, label_points, zone

    buckets = Buckets(size, zone(CALENDAR_TZ))  # type: ignore[arg-type]
    edges = buckets.edges(int(time[0]), int(time[-1]))
    return int(np.unique(label_points(time, edges)).shape[0])


def pack(series: Sequence[Series], batch_points: int, layout: Layout) -> list[Batch]:
    """Cut series into write batches of at most ``batch_points`` points.

    ``time``: every series advances together (each batch holds a slice of each series over
    the same window: what a gateway of many meters sends). ``series``: one series after the
    other, slices filling each batch (a history import).
    """
    if not series:
        return []
    if layout == "time":
        per = max(1, batch_points // len(series))
        longest = max(len(s) for s in series)
        return [
            Batch(tuple(Chunk(s, i, min(i + per, len(s))) for s in series if i < len(s)))
            for i in range(0, longest, per)
        ]
    batches: list[Batch] = []
    current: list[Chunk] = []
    room = batch_points
    for s in series:
        pos = 0
        while pos < len(s):
            take = min(room, len(s) - pos)
            current.append(Chunk(s, pos, pos + take))
            pos += take
            room -= take
            if room == 0:
                batches.append(Batch(tuple(current)))
                current, room = [], batch_points
    if current:
        batches.append(Batch(tuple(current)))
    return batches


# -- generation --------------------------------------------------------------------------


def _round(a: FloatArray, decimals: int) -> FloatArray:
    return np.asarray(np.round(a, decimals), dtype=np.float64)


def _rng(spec: Spec, *salt: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, *salt])


def _times(spec: Spec, days: int, step_ms: int) -> IntArray:
    n = days * MS_DAY // step_ms
    return spec.start_ms + np.arange(n, dtype=np.int64) * step_ms


def daily_shape(time_ms: IntArray) -> FloatArray:
    """Relative household/small-business load by time of day (UTC used as local time)."""
    hour = (time_ms % MS_DAY) / MS_HOUR
    morning = 0.45 * np.exp(-0.5 * ((hour - 7.5) / 1.2) ** 2)
    midday = 0.20 * np.exp(-0.5 * ((hour - 13.0) / 2.5) ** 2)
    evening = 0.80 * np.exp(-0.5 * ((hour - 19.0) / 1.8) ** 2)
    return np.asarray(0.35 + morning + midday + evening, dtype=np.float64)


def _season_and_week(time_ms: IntArray) -> FloatArray:
    day = time_ms // MS_DAY
    season = 1.0 + 0.25 * np.cos(2 * np.pi * ((day % 365) - 15) / 365.0)  # winter peak
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    weekend = np.where(weekday >= 5, 1.10, 1.0)
    return np.asarray(season * weekend, dtype=np.float64)


def _smooth_noise(rng: np.random.Generator, n: int, width: int) -> FloatArray:
    """Zero-mean noise with short memory (white noise through an exponential kernel)."""
    kernel = np.exp(-np.arange(width, dtype=np.float64) / max(1.0, width / 3))
    kernel /= np.sqrt(np.sum(kernel**2))
    white = rng.standard_normal(n + width - 1)
    return np.asarray(np.convolve(white, kernel, mode="valid"), dtype=np.float64)


def power_kw(rng: np.random.Generator, time_ms: IntArray, scale_kw: float) -> FloatArray:
    """Instantaneous import power: shape x season x weekend x (1 + noise), >= 0.01 kW, 3 dp."""
    n = time_ms.shape[0]
    noisy = 1.0 + 0.10 * _smooth_noise(rng, n, 8) + 0.04 * rng.standard_normal(n)
    p = scale_kw * daily_shape(time_ms) * _season_and_week(time_ms) * noisy
    return _round(np.maximum(p, 0.01), 3)


def counter_kwh(power: FloatArray, step_ms: int, start_kwh: float) -> FloatArray:
    """A register: the reading at t is the start plus the energy of every interval before t."""
    hours = step_ms / MS_HOUR
    energy = np.concatenate(([0.0], np.cumsum(power[:-1] * hours)))
    return _round(start_kwh + energy, 3)


def voltage_v(rng: np.random.Generator, time_ms: IntArray, load: FloatArray) -> FloatArray:
    """Phase voltage around 230 V: a daily swing, a sag under load, measurement noise, 1 dp."""
    hour = (time_ms % MS_DAY) / MS_HOUR
    offset = rng.normal(0.0, 1.5)
    swing = 2.5 * np.sin(2 * np.pi * (hour - 4.0) / 24.0)
    sag = 4.0 * (load / max(float(np.max(load)), 1e-9))
    u = 230.0 + offset + swing - sag + 0.6 * rng.standard_normal(time_ms.shape[0])
    return _round(u, 1)


def _meter(spec: Spec, index: int) -> tuple[Series, ...]:
    name = f"m{index:03d}"
    t = _times(spec, spec.days, MS_15MIN)
    rng = _rng(spec, 1, index)
    scale = float(rng.uniform(0.8, 6.0))
    start_kwh = float(np.round(rng.uniform(1_000.0, 50_000.0), 3))
    p = power_kw(_rng(spec, 2, index), t, scale)
    out = [
        Series("sig", name, A_PLUS, t, counter_kwh(p, MS_15MIN, start_kwh)),
        Series("sig", name, P_PLUS, t, p),
    ]
    for phase, moid in enumerate((U1, U2, U3)):
        out.append(Series("sig", name, moid, t, voltage_v(_rng(spec, 3, index, phase), t, p)))
    return tuple(out)


def _pushed(spec: Spec, meter: Series) -> Series:
    """`meter`'s next `push_steps` readings after its span: the shape of its first ones, a
    counter going on from where it stopped (it never decreases)."""
    k = spec.push_steps
    t = meter.time[-1] + np.arange(1, k + 1, dtype=np.int64) * MS_15MIN
    head = meter.value[: k + 1]
    if meter.moid == A_PLUS:
        value = _round(meter.value[-1] + (head[1:] - head[0]), 3)
    else:
        value = head[1:].copy()
    return Series(meter.measurement, meter.sensor, meter.moid, t, value)


def _versions(spec: Spec) -> tuple[Series, ...]:
    t = _times(spec, spec.version_days, MS_15MIN)
    value = power_kw(_rng(spec, 5), t, 3.0)
    acq0 = spec.start_ms + spec.version_days * MS_DAY + MS_HOUR
    out = []
    for k in range(spec.versions):
        if k:
            rng = _rng(spec, 6, k)
            value = _round(np.maximum(value * (1.0 + 0.02 * rng.standard_normal(len(t))), 0.0), 3)
        out.append(Series("ver", "ver000", P_PLUS, t, value, k, acq0 + k * MS_HOUR))
    return tuple(out)


def weather_grid(spec: Spec) -> tuple[WeatherPoint, ...]:
    """Four grid points 0.25° apart around ``WEATHER_AT``: temperature with a seasonal and a
    daily cycle, a crude clear-sky-times-clouds irradiance, gusty wind."""
    t = WEATHER_START_MS + MS_HOUR + np.arange(spec.weather_days * 24, dtype=np.int64) * MS_HOUR
    day = (t - WEATHER_START_MS) / MS_DAY
    hour = (t % MS_DAY) / MS_HOUR
    out = []
    for i, (lat, lon) in enumerate(((50.0, 19.75), (50.0, 20.0), (50.25, 19.75), (50.25, 20.0))):
        rng = _rng(spec, 7, i)
        season = -np.cos(2 * np.pi * (day - 15) / 365.0)
        temp = 8.5 + 10.0 * season + 4.0 * np.sin(2 * np.pi * (hour - 9) / 24) - 0.3 * i
        temp = temp + 1.5 * _smooth_noise(rng, t.shape[0], 24)
        sun = np.maximum(0.0, np.sin(np.pi * (hour - 6 + 2 * season) / (12 + 4 * season)))
        clouds = np.clip(0.6 + 0.35 * _smooth_noise(rng, t.shape[0], 12), 0.1, 1.0)
        ghi = np.round(800.0 * (0.75 + 0.25 * season) * sun * clouds)
        wind = _round(np.abs(3.5 + 2.0 * _smooth_noise(rng, t.shape[0], 6)), 1)
        out.append(WeatherPoint(lat, lon, t, _round(temp, 1), _round(ghi, 0), wind))
    return tuple(out)


def generate(spec: Spec) -> Workload:
    """The whole workload for these sizes (a full run: about 4.2 M points, well under 1 s)."""
    meters = tuple(s for i in range(spec.sensors) for s in _meter(spec, i))
    tm = _times(spec, spec.minute_days, MS_MINUTE)
    minute = Series("minute", "min000", P_PLUS, tm, power_kw(_rng(spec, 4), tm, 4.0))
    versions = _versions(spec)
    td = (
        DECADE_START_MS
        + np.arange(spec.decade_days * MS_DAY // MS_15MIN, dtype=np.int64) * MS_15MIN
    )
    # Quarter-hour energy of a 4 kW peak load: power x 0.25 h, kWh with 3 decimals.
    energy = _round(power_kw(_rng(spec, 5), td, 4.0) * 0.25, 3)
    decade = Series("decade", "dec000", EA_PLUS, td, energy)
    sensors = (
        *dict.fromkeys(s.sensor for s in meters),
        minute.sensor,
        versions[0].sensor,
        decade.sensor,
    )
    pushed = tuple(_pushed(spec, s) for s in meters)
    return Workload(spec, meters, minute, versions, sensors, weather_grid(spec), decade, pushed)
