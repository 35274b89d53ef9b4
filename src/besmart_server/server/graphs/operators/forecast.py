"""Day-ahead forecasts: `forecast_load` (gradient boosting, BDEW fallback) and `forecast_pv`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import holidays as holidays_lib
import lightgbm as lgb
import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pydantic import Field, model_validator

from besmart_server.server.graphs.operator_api import (
    MAX_STEP_MINUTES,
    POWER,
    Country,
    Env,
    Operator,
    Params,
    Series,
    TimeZone,
    empty_series,
    grid,
    operator,
    produces,
    same_as_input,
    times,
)
from besmart_server.server.graphs.operators.profile import to_freq
from besmart_server.server.graphs.operators.pv import PVParams, pv_from_weather
from besmart_server.server.graphs.operators.weather import KELVIN, on_grid, warn_without_weather
from besmart_server.server.profiles import BdewProfile, bdew_profile, holiday_dates

DAY = pd.Timedelta(days=1)
WEEK = pd.Timedelta(days=7)
FEATURES = (
    "hour",
    "weekday",
    "holiday",
    "doy_sin",
    "doy_cos",
    "temp_c",
    "lag_near",  # the same time of day on the nearest day known at the issue (1 day before)
    "lag_7d",
    "mean_7d",  # the same time of day over 7 days from the nearest known: a low-noise profile
)


def calendar_features(
    index: pd.DatetimeIndex,
    history: Series,
    temperature_c: Series | None,
    *,
    timezone: str,
    country: str | None,
    subdivision: str | None = None,
    lead_days: int = 1,
) -> NDArray[np.float64]:
    """One row per time: local time of day, weekday, holiday, season, temperature, lags.

    Lags read only `history`, so a row never sees a value that was not known before the
    forecast was issued. `lead_days` is the nearest whole-day lag known at the issue (1 when
    issued at the window's start; 2 when issued at 06:00 the day before), and the training
    rows use the same lags, so the model learns what it will be given.
    """
    local = index.tz_convert(timezone)
    days = holiday_dates(country, sorted({int(y) for y in local.year}), subdivision=subdivision)
    holiday = np.isin(np.asarray(local.date), np.asarray(days, dtype=object))
    doy = 2 * np.pi * local.day_of_year.to_numpy() / 365.25
    temp = (
        temperature_c.reindex(index).to_numpy(dtype=float)
        if temperature_c is not None
        else np.full(len(index), np.nan)
    )
    days_before = np.column_stack(
        [
            history.reindex(index - k * DAY).to_numpy(dtype=float)
            for k in range(lead_days, lead_days + 7)
        ]
    )
    seen = np.isfinite(days_before).sum(axis=1)
    mean_7d = np.divide(
        np.nansum(days_before, axis=1),
        seen,
        out=np.full(len(index), np.nan),
        where=seen > 0,
    )
    return np.column_stack(
        [
            local.hour + local.minute / 60.0,
            local.day_of_week,
            holiday.astype(float),
            np.sin(doy),
            np.cos(doy),
            temp,
            history.reindex(index - lead_days * DAY).to_numpy(dtype=float),
            # the same weekday: the nearest whole week known (7 days for a lead of 1 to 7)
            history.reindex(index - 7 * -(-lead_days // 7) * DAY).to_numpy(dtype=float),
            mean_7d,
        ]
    ).astype(float)


def forecast_load_series(
    history: Series,
    index: pd.DatetimeIndex,
    *,
    temperature_c: Series | None = None,
    min_history_days: float = 14.0,
    profile: str = "H25",
    timezone: str = "Europe/Warsaw",
    country: str | None = "PL",
    subdivision: str | None = None,
    rounds: int = 200,
    seed: int = 0,
    quantile: float | None = None,
) -> tuple[Series, dict[str, Any]]:
    """Load (same unit as `history`) at `index` from history strictly before `index[0]`.

    The history may end earlier than `index[0]` (a forecast issued the day before reads only
    what was stored by then): the lags then start at the nearest whole day it covers.
    `quantile` (e.g. 0.1, 0.9) forecasts that quantile instead of the mean (pinball loss);
    the standard-profile fallback has no spread to offer and ignores it.
    """
    issue = index[0]
    hist = history[history.index < issue].dropna()
    step = index[1] - index[0] if len(index) > 1 else pd.Timedelta(minutes=15)
    step_h = step / pd.Timedelta(hours=1)
    days = len(hist) * step_h / 24.0
    metrics: dict[str, Any] = {"history_days": round(days, 3)}
    if days < min_history_days:
        # too little history to learn from: the standard profile at the history's level
        quarter = grid(
            index[0], index[-1] + (index[1] - index[0] if len(index) > 1 else DAY / 96), 15
        )
        shape = to_freq(
            bdew_profile(quarter, profile=profile, timezone=timezone, country=country),
            int(step_h * 60),
        )
        shape = shape.reindex(index)
        level = float(hist.mean()) if len(hist) else float(shape.mean())
        out = shape * (level / float(shape.mean())) if float(shape.mean()) else shape
        metrics["model"] = f"profile:{profile}"
        return out, metrics
    # Whole days from the last known interval's end to the farthest forecast, rounded: issued
    # at the window's start that is 1 (a feed's last minutes not yet stored leave a few NaN
    # lags, which boosting takes), issued at 06:00 the day before it is 2 (1.75 days).
    ahead = (index[-1] - hist.index[-1] - step) / DAY
    lead_days = max(1, int(np.floor(ahead + 0.5)))

    def features(at: pd.DatetimeIndex) -> NDArray[np.float64]:
        return calendar_features(
            at,
            hist,
            temperature_c,
            timezone=timezone,
            country=country,
            subdivision=subdivision,
            lead_days=lead_days,
        )

    x = features(times(hist))
    params: dict[str, Any] = {
        **(
            {"objective": "regression"}
            if quantile is None
            else {"objective": "quantile", "alpha": quantile}
        ),
        "learning_rate": 0.05,
        "num_leaves": 5,  # small trees, large leaves: weeks of noisy 15-minute history
        "min_data_in_leaf": 100,
        "deterministic": True,
        "num_threads": 1,  # deterministic and polite on a shared machine
        "seed": seed,
        "verbose": -1,
    }
    data = lgb.Dataset(x, label=hist.to_numpy(dtype=float), feature_name=list(FEATURES))
    model = lgb.train(params, data, num_boost_round=rounds)
    xq = features(index)
    pred = np.asarray(model.predict(xq), dtype=float)
    metrics |= {"model": "lightgbm", "train_rows": len(hist), "lead_days": lead_days}
    if quantile is not None:
        metrics["quantile"] = quantile
    return pd.Series(pred, index=index), metrics


class ForecastLoadParams(Params):
    """Input 0: history (kWh per interval or kW); input 1, optional: air temperature (K)."""

    freq_minutes: int = Field(default=15, gt=0, le=MAX_STEP_MINUTES)
    min_history_days: float = Field(default=14.0, gt=0, le=3660)
    profile: BdewProfile = "H25"
    timezone: TimeZone = "Europe/Warsaw"
    country: Country = "PL"
    subdivision: str | None = Field(
        default=None, description="a region's own holidays too, e.g. VIC with country AU"
    )
    rounds: int = Field(default=200, gt=0, le=5000)
    quantile: float | None = Field(
        default=None, gt=0, lt=1, description="forecast this quantile (0.1: P10), not the mean"
    )
    non_negative: bool = True
    enabled: bool = Field(
        default=True, description="false: output nothing (an optional branch, e.g. the band)"
    )

    @model_validator(mode="after")
    def _known_subdivision(self) -> ForecastLoadParams:
        if self.subdivision is not None:
            known = holidays_lib.list_supported_countries().get(self.country or "", [])
            if self.subdivision not in known:
                raise ValueError(
                    f"no holidays are known for subdivision {self.subdivision!r} of country "
                    f"{self.country!r}" + (f" (one of {', '.join(known)})" if known else "")
                )
        return self


@operator("forecast_load", ForecastLoadParams, inputs=(1, 2), output=same_as_input)
def forecast_load(inputs: Sequence[Series], p: ForecastLoadParams, env: Env) -> Series:
    """Load over the run's window from the history before it, calendar and temperature."""
    if not p.enabled:
        return empty_series()
    index = grid(env.since, env.till, p.freq_minutes)
    if len(index) == 0:
        env.metrics["warning"] = f"no {p.freq_minutes}-minute interval starts in the window"
        return empty_series()
    temperature = None
    if len(inputs) > 1 and len(inputs[1].dropna()):
        full = grid(
            inputs[0].index.min() if len(inputs[0]) else env.since, env.till, p.freq_minutes
        )
        temperature = on_grid(inputs[1].dropna(), full) - KELVIN
    out, metrics = forecast_load_series(
        inputs[0],
        index,
        temperature_c=temperature,
        min_history_days=p.min_history_days,
        profile=p.profile,
        timezone=p.timezone,
        country=p.country,
        subdivision=p.subdivision,
        rounds=p.rounds,
        quantile=p.quantile,
    )
    if p.non_negative:
        out = out.clip(lower=0.0)
    env.metrics.update(metrics)
    return out


def bias_ratio(
    measured: Series, modelled: Series, *, floor: float, bounds: tuple[float, float] = (0.2, 2.0)
) -> tuple[float, int]:
    """Σ measured / Σ modelled over intervals where both exist and the model exceeds `floor`."""
    both = pd.concat([measured, modelled], axis=1, join="inner").dropna()
    both = both[both.iloc[:, 1] > floor]
    if len(both) == 0 or float(both.iloc[:, 1].sum()) <= 0:
        return 1.0, 0
    ratio = float(both.iloc[:, 0].sum()) / float(both.iloc[:, 1].sum())
    return float(np.clip(ratio, *bounds)), len(both)


def ratio_quantile(
    measured: Series,
    modelled: Series,
    *,
    floor: float,
    quantile: float,
    bounds: tuple[float, float] = (0.0, 2.0),
) -> tuple[float, int]:
    """The `quantile` of measured/modelled per interval, weighted by the modelled output (so
    an hour of full sun counts more than a dim one), where the model exceeds `floor`."""
    both = pd.concat([measured, modelled], axis=1, join="inner").dropna()
    both = both[both.iloc[:, 1] > floor]
    if len(both) == 0:
        return 1.0, 0
    ratio = both.iloc[:, 0].to_numpy(dtype=float) / both.iloc[:, 1].to_numpy(dtype=float)
    weight = both.iloc[:, 1].to_numpy(dtype=float)
    order = np.argsort(ratio)
    cum = np.cumsum(weight[order]) / float(weight.sum())
    at = int(np.searchsorted(cum, quantile))
    return float(np.clip(ratio[order][min(at, len(ratio) - 1)], *bounds)), len(both)


class ForecastPVParams(PVParams):
    """The PV model on forecast weather; input 0, optional: measured power (kW) for the bias."""

    weather_origin: int | None = Field(default=2, ge=1, le=5, description="2: forecasts")
    history_weather_origin: int | None = Field(default=None, ge=1, le=5)
    bias_days: int = Field(default=14, ge=0, le=366)
    quantile: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="scale by this quantile of the recent days' measured/modelled ratios "
        "(0.1: P10) instead of their overall ratio",
    )
    enabled: bool = Field(
        default=True, description="false: output nothing (an optional branch, e.g. the band)"
    )


