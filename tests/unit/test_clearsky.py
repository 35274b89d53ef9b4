"""GHI_CS against pvlib itself and against the sun's behaviour."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from pvlib import clearsky as pvlib_clearsky  # type: ignore[import-untyped]  # no type hints
from pvlib import location  # type: ignore[import-untyped,unused-ignore]  # (reported once)

from besmart_server.server.weather.clearsky import (
    CLEAR_SKY_ORIGIN,
    clear_sky_frame,
    clear_sky_ghi,
    sample_times,
)
from besmart_server.server.weather.compat import quiet_pandas_deprecations
from besmart_server.wire import TYPE_DBL

M = 60_000
H = 60 * M
KRAKOW = (50.06, 19.94)


def ms(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp() * 1000)


def test_sample_times_aligned_and_half_open() -> None:
    assert sample_times(0, H, 15).tolist() == [0, 15 * M, 30 * M, 45 * M]
    assert sample_times(1, H + 1, 15).tolist() == [15 * M, 30 * M, 45 * M, H]
    assert sample_times(5 * M, 10 * M, 15).tolist() == []
    with pytest.raises(ValueError, match="positive"):
        sample_times(0, H, 0)


def test_matches_pvlib_ineichen_directly() -> None:
    since = ms(2024, 6, 21)
    times = sample_times(since, since + 24 * H, 15)
    ours = clear_sky_ghi(*KRAKOW, times)
    index = pd.DatetimeIndex(pd.to_datetime(times, unit="ms", utc=True))
    lat, lon = KRAKOW
    site = location.Location(lat, lon, altitude=location.lookup_altitude(lat, lon))
    with quiet_pandas_deprecations():
        expected = site.get_clearsky(index, model="ineichen")["ghi"].to_numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-9)


def test_zero_at_night_and_peak_at_solar_noon() -> None:
    since = ms(2024, 6, 21)
    f = clear_sky_frame(*KRAKOW, since, since + 24 * H, step_minutes=15)
    assert len(f) == 96
    night = (f.time >= since) & (f.time < since + 2 * H)  # 01:00-03:00 local summer time
    assert f.value[night].tolist() == [0.0] * 8
    # Solar noon at 19.94° E on 21 June: 12:00 - 19.94°/15°/h - 1.7 min (equation of time)
    solar_noon = since + 12 * H - round(19.94 / 15 * H) + round(1.7 * M)
    peak = int(f.time[int(np.argmax(f.value))])
    assert abs(peak - solar_noon) <= 15 * M
    assert 750 < float(f.value.max()) < 1000
    # symmetric around noon: an hour before and after differ by a few percent at most
    before = float(clear_sky_ghi(*KRAKOW, np.array([solar_noon - H]))[0])
    after = float(clear_sky_ghi(*KRAKOW, np.array([solar_noon + H]))[0])
    assert before == pytest.approx(after, rel=0.03)


def test_frame_shape_and_origin() -> None:
    since = ms(2024, 3, 20)
    f = clear_sky_frame(0.0, 0.0, since, since + 6 * H, step_minutes=60, acq=42)
    assert f.time.tolist() == [since + i * H for i in range(6)]
    assert f.origin.tolist() == [CLEAR_SKY_ORIGIN] * 6
    assert f.acq.tolist() == [42] * 6
    assert f.type.tolist() == [TYPE_DBL] * 6
    assert f.value[0] == 0.0  # midnight at the equator and Greenwich


def test_polar_night_is_dark_and_southern_summer_is_bright() -> None:
    dec = ms(2024, 12, 21)
    assert clear_sky_frame(80.0, 15.0, dec, dec + 24 * H).value.max() == 0.0
    jun = ms(2024, 6, 21)
    cape_town = (-33.92, 18.42)
    winter = clear_sky_frame(*cape_town, jun, jun + 24 * H).value.max()
    summer = clear_sky_frame(*cape_town, dec, dec + 24 * H).value.max()
    assert summer > 1.5 * winter > 0


def test_empty_window() -> None:
    assert clear_sky_ghi(0.0, 0.0, np.empty(0, np.int64)).shape == (0,)
    assert len(clear_sky_frame(0.0, 0.0, 0, 1)) == 1  # t = 0 only
    assert len(clear_sky_frame(0.0, 0.0, 1, 2)) == 0


def test_falls_back_to_a_constant_turbidity(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(*_args: object, **_kwargs: object) -> None:
        raise OSError("LinkeTurbidities.h5 not found")

    monkeypatch.setattr(pvlib_clearsky, "lookup_linke_turbidity", missing)
    since = ms(2024, 6, 21, 10)
    times = np.array([since], dtype=np.int64)
    ours = clear_sky_ghi(*KRAKOW, times)
    index = pd.DatetimeIndex(pd.to_datetime(times, unit="ms", utc=True))
    lat, lon = KRAKOW
    site = location.Location(lat, lon, altitude=location.lookup_altitude(lat, lon))
    with quiet_pandas_deprecations():
        expected = site.get_clearsky(index, model="ineichen", linke_turbidity=3.0)["ghi"]
    assert float(ours[0]) == pytest.approx(float(expected.iloc[0]))
    assert float(ours[0]) > 700
