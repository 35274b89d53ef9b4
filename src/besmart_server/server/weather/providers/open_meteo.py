"""Open-Meteo: the forecast API and the historical archive (ERA5 reanalysis), over httpx.

Both endpoints answer `{"latitude", "longitude", "elevation", "utc_offset_seconds",
"hourly_units": {...}, "hourly": {"time": [...], "<variable>": [...]}}`; we ask for UTC unix
seconds (`timeformat=unixtime`, `timezone=GMT`) and wind in m/s. Errors come as HTTP 400 with
`{"error": true, "reason": "..."}`.

Origins: a forecast run is origin 2 with `acq_time` = when it was fetched, so every run stays
a separate version for backtests. The archive is a reanalysis — a model estimate, not an
observation — so it is origin 3 as docs/domain.md defines it (the origin public clients read
hourly temperature from); `archive_origin` changes that should a deployment want 1.
"""

from __future__ import annotations

import logging
import time as _time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import numpy as np

from besmart_server.server.signals.catalog import signal_type_by_symbol
from besmart_server.server.weather.providers import (
    ORIGIN_FORECAST,
    ORIGIN_MODEL,
    Kind,
    ProviderError,
    ProviderResult,
    ProviderSeries,
    finite_series,
    to_catalog_unit,
)

log = logging.getLogger(__name__)

FORECAST_URL: Final = "https://api.open-meteo.com/v1/forecast"
ARCHIVE_URL: Final = "https://archive-api.open-meteo.com/v1/archive"
HOUR_MS: Final = 3_600_000


# Open-Meteo variable → (signal symbol, the unit Open-Meteo reports it in, period quantity?).
# Period quantities are "preceding hour" means/sums in Open-Meteo and move to their period's
# start (see providers/__init__). Units are checked against `hourly_units` of each answer.
VARIABLES: Final[dict[str, tuple[str, str, bool]]] = {
    "temperature_2m": ("T_AIR", "°C", False),
    "shortwave_radiation": ("GHI", "W/m²", True),
    "direct_normal_irradiance": ("DNI", "W/m²", True),
    "diffuse_radiation": ("DHI", "W/m²", True),
    "wind_speed_10m": ("WS", "m/s", False),
    "wind_direction_10m": ("WD", "°", False),
    "cloud_cover": ("CLOUD", "%", False),
    "relative_humidity_2m": ("RH", "%", False),
    "surface_pressure": ("PRES", "hPa", False),
    "precipitation": ("PRECIP", "mm", True),
}

RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})


def _now_ms() -> int:
    return int(_time.time() * 1000)


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date().isoformat()


