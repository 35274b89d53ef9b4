"""GHI_CS: clear-sky global horizontal irradiance for any place and time, computed, never stored.

Solar position (pvlib's default NREL SPA in numpy) and the Ineichen-Perez clear-sky model from
pvlib, with the monthly Linke turbidity climatology and the elevation map that pvlib ships
(LinkeTurbidities.h5, Altitude.h5). Should those data files be missing, a Linke turbidity of
3.0 (a typical clean mid-latitude sky) and sea level are used instead, so the value stays
physical.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Final

import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]  # typed only with pandas-stubs
from numpy.typing import NDArray
from pvlib import clearsky, location  # type: ignore[import-untyped]  # pvlib ships no type hints

from besmart_server.server.signals.pipeline import MS_PER_MINUTE, Frame
from besmart_server.server.weather.compat import quiet_pandas_deprecations
from besmart_server.wire import TYPE_DBL

log = logging.getLogger(__name__)

CLEAR_SKY_ORIGIN: Final = 3  # calculated
DEFAULT_LINKE_TURBIDITY: Final = 3.0
DEFAULT_STEP_MINUTES: Final = 15
I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
# pandas (and so pvlib's solar position) holds times as int64 ns: 1677-09-21 to 2262-04-11. A
# read may ask for any window within ±2**62 ms; GHI_CS has no points outside these times
# (whole ms strictly inside the bounds).
COMPUTABLE_SINCE: Final = int(pd.Timestamp.min.value) // 1_000_000 + 1
COMPUTABLE_TILL: Final = int(pd.Timestamp.max.value) // 1_000_000


def computable(since: int, till: int) -> tuple[int, int]:
    """[since, till) narrowed to the times GHI_CS can be computed for (maybe empty)."""
    lo, hi = max(since, COMPUTABLE_SINCE), min(till, COMPUTABLE_TILL)
    return lo, max(lo, hi)


def sample_times(since: int, till: int, step_minutes: int = DEFAULT_STEP_MINUTES) -> I64:
    """The multiples of `step_minutes` since the epoch with since <= t < till (UTC ms), within
    the computable times."""
    if step_minutes <= 0:
        raise ValueError("step_minutes must be positive")
    since, till = computable(since, till)
    step = step_minutes * MS_PER_MINUTE
    first = -(-since // step) * step
    return np.arange(first, till, step, dtype=np.int64)


@lru_cache(maxsize=4096)
def altitude_m(lat: float, lon: float) -> float:
    """Terrain elevation from pvlib's bundled map; 0 (sea level) when it is unavailable."""
    try:
        return float(location.lookup_altitude(lat, lon))
    except (OSError, ImportError, KeyError, ValueError):
        log.warning("pvlib altitude map unavailable; using sea level")
        return 0.0


def linke_turbidity(times: pd.DatetimeIndex, lat: float, lon: float) -> F64:
    """Linke turbidity per time from pvlib's monthly climatology, else the documented constant."""
    try:
        tl = clearsky.lookup_linke_turbidity(times, lat, lon)
        return np.asarray(tl, dtype=np.float64)
    except (OSError, ImportError, KeyError, ValueError):
        log.warning("pvlib Linke turbidity table unavailable; using %s", DEFAULT_LINKE_TURBIDITY)
        return np.full(len(times), DEFAULT_LINKE_TURBIDITY)


def clear_sky_ghi(lat: float, lon: float, times_ms: I64) -> F64:
    """Ineichen clear-sky GHI in W/m2 at each UTC ms time (0 at night)."""
    if times_ms.shape[0] == 0:
        return np.empty(0, np.float64)
    times = pd.DatetimeIndex(pd.to_datetime(times_ms, unit="ms", utc=True))
    site = location.Location(lat, lon, altitude=altitude_m(round(lat, 4), round(lon, 4)))
    with quiet_pandas_deprecations():
        tl = pd.Series(linke_turbidity(times, lat, lon), index=times)
        cs = site.get_clearsky(times, model="ineichen", linke_turbidity=tl)
    # Ineichen gives 0 below the horizon; NaN (airmass undefined) also means no sun.
    ghi = np.nan_to_num(np.asarray(cs["ghi"], dtype=np.float64), nan=0.0)
    return np.maximum(ghi, 0.0)


def clear_sky_frame(
    lat: float,
    lon: float,
    since: int,
    till: int,
    *,
    step_minutes: int = DEFAULT_STEP_MINUTES,
    acq: int = 0,
) -> Frame:
    """GHI_CS sampled every `step_minutes` in [since, till) as a Frame of origin 3."""
    times = sample_times(since, till, step_minutes)
    n = times.shape[0]
    return Frame(
        times,
        np.full(n, CLEAR_SKY_ORIGIN, dtype=np.int64),
        np.full(n, acq, dtype=np.int64),
        np.full(n, TYPE_DBL, dtype=np.int8),
        clear_sky_ghi(lat, lon, times),
    )
