"""Standard load profiles and public holidays: pure functions over pandas time indexes.

Both the graphs (the `profile` operator, forecasts) and the validation's estimation (where a
series has no history) shape energy with them, so they belong to neither.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import date
from functools import lru_cache
from typing import Literal, TypeAlias

import holidays as holidays_lib
import numpy as np
import pandas as pd
from demandlib import bdew  # type: ignore[import-untyped,unused-ignore]  # untyped package

Series: TypeAlias = "pd.Series[float]"

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
