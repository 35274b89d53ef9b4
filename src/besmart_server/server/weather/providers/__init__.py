"""Provider adapters: where weather comes from, as series in the catalog's units.

Every provider answers the same way: signal symbol (T_AIR, GHI, ...) → `ProviderSeries`
(UTC ms times, values in the signal type's catalog unit, origin, acquisition time in ms).
Shared conventions, so series from different providers line up:
- instantaneous quantities (temperature, wind, humidity, pressure, cloud cover) keep the time
  they were valid at;
- period quantities (irradiance means, precipitation sums) are labelled by the START of their
  period, as the signal pipeline labels its buckets, so an hourly GHI at 10:00 is the mean over
  [10:00, 11:00) and `delta_t=60` returns it unchanged;
- missing values are dropped (the store takes no NaN).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, NamedTuple, Protocol

import numpy as np
from numpy.typing import NDArray

from besmart_server.server.signals.catalog import Unit, convert
from besmart_server.server.signals.pipeline import round_significant
from besmart_server.wire import ORIGIN_CALCULATED, ORIGIN_MEASURED, ORIGIN_PREDICTED

# A provider's kinds of value by the origin they are stored with (besmart_server.wire).
ORIGIN_OBSERVED: Final = ORIGIN_MEASURED
ORIGIN_FORECAST: Final = ORIGIN_PREDICTED
ORIGIN_MODEL: Final = ORIGIN_CALCULATED  # model estimate / analysis / typical year

# The symbols a provider may fill: the weather signal types of the catalog, except GHI_CS,
# which is computed on request.
WEATHER_SYMBOLS: Final = (
    "T_AIR",
    "GHI",
    "DNI",
    "DHI",
    "WS",
    "WD",
    "CLOUD",
    "RH",
    "PRES",
    "PRECIP",
)


def to_catalog_unit(values: NDArray[np.float64], unit: Unit | str, to: str) -> NDArray[np.float64]:
    """A provider's values converted to the catalog unit `to`, kept to 15 significant digits
    as every computed value is (pipeline.round_significant): 8.5 °C is stored as 281.65 K,
    not 281.65000000000003, which also keeps the block's decimal encoding."""
    return round_significant(convert(values, unit, to))


class ProviderError(RuntimeError):
    """A provider could not deliver: bad request, exhausted retries, unreadable file."""


class Kind(StrEnum):
    """What to fetch: the latest forecast run, or the historical archive."""

    FORECAST = "forecast"
    ARCHIVE = "archive"


class ProviderSeries(NamedTuple):
    """One weather series as a provider delivers it."""

    time: NDArray[np.int64]  # UTC ms, ascending
    value: NDArray[np.float64]  # in the signal type's catalog unit, finite
    origin: int
    acq_time: int  # UTC ms: when this run was fetched or imported


@dataclass(frozen=True)
class ProviderResult(Mapping[str, ProviderSeries]):
    """The series of one provider run, keyed by signal symbol, and where they belong."""

    series: Mapping[str, ProviderSeries]
    lat: float  # where the data belongs: the provider's grid cell or the file's station
    lon: float
    elevation_m: float | None = None
    source: str = ""  # e.g. "open-meteo forecast", "EPW Krakow ..."
    notes: tuple[str, ...] = field(default=())

    def __getitem__(self, symbol: str) -> ProviderSeries:
        return self.series[symbol]

    def __iter__(self) -> Iterator[str]:
        return iter(self.series)

    def __len__(self) -> int:
        return len(self.series)

    def points(self) -> int:
        """Points over all series."""
        return sum(int(s.time.shape[0]) for s in self.series.values())


class WeatherProvider(Protocol):
    """An adapter that fetches weather for a position and window [since_ms, till_ms)."""

    name: str

    def fetch(
        self, lat: float, lon: float, since_ms: int, till_ms: int, kind: Kind
    ) -> ProviderResult:
        """The series for this position and window."""
        ...


def finite_series(
    time: NDArray[np.int64], value: NDArray[np.float64], origin: int, acq_time: int
) -> ProviderSeries:
    """A series without its missing (non-finite) values, sorted by time."""
    keep = np.isfinite(value)
    t, v = time[keep], value[keep]
    order = np.argsort(t, kind="stable")
    return ProviderSeries(t[order], v[order].astype(np.float64), origin, acq_time)