@operator("forecast_pv", ForecastPVParams, inputs=(0, 1), output=produces(POWER))
def forecast_pv(inputs: Sequence[Series], p: ForecastPVParams, env: Env) -> Series:
    """PV power (kW) from weather forecasts, scaled by measured/modelled output of recent days."""
    if not p.enabled:
        return empty_series()
    index = grid(env.since, env.till, p.freq_minutes)
    forecast = pv_from_weather(env, p, index)
    ratio, used = 1.0, 0
    if inputs and p.bias_days > 0:
        measured = inputs[0]
        measured = measured[
            (measured.index < env.since) & (measured.index >= env.since - p.bias_days * DAY)
        ]
        if len(measured.dropna()):
            past = grid(env.since - p.bias_days * DAY, env.since, p.freq_minutes)
            hist_params = p.model_copy(update={"weather_origin": p.history_weather_origin})
            modelled = pv_from_weather(env, hist_params, past)
            observed = on_grid(measured.dropna(), past)
            if p.quantile is None:
                ratio, used = bias_ratio(observed, modelled, floor=0.01 * p.power)
            else:
                # dim intervals' ratios are noise (a cloud edge, a minute of shade): 10 % kWp
                ratio, used = ratio_quantile(
                    observed, modelled, floor=0.1 * p.power, quantile=p.quantile
                )
    env.metrics |= {"bias_ratio": ratio, "bias_intervals": used}
    warn_without_weather(env, forecast, "irradiance (GHI)", p.lat, p.lon, p.weather_origin)
    return forecast * ratio


OPERATORS: tuple[Operator[Any], ...] = (forecast_load, forecast_pv)
