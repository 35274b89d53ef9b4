"""Providers: Open-Meteo through httpx.MockTransport (never the network), EPW and TMY3 files."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pvlib  # type: ignore[import-untyped]  # pvlib ships no type hints
import pytest

from besmart_server.server.weather.providers import (
    ORIGIN_FORECAST,
    ORIGIN_MODEL,
    WEATHER_SYMBOLS,
    Kind,
    ProviderError,
    WeatherProvider,
)
from besmart_server.server.weather.providers.files import (
    FileProvider,
    detect_format,
    read_weather_file,
)
from besmart_server.server.weather.providers.open_meteo import (
    ARCHIVE_URL,
    FORECAST_URL,
    VARIABLES,
    OpenMeteo,
    parse,
)

DATA = Path(__file__).parent.parent / "data" / "weather"
PVLIB_DATA = Path(pvlib.__file__).parent / "data"
H = 3_600_000
FETCHED_AT = 1_718_990_000_123  # the injected clock: acq_time of the run


def ms(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp() * 1000)


def recorded(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((DATA / name).read_text(encoding="utf-8"))
    return body


Handler = Callable[[httpx.Request], httpx.Response]


def provider(handler: Handler, sleeps: list[float] | None = None, **kw: Any) -> OpenMeteo:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    pauses = sleeps if sleeps is not None else []
    return OpenMeteo(client, sleep=pauses.append, clock=lambda: FETCHED_AT, **kw)


def serve(name: str, seen: list[httpx.Request] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(200, json=recorded(name))

    return handler


# --- Open-Meteo -------------------------------------------------------------------------------

DAY = ms(2024, 6, 21)


def test_open_meteo_is_a_weather_provider() -> None:
    p: WeatherProvider = provider(serve("open_meteo_forecast.json"))
    assert p.name == "open-meteo"


def test_forecast_request_parameters() -> None:
    seen: list[httpx.Request] = []
    provider(serve("open_meteo_forecast.json", seen)).fetch(
        50.06, 19.94, DAY, DAY + 24 * H, Kind.FORECAST
    )
    (request,) = seen
    assert str(request.url).startswith(FORECAST_URL + "?")
    q = request.url.params
    assert q["latitude"] == "50.06000"
    assert q["longitude"] == "19.94000"
    assert q["hourly"].split(",") == list(VARIABLES)
    assert q["start_date"] == "2024-06-21"
    assert q["end_date"] == "2024-06-22"  # one more hour: the last hour's period values
    assert q["timezone"] == "GMT"
    assert q["timeformat"] == "unixtime"
    assert q["wind_speed_unit"] == "ms"


def test_forecast_series_converted_and_stamped() -> None:
    result = provider(serve("open_meteo_forecast.json")).fetch(
        50.06, 19.94, DAY, DAY + 24 * H, Kind.FORECAST
    )
    assert set(result) == set(WEATHER_SYMBOLS)
    assert (result.lat, result.lon, result.elevation_m) == (50.06, 19.940002, 219.0)
    assert result.source == "open-meteo forecast"
    t_air = result["T_AIR"]
    assert t_air.origin == ORIGIN_FORECAST
    assert t_air.acq_time == FETCHED_AT
    # hourly samples in [00:00, 24:00): 24 points; 03:00 is the minimum, 18 - 6 °C
    assert t_air.time.tolist() == [DAY + i * H for i in range(24)]
    assert t_air.value[0] == pytest.approx(13.8 + 273.15)
    assert t_air.value[3] == pytest.approx(12.0 + 273.15)
    assert t_air.value[9] == pytest.approx(18.0 + 273.15)
    assert t_air.value[15] == pytest.approx(18.0 + 6.0 + 273.15)
    # PRES in hPa as reported, WS already m/s
    assert result["PRES"].value[:2].tolist() == pytest.approx([985.0, 985.1])
    assert result["WS"].value[:2].tolist() == pytest.approx([2.0, 2.05])


def test_period_values_move_to_the_start_of_their_hour() -> None:
    body = recorded("open_meteo_forecast.json")
    result = provider(serve("open_meteo_forecast.json")).fetch(
        50.06, 19.94, DAY, DAY + 24 * H, Kind.FORECAST
    )
    ghi = result["GHI"]
    # Open-Meteo's value at 01:00 is the mean over [00:00, 01:00): it is stored at 00:00, and
    # the value reported at 24:00 (next day) completes the window.
    assert ghi.time.tolist() == [DAY + i * H for i in range(24)]
    reported = body["hourly"]["shortwave_radiation"]
    assert ghi.value.tolist() == pytest.approx(reported[1:25])
    assert int(ghi.time[int(np.argmax(ghi.value))]) == DAY + 11 * H
    precip = result["PRECIP"]
    assert precip.value[14] == pytest.approx(0.4)  # reported at 15:00
    assert precip.value[15] == pytest.approx(1.2)


def test_nulls_are_dropped_and_window_clipped() -> None:
    result = provider(serve("open_meteo_forecast.json")).fetch(
        50.06, 19.94, DAY + 24 * H, DAY + 48 * H, Kind.FORECAST
    )
    t_air = result["T_AIR"]
    # the recorded answer has null at index 30 (day 2, 06:00)
    assert DAY + 30 * H not in t_air.time.tolist()
    assert len(t_air.time) == 23
    assert bool(np.isfinite(t_air.value).all())
    assert len(result["GHI"].time) == 23  # the last hour's mean would be reported on day 3


def test_archive_endpoint_and_origin() -> None:
    seen: list[httpx.Request] = []
    since = ms(2023, 6, 16)
    result = provider(serve("open_meteo_archive.json", seen)).fetch(
        50.0, 20.0, since, since + 24 * H, Kind.ARCHIVE
    )
    assert str(seen[0].url).startswith(ARCHIVE_URL + "?")
    assert result["T_AIR"].origin == ORIGIN_MODEL  # ERA5 is a reanalysis: a model estimate
    assert result["T_AIR"].acq_time == FETCHED_AT
    assert result["T_AIR"].value[3] == pytest.approx(10.0 + 273.15)  # 16 - 6 °C at 03:00
    assert result["CLOUD"].value[:2].tolist() == [60.0, 70.0]
    assert result.source == "open-meteo archive"


def test_archive_origin_is_configurable() -> None:
    since = ms(2023, 6, 16)
    result = provider(serve("open_meteo_archive.json"), archive_origin=1).fetch(
        50.0, 20.0, since, since + 24 * H, Kind.ARCHIVE
    )
    assert {s.origin for s in result.values()} == {1}


def test_units_reported_otherwise_are_converted() -> None:
    body = recorded("open_meteo_forecast.json")
    body["hourly_units"]["wind_speed_10m"] = "km/h"
    body["hourly"]["wind_speed_10m"] = [36.0] * len(body["hourly"]["time"])
    result = parse(body, origin=2, acq_time=1, since_ms=DAY, till_ms=DAY + H)
    assert result["WS"].value.tolist() == pytest.approx([10.0])


def test_unknown_unit_is_an_error() -> None:
    body = recorded("open_meteo_forecast.json")
    body["hourly_units"]["temperature_2m"] = "furlongs"
    with pytest.raises(ProviderError, match="temperature_2m"):
        parse(body, origin=2, acq_time=1, since_ms=DAY, till_ms=DAY + H)


def test_local_time_answers_are_refused() -> None:
    body = recorded("open_meteo_forecast.json")
    body["utc_offset_seconds"] = 7200
    with pytest.raises(ProviderError, match="UTC"):
        parse(body, origin=2, acq_time=1, since_ms=DAY, till_ms=DAY + H)


def test_retries_5xx_with_backoff_then_succeeds() -> None:
    calls: list[int] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) < 3:
            return httpx.Response(503, text="busy")
        return httpx.Response(200, json=recorded("open_meteo_forecast.json"))

    sleeps: list[float] = []
    result = provider(flaky, sleeps, backoff_s=0.5).fetch(50.06, 19.94, DAY, DAY + H, Kind.FORECAST)
    assert len(calls) == 3
    assert sleeps == [0.5, 1.0]
    assert len(result["T_AIR"].time) == 1


def test_connection_errors_exhaust_retries() -> None:
    calls: list[int] = []

    def down(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("connection refused", request=request)

    sleeps: list[float] = []
    with pytest.raises(ProviderError, match="unreachable after 4 attempts: ConnectError"):
        provider(down, sleeps, retries=3, backoff_s=1.0).fetch(
            50.06, 19.94, DAY, DAY + H, Kind.FORECAST
        )
    assert len(calls) == 4
    assert sleeps == [1.0, 2.0, 4.0]


def test_read_timeout_is_retried() -> None:
    calls: list[int] = []

    def slow_once(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(200, json=recorded("open_meteo_forecast.json"))

    provider(slow_once).fetch(50.06, 19.94, DAY, DAY + H, Kind.FORECAST)
    assert len(calls) == 2


def test_bad_request_is_not_retried_and_names_the_reason() -> None:
    calls: list[int] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(400, json=recorded("open_meteo_error.json"))

    with pytest.raises(ProviderError, match="end_date' is out of allowed range"):
        provider(refuse).fetch(50.06, 19.94, DAY, DAY + H, Kind.ARCHIVE)
    assert len(calls) == 1


def test_empty_window_is_refused() -> None:
    with pytest.raises(ValueError, match="since must be before till"):
        provider(serve("open_meteo_forecast.json")).fetch(50, 20, DAY, DAY, Kind.FORECAST)


# --- EPW ---------------------------------------------------------------------------------------

EPW = DATA / "krakow_2days.epw"
EPW_DAY = ms(2005, 6, 21)  # the file's 6/21 hour 1 ends at 01:00 UTC+1 = 00:00 UTC


def test_epw_header_and_series() -> None:
    result = read_weather_file(EPW, acq_time=77)
    assert (result.lat, result.lon, result.elevation_m) == (50.06, 19.94, 237.0)
    assert result.source == "EPW krakow_2days.epw (Krakow)"
    assert set(result) == set(WEATHER_SYMBOLS)
    t_air = result["T_AIR"]
    assert t_air.origin == ORIGIN_MODEL
    assert t_air.acq_time == 77
    # hour 1 (8.1 °C) is valid at its end, 01:00 local = 00:00 UTC
    assert int(t_air.time[0]) == EPW_DAY
    assert t_air.value[0] == pytest.approx(8.1 + 273.15)
    assert result["PRES"].value[0] == pytest.approx(985.0)  # 98500 Pa
    assert result["CLOUD"].value[0] == pytest.approx(30.0)  # 3 tenths
    assert result["WS"].value[:2].tolist() == pytest.approx([3.1, 3.2])


def test_epw_period_values_at_the_start_of_their_hour() -> None:
    ghi = read_weather_file(EPW, acq_time=1)["GHI"]
    # hour 13 (12:00-13:00 local, 11:00-12:00 UTC) holds the peak 800 W/m2
    assert int(ghi.time[int(np.argmax(ghi.value))]) == EPW_DAY + 11 * H
    assert float(ghi.value.max()) == 800.0
    precip = read_weather_file(EPW, acq_time=1)["PRECIP"]
    # 2 mm in 6/22 hour 15 = 14:00-15:00 local = 13:00 UTC
    assert precip.time[precip.value > 0].tolist() == [EPW_DAY + 24 * H + 13 * H]


def test_epw_missing_codes_are_dropped() -> None:
    result = read_weather_file(EPW, acq_time=1)
    assert len(result["T_AIR"].time) == 47  # 99.9 on 6/21 hour 5
    assert EPW_DAY + 4 * H not in result["T_AIR"].time.tolist()
    assert len(result["GHI"].time) == 47  # 9999 on 6/22 hour 12
    assert float(result["GHI"].value.max()) < 9999
    assert len(result["DNI"].time) == 48


def test_epw_year_coerced() -> None:
    t_air = read_weather_file(EPW, year=2030, acq_time=1)["T_AIR"]
    assert int(t_air.time[0]) == ms(2030, 6, 21)


def test_position_given_overrides_the_header() -> None:
    result = read_weather_file(EPW, lat=50.5, lon=20.5, acq_time=1)
    assert (result.lat, result.lon) == (50.5, 20.5)
    assert result.notes == ("data of Krakow (50.06, 19.94) placed at (50.5, 20.5)",)


# --- TMY3 --------------------------------------------------------------------------------------

TMY3 = PVLIB_DATA / "723170TYA.CSV"


def test_tmy3_header_and_years_as_the_file_says() -> None:
    result = read_weather_file(TMY3, acq_time=5)
    assert (result.lat, result.lon, result.elevation_m) == (36.1, -79.95, 273.0)
    assert result.source == "TMY3 723170TYA.CSV (GREENSBORO PIEDMONT TRIAD INT)"
    # precipitation is not imported from TMY3 (see files.py)
    assert set(result) == set(WEATHER_SYMBOLS) - {"PRECIP"}
    t_air = result["T_AIR"]
    assert len(t_air.time) == 8760
    assert t_air.origin == ORIGIN_MODEL
    # first row: 01/01/1988 01:00 EST (UTC-5), 10.0 °C
    assert int(t_air.time[0]) == ms(1980, 4, 1, 6)  # sorted: the file's April is from 1980
    first_jan = t_air.time == ms(1988, 1, 1, 6)
    assert t_air.value[first_jan].tolist() == pytest.approx([283.15])
    years = {datetime.fromtimestamp(t / 1000, UTC).year for t in t_air.time.tolist()}
    assert {1980, 1988, 2003} <= years


def test_tmy3_irradiance_moves_to_the_start_of_its_hour() -> None:
    ghi = read_weather_file(TMY3, acq_time=5)["GHI"]
    # 01/01/1988 12:00 EST row: GHI 261 W/m2 over 11:00-12:00 EST = 16:00-17:00 UTC
    at = ghi.time == ms(1988, 1, 1, 16)
    assert ghi.value[at].tolist() == [261.0]
    assert float(ghi.value.max()) == 1013.0


def test_tmy3_year_coerced() -> None:
    t_air = read_weather_file(TMY3, year=2023, acq_time=5)["T_AIR"]
    assert int(t_air.time[0]) == ms(2023, 1, 1, 6)
    assert int(t_air.time[-1]) == ms(2024, 1, 1, 5)  # the final 24:00 row: next year
    assert len(np.unique(t_air.time)) == 8760


def test_second_tmy3_sample() -> None:
    result = read_weather_file(PVLIB_DATA / "703165TY.csv", acq_time=5)
    assert (result.lat, result.lon) == (55.317, -160.517)
    assert len(result["T_AIR"].time) == 8760


def test_file_provider_clips_and_places() -> None:
    p: WeatherProvider = FileProvider(EPW)
    result = p.fetch(50.0, 20.0, EPW_DAY, EPW_DAY + 6 * H, Kind.ARCHIVE)
    assert (result.lat, result.lon) == (50.0, 20.0)
    assert result["T_AIR"].time.tolist() == [EPW_DAY + i * H for i in (0, 1, 2, 3, 5)]


def test_unknown_or_missing_files(tmp_path: Path) -> None:
    other = tmp_path / "notes.csv"
    other.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(ProviderError, match="neither an EPW nor a TMY3"):
        detect_format(other)
    with pytest.raises(ProviderError, match="no such file"):
        read_weather_file(tmp_path / "absent.epw")
    broken = tmp_path / "broken.epw"
    broken.write_text("LOCATION,X,,,,,not-a-number,0,0,0\n", encoding="utf-8")
    with pytest.raises(ProviderError, match="unreadable EPW"):
        read_weather_file(broken)
