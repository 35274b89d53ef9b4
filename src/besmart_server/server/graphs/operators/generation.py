"""`generation`: PV or wind power by type, as the estimation body's `params` describe it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import pandas as pd
from pydantic import Field, field_validator

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
from besmart_server.server.graphs.operators.pv import PVParams, pv_from_weather
from besmart_server.server.graphs.operators.weather import model_grid, warn_without_weather
from besmart_server.server.graphs.operators.wind import WindParams, check_curve, wind_from_weather


class GenerationParams(Windowed):
    """The real service's estimation `params`: type PV/wind (or none) and the plant's data."""

    type: Literal["pv", "wind", "none"] = "none"
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    power: float | None = Field(default=None, ge=0, description="kWp (PV) or rated kW (wind)")
    inclination: float = Field(default=30.0, ge=0, le=90)
    orientation: float = Field(default=180.0, ge=0, le=360)
    efficiency: float = Field(default=0.86, gt=0, le=1)
    cut_in_speed: float = Field(default=3.0, ge=0)
    rated_speed: float = Field(default=12.0, gt=0)
    cut_out_speed: float = Field(default=25.0, gt=0)
    hub_height: float = Field(default=80.0, gt=0)
    freq_minutes: int = Field(default=15, gt=0, le=MAX_STEP_MINUTES)
    weather_origin: int | None = Field(default=None, ge=1, le=5)

    @field_validator("type", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        # clients send "PV", "Wind" or nothing; "load" and "" mean no generation
        if value is None or value == "" or (isinstance(value, str) and value.lower() == "load"):
            return "none"
        return value.lower() if isinstance(value, str) else value


def _check(p: GenerationParams, n_inputs: int) -> tuple[str, str] | None:
    if p.type == "none":
        return None
    for name in ("lat", "lon", "power"):
        if getattr(p, name) is None:
            return (name, f"type {p.type!r} needs {name}")
    return check_curve(p, n_inputs) if p.type == "wind" else None


@operator("generation", GenerationParams, check=_check, output=produces(POWER))
def generation(inputs: Sequence[Series], p: GenerationParams, env: Env) -> Series:
    """Generation power (kW): the PV or wind model by `type`, zero for none."""
    index = model_grid(env, p, p.freq_minutes)
    env.metrics["type"] = p.type
    if p.type == "none" or not p.power:
        return pd.Series(0.0, index=index, dtype=float)
    assert p.lat is not None  # _check
    assert p.lon is not None
    common: dict[str, Any] = {"lat": p.lat, "lon": p.lon, "power": p.power}
    common |= {"efficiency": p.efficiency, "freq_minutes": p.freq_minutes}
    common |= {"weather_origin": p.weather_origin}
    if p.type == "pv":
        pv = PVParams(inclination=p.inclination, orientation=p.orientation, **common)
        out = pv_from_weather(env, pv, index)
        warn_without_weather(env, out, "irradiance (GHI)", p.lat, p.lon, p.weather_origin)
        return out
    wind = WindParams(
        hub_height=p.hub_height,
        cut_in_speed=p.cut_in_speed,
        rated_speed=p.rated_speed,
        cut_out_speed=p.cut_out_speed,
        **common,
    )
    out = wind_from_weather(env, wind, index)
    warn_without_weather(env, out, "wind speed (WS)", p.lat, p.lon, p.weather_origin)
    return out


OPERATORS: tuple[Operator[Any], ...] = (generation,)
