"""Wind power from a power curve at hub height."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from besmart_server.server.graphs.operator_api import (
    MAX_STEP_MINUTES,
    POWER,
    Env,
    Operator,
    Series,
    Windowed,
    operator,
    produces,
)
from besmart_server.server.graphs.operators.weather import (
    WS,
    model_grid,
    read_weather_grid,
    warn_without_weather,
)


def hub_speed(
    speed: Series, hub_height: float, *, roughness: float = 0.1, ref_height: float = 10.0
) -> Series:
    """Log-law wind speed at hub height from a speed measured at `ref_height` (m)."""
    return speed * float(np.log(hub_height / roughness) / np.log(ref_height / roughness))


def power_curve(
    speed: Series,
    *,
    rated_kw: float,
    cut_in: float,
    rated_speed: float,
    cut_out: float,
) -> Series:
    """kW at hub-height speed: 0 below cut-in and from cut-out, cubic up to rated, then rated.

    Between cut-in and rated, P = rated * (v³ - v_in³) / (v_r³ - v_in³): continuous at both ends.
    """
    v = speed.to_numpy(dtype=float)
    ramp = rated_kw * (v**3 - cut_in**3) / (rated_speed**3 - cut_in**3)
    p = np.where(v < cut_in, 0.0, np.where(v < rated_speed, ramp, rated_kw))
    p = np.where(v >= cut_out, 0.0, p)
    p = np.where(np.isnan(v), np.nan, p)
    return pd.Series(p, index=speed.index)


class WindParams(Windowed):
    """A wind turbine (or park) and where its weather comes from."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    power: float = Field(gt=0, description="rated kW")
    hub_height: float = Field(default=80.0, gt=0, description="m")
    cut_in_speed: float = Field(default=3.0, ge=0, description="m/s at hub height")
    rated_speed: float = Field(default=12.0, gt=0)
    cut_out_speed: float = Field(default=25.0, gt=0)
    roughness: float = Field(default=0.1, gt=0, description="roughness length z0, m")
    measurement_height: float = Field(default=10.0, gt=0, description="height of the WS signal")
    efficiency: float = Field(default=1.0, gt=0, le=1, description="availability and losses")
    freq_minutes: int = Field(default=15, gt=0, le=MAX_STEP_MINUTES)
    weather_origin: int | None = Field(default=None, ge=1, le=5)


def check_curve(p: Any, n_inputs: int) -> tuple[str, str] | None:
    """cut-in < rated < cut-out."""
    if not p.cut_in_speed < p.rated_speed:
        return ("rated_speed", "rated_speed must exceed cut_in_speed")
    if not p.rated_speed < p.cut_out_speed:
        return ("cut_out_speed", "cut_out_speed must exceed rated_speed")
    return None


def wind_from_weather(env: Env, p: WindParams, index: pd.DatetimeIndex) -> Series:
    """The turbine's power (kW) on `index` from the wind speed at the site."""
    opts: dict[str, Any] = {"get_last": True}
    if p.weather_origin is not None:
        opts["signal_origin_id"] = p.weather_origin
    ws = read_weather_grid(env, p.lat, p.lon, WS, index, **opts).dropna()
    v = hub_speed(ws, p.hub_height, roughness=p.roughness, ref_height=p.measurement_height)
    env.metrics["intervals"] = len(v)
    curve = power_curve(
        v,
        rated_kw=p.power,
        cut_in=p.cut_in_speed,
        rated_speed=p.rated_speed,
        cut_out=p.cut_out_speed,
    )
    return curve * p.efficiency


@operator("wind", WindParams, check=check_curve, output=produces(POWER))
def wind(inputs: Sequence[Series], p: WindParams, env: Env) -> Series:
    """Wind power (kW) from the wind speed at the site through a power curve."""
    out = wind_from_weather(env, p, model_grid(env, p, p.freq_minutes))
    warn_without_weather(env, out, "wind speed (WS)", p.lat, p.lon, p.weather_origin)
    return out


OPERATORS: tuple[Operator[Any], ...] = (wind,)
