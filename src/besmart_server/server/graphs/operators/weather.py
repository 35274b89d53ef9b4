"""Weather at a place: the `weather` operator and putting weather series on a model grid."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from besmart_server.server.graphs.operator_api import (
    MAX_STEP_MINUTES,
    Env,
    Id,
    Operator,
    Quantity,
    Series,
    Windowed,
    as_series,
    empty_series,
    grid,
    min_step,
    ms_to_ts,
    ns,
    operator,
)
from besmart_server.server.graphs.operators.signals import quantity_of

# Signal types the generation models read (catalog moids and units).
T_AIR = 139  # K
GHI = 1031  # W/m2
DNI = 1032
DHI = 1033
WS = 1041  # m/s
KELVIN = 273.15


def on_grid(series: Series, index: pd.DatetimeIndex, *, default_step_minutes: int = 60) -> Series:
    """Interval values (each the mean of [t, t+step)) resampled onto another interval grid.

    Each value is placed at its interval's centre and interpolated linearly in time to the
    centres of the target intervals; nothing is extrapolated beyond the outer centres.
    """
    if len(series) == 0 or len(index) == 0:
        return pd.Series(np.nan, index=index, dtype=float)
    src_step = min_step(series.index) or pd.Timedelta(minutes=default_step_minutes)
    dst_step = index[1] - index[0] if len(index) > 1 else src_step
    x = ns(series.index + src_step / 2).astype(float)
    xq = ns(index + dst_step / 2).astype(float)
    values = np.interp(xq, x, series.to_numpy(dtype=float), left=np.nan, right=np.nan)
    # np.interp can't return NaN at the very ends of a one-point series: hold that point instead.
    if len(series) == 1:
        values = np.full(len(index), float(series.iloc[0]))
    return pd.Series(values, index=index)


def read_weather_grid(
    env: Env,
    lat: float,
    lon: float,
    moid: int,
    index: pd.DatetimeIndex,
    **options: Any,
) -> Series:
    """Weather type `moid` at a place, on the model grid `index` (NaN where none)."""
    if len(index) == 0:
        return empty_series()
    step = index[1] - index[0] if len(index) > 1 else pd.Timedelta(hours=1)
    # one hour either side so interpolation to the edge intervals has neighbours
    since = int((index[0] - pd.Timedelta(hours=1)).value // 1_000_000)
    till = int((index[-1] + step + pd.Timedelta(hours=1)).value // 1_000_000)
    raw = as_series(env.ctx.read_weather(lat, lon, moid, since, till, **options))
    return on_grid(raw, index)


def model_grid(env: Env, p: Windowed, freq_minutes: int) -> pd.DatetimeIndex:
    """The operator's output grid: the widened window in steps of `freq_minutes`."""
    since, till = env.span(p.lookback_minutes, p.lookahead_minutes)
    return grid(ms_to_ts(since), ms_to_ts(till), freq_minutes)


def warn_without_weather(
    env: Env, modelled: Series, needed: str, lat: float, lon: float, origin: int | None
) -> None:
    """A run that models nothing says why in its record instead of quietly writing nothing."""
    if len(modelled.dropna()) == 0:
        of = "" if origin is None else f" of origin {origin}"
        env.metrics["warning"] = (
            f"no {needed} weather{of} near ({lat}, {lon}) in the window: nothing was modelled"
        )


class WeatherParams(Windowed):
    """A weather signal at a place; no place (null lat/lon) gives an empty series."""

    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    moid: Id
    delta_t: int | None = Field(default=None, gt=0, le=MAX_STEP_MINUTES)
    signal_origin_id: int | None = Field(default=None, ge=1, le=5)
    get_last: bool = True


def _weather_output(p: WeatherParams, inputs: Sequence[Quantity | None]) -> Quantity | None:
    return quantity_of(p.moid)


@operator("weather", WeatherParams, output=_weather_output)
def weather(inputs: Sequence[Series], p: WeatherParams, env: Env) -> Series:
    """Read a weather signal at a latitude/longitude."""
    if p.lat is None or p.lon is None:
        return empty_series()
    since, till = env.span(p.lookback_minutes, p.lookahead_minutes)
    options: dict[str, Any] = {"get_last": p.get_last}
    if p.delta_t is not None:
        options["delta_t"] = p.delta_t
    if p.signal_origin_id is not None:
        options["signal_origin_id"] = p.signal_origin_id
    out = as_series(env.ctx.read_weather(p.lat, p.lon, p.moid, since, till, **options))
    env.metrics["points_read"] = len(out)
    return out


OPERATORS: tuple[Operator[Any], ...] = (weather,)
