"""Typical load profiles: BDEW standard load profiles (demandlib) or a shape learned from meters."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import date
from functools import lru_cache
from typing import Any, Literal

import holidays as holidays_lib
import numpy as np
import pandas as pd
from demandlib import bdew  # type: ignore[import-untyped,unused-ignore]  # untyped package
from pydantic import Field

from besmart_server.server.graphs.engine import (
    ENERGY_PER_INTERVAL,
    MAX_STEP_MINUTES,
    Country,
    Env,
    Operator,
    Series,
    TimeZone,
    Windowed,
    min_step,
    operator,
    produces,
    times,
)
from besmart_server.server.graphs.operators.weather import model_grid

BdewProfile = Literal["H25", "G25", "L25", "P25", "S25"]
_BDEW_CLASSES = {
    "H25": bdew.H25,
    "G25": bdew.G25,
    "L25": bdew.L25,
    "P25": bdew.P25,
    "S25": bdew.S25,
}
QUARTER = pd.Timedelta(minutes=15)


def holiday_dates(
    country: str | None,
    years: Sequence[int],
    extra: Sequence[date] = (),
    *,
    subdivision: str | None = None,
) -> list[date]:
    """Public holidays of a country, and of its `subdivision` (a state: AU's VIC) when given
    (the `holidays` package ships them: no download), plus extras."""
    days = set(extra)
    if country:
        days |= set(holidays_lib.country_holidays(country, subdiv=subdivision, years=list(years)))
    return sorted(days)


@lru_cache(maxsize=64)
def _bdew_year(profile: str, year: int, holidays: tuple[date, ...]) -> Series:
    """One local calendar year of a BDEW profile at 15 minutes, normalised to sum to 1."""
    index = pd.date_range(f"{year}-01-01", f"{year + 1}-01-01", freq=QUARTER, inclusive="left")
    with warnings.catch_warnings():
        # demandlib 0.2 still calls pandas' deprecated `inplace=`; its numbers are unaffected
        warnings.simplefilter("ignore")
        values = _BDEW_CLASSES[profile](index, holidays=list(holidays) or None)
    arr = np.asarray(values, dtype=float)
    return pd.Series(arr / arr.sum(), index=index)


def bdew_profile(
    index: pd.DatetimeIndex,
    *,
    profile: str = "H25",
    annual_energy_kwh: float = 1000.0,
    timezone: str = "Europe/Warsaw",
    country: str | None = "PL",
    extra_holidays: Sequence[date] = (),
) -> Series:
    """kWh per 15 minutes at the quarter-hours `index` (UTC) of a BDEW profile.

    The profile is defined in local time; each local calendar year of it sums to
    `annual_energy_kwh` (in a UTC zone exactly; across DST the repeated autumn hour counts twice
    and the skipped spring hour not at all, as a local meter would see it).
    """
    local = index.tz_convert(timezone).tz_localize(None).floor(QUARTER)
    out = np.full(len(index), np.nan)
    for year in np.unique(local.year):
        days = tuple(holiday_dates(country, [int(year)], extra_holidays))
        shape = _bdew_year(profile, int(year), days)
        mask = local.year == year
        out[mask] = shape.reindex(local[mask]).to_numpy() * annual_energy_kwh
    return pd.Series(out, index=index)


def learned_shape(
    history: Sequence[Series], index: pd.DatetimeIndex, *, timezone: str = "Europe/Warsaw"
) -> Series:
    """A mean shape by local weekday and time of day from interval series, on `index`.

    Each series is divided by its own mean first, so a big meter does not outweigh a small one;
    the result has mean 1 over a full week. Slots never seen fall back to the time-of-day mean.
    """
    frames = []
    for s in history:
        s = s.dropna()
        if len(s) == 0 or s.mean() == 0:
            continue
        local = times(s).tz_convert(timezone)
        frames.append(
            pd.DataFrame(
                {
                    "weekday": local.day_of_week,
                    "slot": local.hour * 60 + local.minute,
                    "v": s.to_numpy() / s.mean(),
                }
            )
        )
    if not frames:
        return pd.Series(1.0, index=index, dtype=float)
    data = pd.concat(frames)
    by_week = data.groupby(["weekday", "slot"])["v"].mean()
    by_slot = data.groupby("slot")["v"].mean()
    local = index.tz_convert(timezone)
    slots = local.hour * 60 + local.minute
    keys = pd.MultiIndex.from_arrays([local.day_of_week, slots])
    values = by_week.reindex(keys).to_numpy()
    fallback = by_slot.reindex(slots).to_numpy()
    values = np.where(np.isnan(values), fallback, values)
    return pd.Series(np.nan_to_num(values, nan=1.0), index=index)


class ProfileParams(Windowed):
    """A standard (BDEW) profile, or one learned from the inputs, scaled to an energy."""

    profile: BdewProfile = "H25"
    annual_energy_kWh: float | None = Field(default=None, gt=0)
    period_energy_kWh: float | None = Field(default=None, ge=0, description="sum over the window")
    freq_minutes: int = Field(
        default=15, gt=0, le=MAX_STEP_MINUTES, description="a multiple of 15 dividing a day"
    )
    timezone: TimeZone = "Europe/Warsaw"
    country: Country = Field(default="PL", description="public holidays count as Sundays")
    holidays: list[date] = Field(default_factory=list)


def _check(p: ProfileParams, n_inputs: int) -> tuple[str, str] | None:
    if p.freq_minutes % 15 or 1440 % p.freq_minutes:
        return ("freq_minutes", "freq_minutes must be a multiple of 15 that divides a day")
    if p.annual_energy_kWh is not None and p.period_energy_kWh is not None:
        return ("period_energy_kWh", "give annual_energy_kWh or period_energy_kWh, not both")
    return None


def to_freq(quarter_hours: Series, freq_minutes: int) -> Series:
    """Sum 15-minute energies into epoch-aligned buckets of `freq_minutes`."""
    if freq_minutes == 15:
        return quarter_hours
    step = pd.Timedelta(minutes=freq_minutes)
    buckets = quarter_hours.resample(step, origin="epoch", label="left", closed="left")
    return buckets.sum(min_count=1)


@operator(
    "profile",
    ProfileParams,
    inputs=(0, None),
    check=_check,
    output=produces(ENERGY_PER_INTERVAL),
)
def profile(inputs: Sequence[Series], p: ProfileParams, env: Env) -> Series:
    """A typical load profile in kWh per interval: BDEW, or learned from the input series."""
    index = model_grid(env, p, 15)
    if inputs:
        # learned: mean level of the inputs (kWh per hour) times their shape
        rates = [s / (_step_hours(s)) for s in inputs if len(s.dropna()) > 1]
        level = float(np.mean([r.mean() for r in rates])) if rates else 0.0
        out = learned_shape(rates, index, timezone=p.timezone) * level * 0.25
        env.metrics["source"] = "learned"
    else:
        annual = p.annual_energy_kWh if p.annual_energy_kWh is not None else 1000.0
        out = bdew_profile(
            index,
            profile=p.profile,
            annual_energy_kwh=annual,
            timezone=p.timezone,
            country=p.country,
            extra_holidays=p.holidays,
        )
        env.metrics["source"] = p.profile
    out = to_freq(out, p.freq_minutes)
    if p.period_energy_kWh is not None:
        total = float(out.sum())
        out = out * (p.period_energy_kWh / total) if total > 0 else out * 0.0
    elif inputs and p.annual_energy_kWh is not None:
        out = out * (p.annual_energy_kWh / (float(out.mean()) * 365.25 * 1440 / p.freq_minutes))
    env.metrics["energy_kWh"] = float(out.sum())
    return out


def _step_hours(s: Series) -> float:
    step = min_step(s.dropna().index)
    return step / pd.Timedelta(hours=1) if step is not None else 0.25


OPERATORS: tuple[Operator[Any], ...] = (profile,)
