"""PV power from weather with pvlib: solar position, plane-of-array irradiance, cell temperature,
DC (PVWatts: kWp * POA/1000 * (1 + gamma(Tcell - 25))) and AC after system losses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pvlib  # type: ignore[import-untyped,unused-ignore]  # pvlib ships no type hints
from pydantic import Field

from besmart_server.server.graphs.operator_api import (
    MAX_STEP_MINUTES,
    POWER,
    Env,
    Operator,
    Series,
    Windowed,
    min_step,
    operator,
    produces,
)
from besmart_server.server.graphs.operators.weather import (
    DHI,
    DNI,
    GHI,
    KELVIN,
    T_AIR,
    WS,
    model_grid,
    read_weather_grid,
    warn_without_weather,
)

SAPM_OPEN_RACK = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"]["open_rack_glass_polymer"]
DEFAULT_TEMP_C = 12.0  # pvlib's own default air temperature where none is known
DEFAULT_WIND = 1.0  # m/s, the SAPM model's calm-air reference


def _const_or_series(
    value: Series | float | None, index: pd.DatetimeIndex, default: float
) -> Series:
    if value is None:
        return pd.Series(default, index=index, dtype=float)
    if isinstance(value, pd.Series):
        return value.reindex(index).astype(float).fillna(default)
    return pd.Series(float(value), index=index, dtype=float)


def pv_power(
    ghi: Series,
    *,
    lat: float,
    lon: float,
    power_kwp: float,
    inclination: float,
    orientation: float,
    efficiency: float = 0.86,
    gamma: float = -0.004,
    temp_air_c: Series | float | None = None,
    wind_speed: Series | float | None = None,
    dni: Series | None = None,
    dhi: Series | None = None,
    albedo: float = 0.2,
    altitude: float = 0.0,
    position_offset: pd.Timedelta | None = None,
    inverter_kw: float | None = None,
) -> pd.DataFrame:
    """AC and DC power (kW), POA irradiance (W/m2) and cell temperature at the index of `ghi`.

    `position_offset` moves the solar position within each interval (by default its centre, half
    the step, since weather values are interval means labelled by their start). Without DNI and
    DHI both, they come from GHI by the Erbs decomposition.
    """
    index = pd.DatetimeIndex(ghi.index)
    if len(index) == 0:
        return pd.DataFrame(columns=["ac", "dc", "poa", "t_cell"], index=index, dtype=float)
    if position_offset is None:
        step = min_step(index)
        position_offset = step / 2 if step is not None else pd.Timedelta(0)
    times = index + position_offset
    g = pd.Series(ghi.to_numpy(dtype=float), index=times).fillna(0.0).clip(lower=0.0)
    t_air = pd.Series(_const_or_series(temp_air_c, index, DEFAULT_TEMP_C).to_numpy(), index=times)
    wind = pd.Series(_const_or_series(wind_speed, index, DEFAULT_WIND).to_numpy(), index=times)
    doy = np.asarray(times.day_of_year, dtype=float)
    solpos = pvlib.solarposition.get_solarposition(
        times, lat, lon, altitude=altitude, temperature=t_air
    )
    if dni is None or dhi is None:
        # day of year as numbers: pvlib 0.16 would ask pandas for a deprecated attribute
        parts = pvlib.irradiance.erbs(g, solpos["zenith"], doy)
        b, d = parts["dni"], parts["dhi"]
    else:
        b = pd.Series(dni.reindex(index).to_numpy(dtype=float), index=times).fillna(0.0)
        d = pd.Series(dhi.reindex(index).to_numpy(dtype=float), index=times).fillna(0.0)
    total = pvlib.irradiance.get_total_irradiance(
        surface_tilt=inclination,
        surface_azimuth=orientation,
        solar_zenith=solpos["apparent_zenith"],
        solar_azimuth=solpos["azimuth"],
        dni=b,
        ghi=g,
        dhi=d,
        dni_extra=pd.Series(pvlib.irradiance.get_extra_radiation(doy), index=times),
        albedo=albedo,
        model="haydavies",
    )
    poa = total["poa_global"].fillna(0.0).clip(lower=0.0)
    t_cell = pvlib.temperature.sapm_cell(poa, t_air, wind, **SAPM_OPEN_RACK)
    dc = (power_kwp * poa / 1000.0 * (1.0 + gamma * (t_cell - 25.0))).clip(lower=0.0)
    ac = dc * efficiency
    if inverter_kw is not None:
        ac = ac.clip(upper=inverter_kw)
    out = pd.DataFrame({"ac": ac, "dc": dc, "poa": poa, "t_cell": t_cell})
    out.index = index
    return out.astype(float)


class PVParams(Windowed):
    """A PV installation and where its weather comes from."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    power: float = Field(gt=0, description="kWp, DC nameplate")
    inclination: float = Field(default=30.0, ge=0, le=90, description="tilt, degrees")
    orientation: float = Field(default=180.0, ge=0, le=360, description="azimuth, 180 = south")
    efficiency: float = Field(default=0.86, gt=0, le=1, description="AC / DC: system losses")
    gamma: float = Field(default=-0.004, ge=-0.02, le=0, description="1/K power coefficient")
    albedo: float = Field(default=0.2, ge=0, le=1)
    inverter_kw: float | None = Field(default=None, gt=0)
    freq_minutes: int = Field(default=15, gt=0, le=MAX_STEP_MINUTES)
    weather_origin: int | None = Field(default=None, ge=1, le=5)


def pv_from_weather(env: Env, p: PVParams, index: pd.DatetimeIndex) -> Series:
    """The PV model's AC power (kW) on `index` from the weather at the installation."""
    opts: dict[str, Any] = {"get_last": True}
    if p.weather_origin is not None:
        opts["signal_origin_id"] = p.weather_origin
    ghi = read_weather_grid(env, p.lat, p.lon, GHI, index, **opts)
    dni = read_weather_grid(env, p.lat, p.lon, DNI, index, **opts)
    dhi = read_weather_grid(env, p.lat, p.lon, DHI, index, **opts)
    t_air = read_weather_grid(env, p.lat, p.lon, T_AIR, index, **opts) - KELVIN
    wind = read_weather_grid(env, p.lat, p.lon, WS, index, **opts)
    have_beam = bool(dni.notna().any() and dhi.notna().any())
    result = pv_power(
        ghi.dropna(),
        lat=p.lat,
        lon=p.lon,
        power_kwp=p.power,
        inclination=p.inclination,
        orientation=p.orientation,
        efficiency=p.efficiency,
        gamma=p.gamma,
        temp_air_c=t_air.dropna(),
        wind_speed=wind.dropna(),
        dni=dni if have_beam else None,
        dhi=dhi if have_beam else None,
        albedo=p.albedo,
        inverter_kw=p.inverter_kw,
        position_offset=pd.Timedelta(minutes=p.freq_minutes) / 2,
    )
    env.metrics["intervals"] = len(result)
    env.metrics["decomposition"] = "given" if have_beam else "erbs"
    ac: Series = result["ac"]
    return ac


@operator("pv", PVParams, output=produces(POWER))
def pv(inputs: Sequence[Series], p: PVParams, env: Env) -> Series:
    """PV AC power (kW) from the weather at the installation."""
    out = pv_from_weather(env, p, model_grid(env, p, p.freq_minutes))
    warn_without_weather(env, out, "irradiance (GHI)", p.lat, p.lon, p.weather_origin)
    return out


OPERATORS: tuple[Operator[Any], ...] = (pv,)
