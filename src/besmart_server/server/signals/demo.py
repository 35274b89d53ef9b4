"""Demo signal data: a month of realistic 15-minute data for the demo sensors, deterministic.

Meters get A+/A- registers (stored as the meter reads them: secondary side, so
`apply_multiplier=true` shows primary values) and P+; the PV installation a clear-sky-like
bell with cloudy days; meters and the transformer U1-U3 around 230 V. Counters are consistent
with the sensor states: within a state with both readings the register runs from
`value_for_since` to `value_for_till`, and an open state continues at the previous rate, so
stitching across meter_2's swap shows a continuous counter. meter_2's registers also cover the
two days before its latest swap when the swap precedes the month, so the stitch is visible.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Connection, select

from besmart_server.server.demo_info import DemoInfo
from besmart_server.server.sensors.tables import sensors
from besmart_server.server.signals.catalog import SignalType, signal_type_by_symbol
from besmart_server.server.signals.pipeline import Frame, StatePeriod
from besmart_server.server.signals.service import load_periods
from besmart_server.server.signals.store import SeriesStore
from besmart_server.wire import TYPE_DBL

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

Q_MS: Final = 15 * 60_000
DAY_MS: Final = 86_400_000
DAYS: Final = 30
MAX_HISTORY_DAYS: Final = 400  # counters are integrated from the first state, at most this far
SEED: Final = 20_260_101
KRAKOW: Final = (50.06, 19.94)


def _type(symbol: str) -> SignalType:
    t = signal_type_by_symbol(symbol)
    assert t is not None, symbol
    return t


def _moid(symbol: str) -> int:
    return _type(symbol).moid


class _Writer:
    """Writes whole series through the store, as live writes (the store stamps them)."""

    def __init__(self, conn: Connection, store: SeriesStore) -> None:
        self.conn = conn
        self.store = store

    def __call__(self, mid: int, symbol: str, time: I64, value: F64) -> None:
        key = (mid, _moid(symbol))
        sid = self.store.series_ids(self.conn, [key], create=True)[key]
        n = time.shape[0]
        frame = Frame(
            time.astype(np.int64),
            np.ones(n, dtype=np.int64),
            np.zeros(n, dtype=np.int64),  # stamped by the store
            np.full(n, TYPE_DBL, dtype=np.int8),
            np.round(value.astype(np.float64), 4).astype(np.float64),
        )
        live = np.ones(n, dtype=np.bool_)
        self.store.insert(self.conn, np.full(n, sid, dtype=np.int64), frame, live=live)


# --- profiles (kW shapes, vectorised over UTC ms) -----------------------------------------


def _hours(t: I64, lon: float) -> F64:
    """Local solar hour of day."""
    return ((t % DAY_MS) / 3_600_000 + lon / 15.0) % 24.0


def _weekend(t: I64) -> NDArray[np.bool_]:
    # 1970-01-01 was a Thursday: day index 2 and 3 (mod 7) are Saturday and Sunday.
    return np.isin((t // DAY_MS) % 7, (2, 3))


def _daily_noise(t: I64, rng: np.random.Generator, lo: float, hi: float) -> F64:
    days = t // DAY_MS
    first = int(days.min())
    per_day = rng.uniform(lo, hi, int(days.max()) - first + 1)
    return per_day[days - first]


def clear_sky(t: I64, lat: float, lon: float) -> F64:
    """Relative clear-sky PV output (0..1): sine of the sun's elevation, to a power."""
    doy = ((t // DAY_MS) % 365.25).astype(np.float64)
    decl = np.radians(23.44) * np.sin(2 * np.pi * (284 + doy) / 365.0)
    hour_angle = np.radians(15.0 * (_hours(t, lon) - 12.0))
    phi = np.radians(lat)
    sin_el = np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.cos(hour_angle)
    out: F64 = np.clip(sin_el, 0.0, None) ** 1.3
    return out


def pv_power(t: I64, kwp: float, lat: float, lon: float, rng: np.random.Generator) -> F64:
    """PV power (kW): clear-sky bell times a daily cloudiness and some passing clouds."""
    cloud = _daily_noise(t, rng, 0.25, 1.0)
    flicker = np.clip(1.0 - rng.gamma(1.0, 0.06, t.shape[0]), 0.3, 1.0)
    out: F64 = kwp * 0.85 * clear_sky(t, lat, lon) * cloud * flicker
    return out


def household_load(t: I64, rng: np.random.Generator) -> F64:
    """Apartment block load shape (~1 on average): morning and evening peaks."""
    h = _hours(t, KRAKOW[1])
    shape = (
        0.45
        + 0.5 * np.exp(-(((h - 7.5) / 1.5) ** 2))
        + 0.9 * np.exp(-(((h - 19.5) / 2.2) ** 2))
        + 0.15 * _weekend(t)
    )
    return np.clip(
        shape * _daily_noise(t, rng, 0.85, 1.15) + rng.normal(0, 0.05, t.shape), 0.05, None
    )


def workshop_load(t: I64, rng: np.random.Generator) -> F64:
    """Workshop load shape (~1 on average): working hours on weekdays, a base load at night."""
    h = _hours(t, KRAKOW[1])
    working = (h >= 7) & (h < 16) & ~_weekend(t)
    shape = np.where(working, 2.2, 0.35) + 0.3 * np.exp(-(((h - 12.0) / 1.0) ** 2)) * working
    return np.clip(
        shape * _daily_noise(t, rng, 0.8, 1.2) + rng.normal(0, 0.08, t.shape), 0.05, None
    )


def voltages(t: I64, rng: np.random.Generator) -> list[F64]:
    """Three phase voltages around 230 V: a daily sag at the evening peak, phase offsets."""
    h = _hours(t, KRAKOW[1])
    common = 231.0 - 3.0 * np.exp(-(((h - 19.5) / 2.5) ** 2)) + 1.5 * np.sin(2 * np.pi * h / 24)
    return [common + off + rng.normal(0, 0.6, t.shape) for off in (0.0, -0.8, 0.6)]


# --- counters consistent with sensor states ------------------------------------------------


def counter(
    grid: I64, power: F64, states: list[StatePeriod], *, rate: float
) -> tuple[F64, F64, F64]:
    """Register readings (as the meters read them) on `grid` for a load of `rate * power` kW,
    the primary-side power actually drawn (kW) and the meter's factor (CT·VT), consistent with
    the states' readings.

    A state with both readings rescales the load so that its register runs exactly from
    `value_for_since` to `value_for_till`; later states keep that rate. Times outside every
    state read the plain integral (factor 1).
    """
    energy = np.concatenate(([0.0], np.cumsum(power * 0.25)))[:-1]  # kWh-shape before each slot
    reading = energy * rate
    primary = power * rate
    factor_at = np.ones(grid.shape[0])
    for s in states:
        till = np.iinfo(np.int64).max if s.till is None else s.till
        inside = (grid >= s.since) & (grid < till)
        if not inside.any():
            continue
        i0 = int(np.searchsorted(grid, s.since))
        i1 = int(np.searchsorted(grid, till)) if s.till is not None else grid.shape[0]
        e0 = energy[min(i0, energy.shape[0] - 1)]
        span = (energy[min(i1, energy.shape[0] - 1)] - e0) if s.till is not None else 0.0
        vfs = 0.0 if s.value_for_since is None else s.value_for_since
        if s.value_for_till is not None and s.till is not None and span > 0:
            rate = (s.value_for_till - vfs) * s.factor / span  # primary kWh per shape-kWh
        reading[inside] = vfs + rate * (energy[inside] - e0) / s.factor
        primary[inside] = rate * power[inside]
        factor_at[inside] = s.factor
    return reading, primary, factor_at


# --- the loader --------------------------------------------------------------------------


def _location(conn: Connection, mid: int) -> tuple[float, float]:
    row = conn.execute(select(sensors.c.lat, sensors.c.lon).where(sensors.c.mid == mid)).first()
    if row is None or row.lat is None or row.lon is None:
        return KRAKOW
    return float(row.lat), float(row.lon)


def load(conn: Connection, info: DemoInfo) -> None:
    """Write the 30 days before the UTC day `info.today` for the demo sensors in `info.sensors`."""
    end = info.today
    start = end - DAYS * DAY_MS
    month = np.arange(start, end, Q_MS, dtype=np.int64)
    rng = np.random.default_rng(SEED)
    write = _Writer(conn, SeriesStore(conn.dialect.name))
    roles = info.sensors
    meters_primary = np.zeros(month.shape[0])

    for role, shape_fn, rate, export in (
        ("meter_1", workshop_load, 15.0, 0.0),
        ("meter_2", household_load, 0.6, 0.06),
    ):
        mid = roles.get(role)
        if mid is None:
            continue
        a_plus, a_minus = _type("A+"), _type("A-")
        st_plus = load_periods(conn, mid, a_plus, multiply=True)
        st_minus = load_periods(conn, mid, a_minus, multiply=True)
        first = min([s.since for s in st_plus] + [start])
        base = max(first // Q_MS * Q_MS, end - MAX_HISTORY_DAYS * DAY_MS)
        grid = np.arange(base, end, Q_MS, dtype=np.int64)
        load_shape = shape_fn(grid, rng)
        pv_shape = clear_sky(grid, *KRAKOW) * _daily_noise(grid, rng, 0.2, 1.0)
        plus, p_primary, factor_at = counter(grid, load_shape, st_plus, rate=rate)
        minus, export_primary, _ = counter(grid, pv_shape, st_minus, rate=max(export, 1e-3))
        # The month, and for meter_2 also the days around a swap that precedes it.
        swaps = [s.since for s in st_plus[1:] if s.since < start]
        lo = min(start, swaps[-1] - 2 * DAY_MS) if swaps else start
        keep = grid >= lo
        write(mid, "A+", grid[keep], plus[keep])
        write(mid, "A-", grid[keep], minus[keep])
        in_month = grid >= start
        # P+ as the meter measures it (secondary side); apply_multiplier gives the primary.
        write(mid, "P+", grid[in_month], p_primary[in_month] / factor_at[in_month])
        # what the meter draws from the transformer: its import less what it feeds back
        meters_primary += p_primary[in_month] - export_primary[in_month]
        for phase, u in zip(("U1", "U2", "U3"), voltages(month, rng), strict=True):
            write(mid, phase, month, u)

    if (pv := roles.get("pv")) is not None:
        lat, lon = _location(conn, pv)
        write(pv, "P_PV", month, pv_power(month, 9.8, lat, lon, rng))

    # The transformer, metered on its 15 kV side, feeds only the two meters: its power is theirs
    # plus the losses of the transformer and the low-voltage lines (no-load ~0.3 kW and ~1.5 %
    # of the load), a few percent as in a real substation. The station adds its own auxiliary
    # supply (lighting, heating, protection: 0.2 kW). The PV installation sits behind meter 2
    # (the apartment block's roof): its surplus is meter 2's A- export, already counted.
    losses = 0.3 + 0.015 * meters_primary
    for role, own in (("transformer", 0.0), ("station", 0.2)):
        mid = roles.get(role)
        if mid is None:
            continue
        write(mid, "P+", month, meters_primary + losses + own)
        if role == "transformer":
            for phase, u in zip(("U1", "U2", "U3"), voltages(month, rng), strict=True):
                write(mid, phase, month, u + 1.0)
    info.notes.append(
        f"Demo signal data: 15-minute A+/A-/P+/U1-U3 for the meters, P_PV for the PV "
        f"installation, {DAYS} days up to {np.datetime64(end, 'ms')}Z."
    )