class OpenMeteo:
    """The Open-Meteo provider; `client`, `sleep` and `clock` are injectable for tests."""

    name = "open-meteo"

    def __init__(
        self,
        client: httpx.Client | None = None,
        *,
        forecast_url: str = FORECAST_URL,
        archive_url: str = ARCHIVE_URL,
        timeout_s: float = 20.0,
        retries: int = 3,
        backoff_s: float = 1.0,
        archive_origin: int = ORIGIN_MODEL,
        sleep: Callable[[float], None] = _time.sleep,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            headers={"User-Agent": "besmart-server"},
        )
        self._urls = {Kind.FORECAST: forecast_url, Kind.ARCHIVE: archive_url}
        self._retries = retries
        self._backoff_s = backoff_s
        self._origins = {Kind.FORECAST: ORIGIN_FORECAST, Kind.ARCHIVE: archive_origin}
        self._sleep = sleep
        self._clock = clock

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def params(self, lat: float, lon: float, since_ms: int, till_ms: int) -> dict[str, str]:
        """Query parameters for the whole UTC days covering [since_ms, till_ms)."""
        if since_ms >= till_ms:
            raise ValueError("since must be before till")
        return {
            "latitude": f"{lat:.5f}",
            "longitude": f"{lon:.5f}",
            "hourly": ",".join(VARIABLES),
            "start_date": _day(since_ms),
            # The period quantities of the last hour are reported at the next hour: one hour
            # more is asked so [.., till) is complete after moving them to their period start.
            "end_date": _day(till_ms - 1 + HOUR_MS),
            "timezone": "GMT",
            "timeformat": "unixtime",
            "wind_speed_unit": "ms",
        }

    def fetch(
        self, lat: float, lon: float, since_ms: int, till_ms: int, kind: Kind
    ) -> ProviderResult:
        """Fetch one run for this position; series clipped to [since_ms, till_ms)."""
        acq_time = self._clock()
        body = self._get(self._urls[kind], self.params(lat, lon, since_ms, till_ms))
        return parse(
            body,
            origin=self._origins[kind],
            acq_time=acq_time,
            since_ms=since_ms,
            till_ms=till_ms,
            source=f"open-meteo {kind.value}",
        )

    def _get(self, url: str, params: Mapping[str, str]) -> Mapping[str, Any]:
        """GET with retries and exponential backoff on connection errors, 429 and 5xx."""
        last: str = ""
        for attempt in range(self._retries + 1):
            if attempt:
                self._sleep(self._backoff_s * 2 ** (attempt - 1))
            try:
                response = self._client.get(url, params=params)
            except httpx.TransportError as exc:  # connect/read timeouts, refused, reset
                last = f"{type(exc).__name__}: {exc}"
                log.warning("open-meteo attempt %d failed: %s", attempt + 1, last)
                continue
            if response.status_code in RETRY_STATUSES:
                last = f"HTTP {response.status_code}"
                log.warning("open-meteo attempt %d failed: %s", attempt + 1, last)
                continue
            try:
                body = response.json()
            except ValueError as exc:
                status = response.status_code
                raise ProviderError(f"Open-Meteo answered non-JSON ({status})") from exc
            if response.status_code != 200 or not isinstance(body, dict) or body.get("error"):
                reason = body.get("reason") if isinstance(body, dict) else None
                raise ProviderError(
                    f"Open-Meteo refused the request ({response.status_code}): {reason or body}"
                )
            return body
        raise ProviderError(f"Open-Meteo unreachable after {self._retries + 1} attempts: {last}")


def parse(
    body: Mapping[str, Any],
    *,
    origin: int,
    acq_time: int,
    since_ms: int,
    till_ms: int,
    source: str = "open-meteo",
) -> ProviderResult:
    """An Open-Meteo answer as catalog series: converted, period quantities moved, clipped."""
    hourly = body.get("hourly")
    units = body.get("hourly_units") or {}
    if not isinstance(hourly, dict) or "time" not in hourly:
        raise ProviderError("Open-Meteo answer has no hourly data")
    if body.get("utc_offset_seconds", 0) != 0:
        raise ProviderError("Open-Meteo answer is not in UTC (utc_offset_seconds != 0)")
    try:
        seconds = np.asarray(hourly["time"], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise ProviderError("Open-Meteo times are not unix seconds (timeformat=unixtime)") from exc
    times = seconds * 1000
    series: dict[str, ProviderSeries] = {}
    for variable, (symbol, expected_unit, period) in VARIABLES.items():
        raw = hourly.get(variable)
        if raw is None:
            continue
        if len(raw) != times.shape[0]:
            raise ProviderError(f"Open-Meteo column {variable} differs in length from time")
        # null → NaN, dropped by finite_series
        values = np.array([np.nan if v is None else v for v in raw], dtype=np.float64)
        unit = str(units.get(variable, expected_unit))  # W/m² and °C are catalog aliases
        target = signal_type_by_symbol(symbol)
        assert target is not None  # the catalog holds every weather symbol
        try:
            values = to_catalog_unit(values, unit, target.unit_symbol)
        except (LookupError, ValueError) as exc:
            raise ProviderError(f"Open-Meteo {variable} in unexpected unit {unit!r}") from exc
        t = times - HOUR_MS if period else times
        keep = (t >= since_ms) & (t < till_ms)
        series[symbol] = finite_series(t[keep], values[keep], origin, acq_time)
    return ProviderResult(
        series,
        lat=float(body["latitude"]),
        lon=float(body["longitude"]),
        elevation_m=None if body.get("elevation") is None else float(body["elevation"]),
        source=source,
    )
