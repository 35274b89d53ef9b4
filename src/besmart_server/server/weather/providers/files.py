"""Weather files: EPW (EnergyPlus) and TMY3 (NSRDB), read with `pvlib.iotools`, origin 3.

Typical-year files are model estimates of a site's climate, so they are origin 3. Coordinates
and elevation come from the file's header unless the caller gives lat/lon (to place the data
at another grid point, e.g. the demo location).

Timestamps. Both formats label each row with the END of its hour in local standard time
(EPW hours 1..24, TMY3 01:00..24:00). Following the providers' convention, instantaneous
quantities (temperature, wind, humidity, pressure, cloud cover) stay at that time, and hourly
irradiance means and precipitation sums move to the hour's START; everything is then UTC.

Years. A typical meteorological year stitches months taken from different years (TMY3
723170TYA: January from 1988, April from 1980, ...). By default each row keeps the year the
file states, so the data lands where it was measured or modelled; `year=Y` places the whole
typical year in calendar year Y instead (pvlib's `coerce_year`: the final midnight row goes to
Y+1), which is what a "typical weather for this year" query wants.
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]  # typed only with pandas-stubs
from numpy.typing import NDArray
from pvlib import iotools  # type: ignore[import-untyped]  # pvlib ships no type hints

from besmart_server.server.signals.catalog import signal_type_by_symbol
from besmart_server.server.weather.compat import quiet_pandas_deprecations
from besmart_server.server.weather.providers import (
    ORIGIN_MODEL,
    Kind,
    ProviderError,
    ProviderResult,
    ProviderSeries,
    finite_series,
    to_catalog_unit,
)

HOUR_MS: Final = 3_600_000
FileFormat = Literal["epw", "tmy3"]
Meta = dict[str, Any]  # the file header as pvlib reads it
BySymbol = dict[str, ProviderSeries]


@dataclass(frozen=True, slots=True)
class Column:
    """How one file column becomes a catalog series."""

    name: str  # column in pvlib's DataFrame
    symbol: str  # catalog signal symbol
    unit: str  # unit the file uses (catalog symbol), converted to the signal type's unit
    period: bool  # an hourly mean/sum (moves to its hour's start) rather than a sample
    missing_at: float | None = None  # values >= this are the format's "missing" codes
    scale: float = 1.0  # applied before the unit conversion (tenths of sky → %)


# EnergyPlus Auxiliary Programs, "Weather file data field descriptions": missing-value codes.
EPW_COLUMNS: Final = (
    Column("temp_air", "T_AIR", "°C", period=False, missing_at=99.9),
    Column("ghi", "GHI", "W/m2", period=True, missing_at=9999),
    Column("dni", "DNI", "W/m2", period=True, missing_at=9999),
    Column("dhi", "DHI", "W/m2", period=True, missing_at=9999),
    Column("wind_speed", "WS", "m/s", period=False, missing_at=999),
    Column("wind_direction", "WD", "°", period=False, missing_at=999),
    Column("total_sky_cover", "CLOUD", "%", period=False, missing_at=99, scale=10.0),
    Column("relative_humidity", "RH", "%", period=False, missing_at=999),
    Column("atmospheric_pressure", "PRES", "Pa", period=False, missing_at=999999),
    Column("liquid_precipitation_depth", "PRECIP", "mm", period=True, missing_at=999),
)

# NSRDB TMY3 user's manual: -9900 marks missing data (negative values are never valid here).
TMY3_COLUMNS: Final = (
    Column("temp_air", "T_AIR", "°C", period=False),
    Column("ghi", "GHI", "W/m2", period=True),
    Column("dni", "DNI", "W/m2", period=True),
    Column("dhi", "DHI", "W/m2", period=True),
    Column("wind_speed", "WS", "m/s", period=False),
    Column("wind_direction", "WD", "°", period=False),
    Column("TotCld (tenths)", "CLOUD", "%", period=False, scale=10.0),
    Column("relative_humidity", "RH", "%", period=False),
    Column("pressure", "PRES", "hPa", period=False),  # mbar
    # "Lprecip depth (mm)" is left out: pvlib's own samples hold hourly depths of 140-750 mm
    # (the world record is about 305 mm in an hour), so the field cannot be trusted as mm.
)
_TMY3_NEVER_NEGATIVE = frozenset({"GHI", "DNI", "DHI", "WS", "WD", "CLOUD", "RH", "PRES"})
_TMY3_MISSING = -9900.0


def detect_format(path: Path) -> FileFormat:
    """EPW by its LOCATION header line, TMY3 by the second line's column names."""
    with path.open(encoding="utf-8", errors="replace") as fh:
        first, second = fh.readline(), fh.readline()
    if first.upper().startswith("LOCATION,"):
        return "epw"
    if "Date (MM/DD/YYYY)" in second:
        return "tmy3"
    raise ProviderError(f"{path.name}: neither an EPW nor a TMY3 file")


def _utc_ms(index: pd.DatetimeIndex) -> NDArray[np.int64]:
    return np.asarray(index.tz_convert("UTC").as_unit("ms").asi8, dtype=np.int64)


