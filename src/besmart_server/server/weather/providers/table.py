"""Plain weather tables (CSV or Parquet): a `time` column and one column per signal symbol.

A column is named by a weather signal symbol, optionally with the unit its values are in:
`T_AIR`, `T_AIR[°C]`, `GHI[W/m2]`. Values are converted to the signal type's catalog unit;
without a unit they must already be in it. Times are taken as given: ISO text with an offset,
naive text (UTC), or integer UTC milliseconds; Parquet timestamps likewise (naive = UTC). As
every provider's, period quantities are expected labelled by the START of their period.

Anything the table cannot mean (no time column, a time that does not parse or repeats, an
unknown symbol or unit, a unit of another dimension, a value that is not a number) raises
`ProviderError` naming the column and row, before anything is stored.
"""

from __future__ import annotations

import re
import time as _time
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from besmart_server.server.signals import catalog
from besmart_server.server.weather.providers import (
    WEATHER_SYMBOLS,
    ProviderError,
    ProviderResult,
    ProviderSeries,
    finite_series,
    to_catalog_unit,
)

TIME_COLUMN: Final = "time"
SUFFIXES: Final = (".csv", ".parquet")
_HEADER: Final = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\[\s*([^\]]+?)\s*\])?\s*$")


def _times(column: pd.Series) -> NDArray[np.int64]:
    """UTC ms of the time column; ProviderError at the first row that is no time."""
    if pd.api.types.is_integer_dtype(column.dtype):
        return column.to_numpy(dtype=np.int64)
    if isinstance(column.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(
        column.dtype
    ):
        stamps = pd.DatetimeIndex(column)
    else:
        text = column.astype("string").str.strip()
        if bool(text.str.fullmatch(r"-?\d+").all()):  # UTC milliseconds as text (CSV)
            return np.asarray(text.astype("int64").to_numpy(), dtype=np.int64)
        stamps = pd.DatetimeIndex(pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601"))
        bad = np.flatnonzero(np.asarray(stamps.isna()))
        if len(bad):
            i = int(bad[0])
            raise ProviderError(
                f"time, row {i + 1}: not a time: {column.iloc[i]!r} "
                "(use ISO 8601, e.g. 2024-06-21T12:00Z, or UTC milliseconds)"
            )
    if stamps.tz is None:
        stamps = stamps.tz_localize("UTC")
    bad = np.flatnonzero(stamps.isna())
    if len(bad):
        raise ProviderError(f"time, row {int(bad[0]) + 1}: no time given")
    return np.asarray(stamps.tz_convert("UTC").as_unit("ms").asi8, dtype=np.int64)


def _column(name: str) -> tuple[str, catalog.Unit]:
    """(symbol, unit the values are in) of a column header; ProviderError if it means nothing."""
    m = _HEADER.match(name)
    if m is None:
        raise ProviderError(f"column {name!r}: not SYMBOL or SYMBOL[unit], e.g. T_AIR[°C]")
    symbol, unit_symbol = m.group(1), m.group(2)
    t = catalog.signal_type_by_symbol(symbol)
    if symbol not in WEATHER_SYMBOLS or t is None:
        raise ProviderError(
            f"column {name!r}: {symbol} is not a stored weather signal "
            f"(one of {', '.join(WEATHER_SYMBOLS)})"
        )
    stored = catalog.unit_by_symbol(t.unit_symbol)
    if unit_symbol is None:
        return symbol, stored
    try:
        unit = catalog.unit_by_symbol(unit_symbol)
    except catalog.UnknownUnit:
        raise ProviderError(f"column {name!r}: unknown unit {unit_symbol!r}") from None
    if unit.dimension != stored.dimension:
        raise ProviderError(
            f"column {name!r}: {unit.symbol} is a {unit.dimension} unit, "
            f"{symbol} is stored in {stored.symbol} ({stored.dimension})"
        )
    return symbol, unit


def _values(column: pd.Series, name: str) -> NDArray[np.float64]:
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    given = column.notna().to_numpy()
    bad = np.flatnonzero(given & np.isnan(values))
    if len(bad):
        i = int(bad[0])
        raise ProviderError(f"column {name!r}, row {i + 1}: not a number: {column.iloc[i]!r}")
    return values


def weather_table(
    frame: pd.DataFrame,
    *,
    lat: float,
    lon: float,
    origin: int,
    acq_time: int | None = None,
    source: str = "table",
) -> ProviderResult:
    """The table's series at (lat, lon) as one provider run of `origin`."""
    names = {str(c).strip().lower(): c for c in frame.columns}
    if TIME_COLUMN not in names:
        raise ProviderError(
            f"no {TIME_COLUMN!r} column (columns: {', '.join(map(str, frame.columns)) or 'none'})"
        )
    if len(frame) == 0:
        raise ProviderError("the table has no rows")
    time_name = names[TIME_COLUMN]
    times = _times(frame[time_name].reset_index(drop=True))
    order = np.sort(times)
    repeated = order[1:][order[1:] == order[:-1]]
    if len(repeated):
        at = pd.Timestamp(int(repeated[0]), unit="ms", tz="UTC").isoformat()
        raise ProviderError(f"time {at} appears more than once")
    acq = int(_time.time() * 1000) if acq_time is None else acq_time
    series: dict[str, ProviderSeries] = {}
    for name in frame.columns:
        if name == time_name:
            continue
        symbol, unit = _column(str(name))
        if symbol in series:
            raise ProviderError(f"column {name!r}: {symbol} is given twice")
        t = catalog.signal_type_by_symbol(symbol)
        assert t is not None  # _column checked it
        values = _values(frame[name].reset_index(drop=True), str(name))
        values = to_catalog_unit(values, unit, t.unit_symbol)
        series[symbol] = finite_series(times, values, origin, acq)
    if not series:
        raise ProviderError("no weather columns besides time (e.g. T_AIR[°C], GHI[W/m2])")
    return ProviderResult(series, lat, lon, source=source)


def read_weather_table(
    path: Path, *, lat: float, lon: float, origin: int, acq_time: int | None = None
) -> ProviderResult:
    """A CSV or Parquet weather table (by suffix) as one provider run."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=True)
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            raise ProviderError(f"{path.name}: not a table ({' or '.join(SUFFIXES)})")
    except (OSError, ValueError) as exc:  # unreadable file, bad CSV or Parquet bytes
        raise ProviderError(f"{path.name}: cannot read: {exc}") from exc
    if frame.index.name is not None and str(frame.index.name).lower() == TIME_COLUMN:
        frame = frame.reset_index()  # a Parquet file written from a time-indexed frame
    return weather_table(
        frame, lat=lat, lon=lon, origin=origin, acq_time=acq_time, source=f"table {path.name}"
    )
