"""The forecast benchmark on small slices of the real data sets (bench/forecast.py), the PVDAQ
clock-shift correction, and the backtest's no-leak rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bench.forecast import Api, Slice, load_demand, load_pv, run_case
from bench.forecast_data import (
    PVSet,
    daily_clock_shift,
    pvdaq_system_50,
    serf_east_2016,
    victoria_demand,
)
from fastapi.testclient import TestClient

from besmart_server.server.config import Settings
from besmart_server.server.db import Database
from besmart_server.server.graphs.operators.forecast import (
    ForecastLoadParams,
    forecast_load_series,
    ratio_quantile,
)
from besmart_server.server.profiles import holiday_dates


@pytest.fixture(scope="module")
def pvdaq() -> PVSet:
    return pvdaq_system_50()


def test_pvdaq_clock_shifts_are_found_and_removed(pvdaq: PVSet) -> None:
    # about 238 days a year on daylight saving time, over 2.7 years
    assert 600 < pvdaq.shifted_days < 700
    again = daily_clock_shift(pvdaq.power_kw, pvdaq.lat, pvdaq.lon, pvdaq.utc_offset_h, 15)
    assert int((again != 0).sum()) == 0
    # every month peaks at the same local standard hours, summer as winter
    local = pvdaq.power_kw.tz_convert("Etc/GMT+7")
    peak = local.groupby(local.index.month).apply(lambda s: s.groupby(s.index.hour).mean().idxmax())
    assert set(peak.to_numpy()) <= {10, 11, 12}  # the array faces 158°: mornings peak early


def test_serf_east_keeps_standard_time() -> None:
    serf = serf_east_2016()
    assert serf.shifted_days == 0
    # labelled by their start: the file's first stamp, 00:00 at UTC-7, ends the first interval
    assert serf.power_kw.index[0] == pd.Timestamp("2016-07-01T06:45Z")


def test_pv_slice_beats_persistence(
    db: Database, client: TestClient, settings: Settings, pvdaq: PVSet
) -> None:
    api = Api(client, db)
    case = load_pv(api, pvdaq, Slice("2012-06-01", 4))
    score, bt = run_case(api, case, settings)
    assert bt.issues == 4
    assert score.coverage is not None
    assert 0.6 < score.coverage < 0.95  # the P10-P90 band over the daylight intervals
    assert len(bt.forecast) == 4 * 96
    assert score.scores["rmae"] < 0.08
    assert score.scores["skill_1d"] > 0
    # A few days are too few to judge against last week (a clear June week repeats itself);
    # the full runs in the README are: skill > 0 against both on every set.
    assert np.isfinite(score.scores["skill_7d"])


def test_load_slice_beats_persistence(db: Database, client: TestClient, settings: Settings) -> None:
    api = Api(client, db)
    case = load_demand(api, victoria_demand(), Slice("2014-06-02", 4))
    score, bt = run_case(api, case, settings, band=False)
    assert bt.issues == 4
    assert len(bt.forecast) == 4 * 48
    assert score.scores["rmae"] < 0.08
    assert score.scores["skill_1d"] > 0
    # A few days are too few to judge against last week (a clear June week repeats itself);
    # the full runs in the README are: skill > 0 against both on every set.
    assert np.isfinite(score.scores["skill_7d"])


def test_a_forecast_ignores_data_acquired_after_its_issue(
    db: Database, client: TestClient, settings: Settings
) -> None:
    api = Api(client, db)
    data = victoria_demand()
    case = load_demand(api, data, Slice("2014-06-02", 2))
    _, before = run_case(api, case, settings, band=False)
    # New versions of every point of the window and of the two days before, all acquired
    # after the issues: a leaking forecast would read them (tripled, it would move).
    since, till = case.since - 2 * 86_400_000, case.till
    t_all = data.load_kw.index.as_unit("ms").asi8
    late = data.load_kw[(t_all >= since) & (t_all < till)]
    t = late.index.as_unit("ms").asi8
    tripled = (late.to_numpy() * 3).tolist()
    body = {"time": t.tolist(), "value": tripled, "acq_time": [till] * len(t)}
    r = client.put(
        f"/api/sensors/{api.cid}.{case.body['sensor_mid']}/signals/1001/data/v2",
        json=body,
        headers=api.headers,
    )
    assert r.status_code == 200, r.text
    _, after = run_case(api, case, settings, band=False)
    assert not np.allclose(after.actual.to_numpy(), before.actual.to_numpy())  # data moved
    pd.testing.assert_series_equal(after.forecast, before.forecast)  # the forecasts did not


def test_ratio_quantile_weights_by_the_modelled_output() -> None:
    index = pd.date_range("2024-06-01", periods=4, freq="h", tz="UTC")
    modelled = pd.Series([1.0, 1.0, 1.0, 7.0], index=index)
    measured = modelled * pd.Series([0.5, 0.6, 0.7, 1.0], index=index).to_numpy()
    # the bright hour holds 70 % of the weight: P10 and P30 stay low, P50 and up are 1.0
    assert ratio_quantile(measured, modelled, floor=0.1, quantile=0.1) == (0.5, 4)
    assert ratio_quantile(measured, modelled, floor=0.1, quantile=0.5) == (1.0, 4)
    assert ratio_quantile(measured, modelled, floor=2.0, quantile=0.1) == (1.0, 1)
    assert ratio_quantile(measured[:0], modelled, floor=0.1, quantile=0.1) == (1.0, 0)


def test_load_quantiles_bracket_the_mean() -> None:
    data = victoria_demand()
    history = data.load_kw["2014-05-01":"2014-06-01"]  # type: ignore[misc]
    index = pd.date_range("2014-06-02T14:00Z", periods=48, freq="30min")
    kw = {"timezone": data.timezone, "country": "AU", "subdivision": "VIC"}
    mean, _ = forecast_load_series(history, index, **kw)
    p10, m10 = forecast_load_series(history, index, quantile=0.1, **kw)
    p90, _ = forecast_load_series(history, index, quantile=0.9, **kw)
    assert m10["quantile"] == 0.1
    assert ((p10 <= mean) & (mean <= p90)).mean() > 0.9


def test_state_holidays() -> None:
    melbourne_cup = pd.Timestamp("2014-11-04").date()
    assert melbourne_cup in holiday_dates("AU", [2014], subdivision="VIC")
    assert melbourne_cup not in holiday_dates("AU", [2014])
    assert ForecastLoadParams(country="AU", subdivision="VIC").subdivision == "VIC"
    with pytest.raises(ValueError, match="no holidays are known for subdivision 'XX'"):
        ForecastLoadParams(country="AU", subdivision="XX")