def _series(
    data: pd.DataFrame,
    columns: tuple[Column, ...],
    *,
    sample_shift_ms: int,
    period_shift_ms: int,
    acq_time: int,
    usable: dict[str, NDArray[np.bool_]] | None = None,
) -> dict[str, ProviderSeries]:
    times = _utc_ms(pd.DatetimeIndex(data.index))
    out: BySymbol = {}
    for col in columns:
        if col.name not in data.columns:
            continue
        raw = pd.to_numeric(data[col.name], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(raw)
        if col.missing_at is not None:
            bad |= raw >= col.missing_at
        if usable is not None and col.symbol in usable:
            bad |= ~usable[col.symbol]
        values = np.where(bad, np.nan, raw * col.scale)
        target = signal_type_by_symbol(col.symbol)
        assert target is not None  # every weather symbol is in the catalog
        values = to_catalog_unit(values, col.unit, target.unit_symbol)
        shift = period_shift_ms if col.period else sample_shift_ms
        series = finite_series(times + shift, values, ORIGIN_MODEL, acq_time)
        if series.time.shape[0]:  # a column with nothing usable is left out
            out[col.symbol] = series
    return out


def read_epw(path: Path, *, year: int | None, acq_time: int) -> tuple[Meta, BySymbol]:
    """pvlib's EPW reader: (metadata, series by symbol)."""
    data, meta = iotools.read_epw(str(path), coerce_year=year)
    # pvlib labels EPW rows with hour - 1, the START of the hour: samples move to its end.
    return meta, _series(
        data, EPW_COLUMNS, sample_shift_ms=HOUR_MS, period_shift_ms=0, acq_time=acq_time
    )


def read_tmy3(path: Path, *, year: int | None, acq_time: int) -> tuple[Meta, BySymbol]:
    """pvlib's TMY3 reader: (metadata, series by symbol)."""
    data, meta = iotools.read_tmy3(str(path), coerce_year=year, map_variables=True)
    usable: dict[str, NDArray[np.bool_]] = {}
    for col in TMY3_COLUMNS:
        if col.name in data.columns:
            raw = pd.to_numeric(data[col.name], errors="coerce").to_numpy(dtype=np.float64)
            ok = raw != _TMY3_MISSING
            if col.symbol in _TMY3_NEVER_NEGATIVE:
                ok &= raw >= 0
            usable[col.symbol] = ok
    # pvlib labels TMY3 rows with the END of the hour: period quantities move to its start.
    return meta, _series(
        data,
        TMY3_COLUMNS,
        sample_shift_ms=0,
        period_shift_ms=-HOUR_MS,
        acq_time=acq_time,
        usable=usable,
    )


def read_weather_file(
    path: str | Path,
    *,
    lat: float | None = None,
    lon: float | None = None,
    year: int | None = None,
    acq_time: int | None = None,
) -> ProviderResult:
    """Read an EPW or TMY3 file into catalog series of origin 3 (see the module's notes)."""
    path = Path(path)
    if not path.is_file():
        raise ProviderError(f"{path}: no such file")
    fmt = detect_format(path)
    acq = int(_time.time() * 1000) if acq_time is None else acq_time
    try:
        with quiet_pandas_deprecations():
            if fmt == "epw":
                meta, series = read_epw(path, year=year, acq_time=acq)
            else:
                meta, series = read_tmy3(path, year=year, acq_time=acq)
    except (ValueError, KeyError, IndexError, pd.errors.ParserError) as exc:
        raise ProviderError(f"{path.name}: unreadable {fmt.upper()} file ({exc})") from exc
    name = str(meta.get("city") or meta.get("Name") or path.stem).strip('"')
    notes = []
    if lat is not None or lon is not None:
        notes.append(
            f"data of {name} ({meta['latitude']}, {meta['longitude']}) placed at "
            f"({lat if lat is not None else meta['latitude']}, "
            f"{lon if lon is not None else meta['longitude']})"
        )
    return ProviderResult(
        series,
        lat=float(meta["latitude"]) if lat is None else lat,
        lon=float(meta["longitude"]) if lon is None else lon,
        elevation_m=float(meta["altitude"]),
        source=f"{fmt.upper()} {path.name} ({name})",
        notes=tuple(notes),
    )


class FileProvider:
    """A weather file behind the provider interface: the file's series within the window."""

    name = "file"

    def __init__(self, path: str | Path, *, year: int | None = None) -> None:
        self.path = Path(path)
        self.year = year

    def fetch(
        self, lat: float, lon: float, since_ms: int, till_ms: int, kind: Kind
    ) -> ProviderResult:
        """The file's series placed at (lat, lon), clipped to [since_ms, till_ms)."""
        full = read_weather_file(self.path, lat=lat, lon=lon, year=self.year)
        clipped = {
            symbol: ProviderSeries(s.time[keep], s.value[keep], s.origin, s.acq_time)
            for symbol, s in full.items()
            for keep in [(s.time >= since_ms) & (s.time < till_ms)]
        }
        return ProviderResult(
            clipped,
            lat=full.lat,
            lon=full.lon,
            elevation_m=full.elevation_m,
            source=full.source,
            notes=full.notes,
        )
