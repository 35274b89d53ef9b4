"""Each graph operator against hand-computed or reference (pvlib, demandlib) numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pvlib
import pytest
from demandlib import bdew
from hypothesis import given, settings
from hypothesis import strategies as st
from pvlib.location import Location
from pvlib.modelchain import ModelChain
from pvlib.pvsystem import PVSystem

from besmart_server.server.graphs.engine import run
from besmart_server.server.graphs.operator_api import Env, Member
from besmart_server.server.graphs.operators.arithmetic import resample
from besmart_server.server.graphs.operators.balance import balance, split_members
from besmart_server.server.graphs.operators.estimation import estimate, reconcile
from besmart_server.server.graphs.operators.forecast import bias_ratio, forecast_load_series
from besmart_server.server.graphs.operators.gap_fill import fill_gaps
from besmart_server.server.graphs.operators.profile import learned_shape
from besmart_server.server.graphs.operators.pv import SAPM_OPEN_RACK, pv_power
from besmart_server.server.graphs.operators.signals import read_energy, to_target_unit
from besmart_server.server.graphs.operators.wind import hub_speed, power_curve
from besmart_server.server.metrics import evaluate
from besmart_server.server.profiles import bdew_profile
from tests.unit.graph_memory import MemoryContext, ms, series

FAST = settings(max_examples=150, deadline=None)
# pvlib 0.16 and demandlib 0.2 ask pandas 3.1 for deprecated APIs in the reference computations
LIBRARY_REFERENCE = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")


def node(function: str, **params: object) -> dict[str, object]:
    return {"function": function, "params": params}


# --- pv ---------------------------------------------------------------------------------------

LAT, LON = 52.23, 21.01


def _clear_day(day: str) -> tuple[pd.DatetimeIndex, pd.DataFrame]:
    index = pd.date_range(day, periods=24, freq="h", tz="UTC").as_unit("ns")
    centres = index + pd.Timedelta(minutes=30)
    return index, Location(LAT, LON).get_clearsky(centres)


def _model_chain(weather: pd.DataFrame, kwp: float, tilt: float, azimuth: float) -> np.ndarray:
    system = PVSystem(
        surface_tilt=tilt,
        surface_azimuth=azimuth,
        module_parameters={"pdc0": kwp * 1000, "gamma_pdc": -0.004},
        inverter_parameters={"pdc0": 1e9},
        temperature_model_parameters=SAPM_OPEN_RACK,
        albedo=0.2,
    )
    mc = ModelChain(
        system,
        Location(LAT, LON, altitude=0),
        aoi_model="no_loss",
        spectral_model="no_loss",
        transposition_model="haydavies",
        dc_model="pvwatts",
        ac_model="pvwatts",
    )
    mc.run_model(weather)
    return np.asarray(mc.results.dc, dtype=float) / 1000.0


@LIBRARY_REFERENCE
@pytest.mark.parametrize(
    ("day", "tilt", "azimuth"),
    [("2024-06-21", 35, 180), ("2024-12-21", 60, 180), ("2024-03-20", 15, 250)],
)
def test_pv_dc_equals_pvlib_modelchain_pvwatts(day: str, tilt: float, azimuth: float) -> None:
    index, cs = _clear_day(day)
    temp = np.linspace(2, 28, 24)
    weather = pd.DataFrame(
        {"ghi": cs.ghi, "dni": cs.dni, "dhi": cs.dhi, "temp_air": temp, "wind_speed": 3.0}
    )
    ref = _model_chain(weather, 5.0, tilt, azimuth)
    out = pv_power(
        pd.Series(cs.ghi.to_numpy(), index=index),
        lat=LAT,
        lon=LON,
        power_kwp=5.0,
        inclination=tilt,
        orientation=azimuth,
        efficiency=0.9,
        temp_air_c=pd.Series(temp, index=index),
        wind_speed=3.0,
        dni=pd.Series(cs.dni.to_numpy(), index=index),
        dhi=pd.Series(cs.dhi.to_numpy(), index=index),
    )
    np.testing.assert_allclose(out["dc"].to_numpy(), ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(out["ac"].to_numpy(), 0.9 * ref, rtol=1e-9, atol=1e-9)
    assert ref.max() > 0.5  # a real day, not all zeros


@LIBRARY_REFERENCE
def test_pv_from_ghi_alone_uses_erbs_like_pvlib() -> None:
    index, cs = _clear_day("2024-06-21")
    zenith = Location(LAT, LON, altitude=0).get_solarposition(cs.index, temperature=20.0)["zenith"]
    parts = pvlib.irradiance.erbs(cs.ghi, zenith, cs.index)
    weather = pd.DataFrame(
        {
            "ghi": cs.ghi,
            "dni": parts["dni"],
            "dhi": parts["dhi"],
            "temp_air": 20.0,
            "wind_speed": 1.0,
        }
    )
    ref = _model_chain(weather, 10.0, 30, 180)
    out = pv_power(
        pd.Series(cs.ghi.to_numpy(), index=index),
        lat=LAT,
        lon=LON,
        power_kwp=10.0,
        inclination=30,
        orientation=180,
        temp_air_c=20.0,
        wind_speed=1.0,
    )
    np.testing.assert_allclose(out["dc"].to_numpy(), ref, rtol=1e-9, atol=1e-9)
    # a 10 kWp south array at 52° N around a clear June noon gives about 8 kW DC
    assert 7.0 < out["dc"].max() < 9.5


def test_pv_is_zero_at_night_and_clipped_by_the_inverter() -> None:
    index = pd.date_range("2024-06-21", periods=24, freq="h", tz="UTC")
    ghi = pd.Series(np.where((index.hour >= 3) & (index.hour <= 18), 900.0, 0.0), index=index)
    out = pv_power(
        ghi, lat=LAT, lon=LON, power_kwp=5, inclination=35, orientation=180, inverter_kw=3.0
    )
    assert out["ac"].iloc[0] == 0.0  # 00:00 UTC: the sun is down
    assert out["ac"].max() == pytest.approx(3.0)


# --- wind -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("speed", "kw"),
    [
        (0.0, 0.0),
        (2.99, 0.0),
        (3.0, 0.0),
        (7.5, 2000 * (7.5**3 - 27) / (1728 - 27)),  # 464.2857...
        (10.0, 2000 * (1000 - 27) / (1728 - 27)),
        (12.0, 2000.0),
        (24.99, 2000.0),
        (25.0, 0.0),
        (30.0, 0.0),
    ],
)
def test_power_curve_points(speed: float, kw: float) -> None:
    out = power_curve(pd.Series([speed]), rated_kw=2000, cut_in=3, rated_speed=12, cut_out=25)
    assert out.iloc[0] == pytest.approx(kw, rel=1e-12)


def test_log_law_to_hub_height() -> None:
    v = hub_speed(pd.Series([5.0]), 80.0, roughness=0.1, ref_height=10.0)
    assert v.iloc[0] == pytest.approx(5.0 * math.log(800) / math.log(100), rel=1e-12)  # 7.2577
    assert v.iloc[0] == pytest.approx(7.2577, abs=1e-4)


def test_wind_operator_reads_ws_and_applies_the_curve() -> None:
    ctx = MemoryContext()
    hours = pd.date_range("2024-01-01", periods=30, freq="h", tz="UTC")
    ctx.weather[1041] = pd.Series(5.0, index=hours)
    g = {
        "nodes": [
            node("wind", lat=54, lon=18, power=100, hub_height=80, efficiency=0.9),
            node("write", client_cid=1, sensor_mid=2, moid=1001, origin=2),
        ],
        "edges": [{"from": 0, "to": 1}],
    }
    run("w", g, {}, ms("2024-01-01T02:00"), ms("2024-01-01T04:00"), ctx)
    out = ctx.written[(1, 2, 1001, 2)]
    v = 5.0 * math.log(800) / math.log(100)
    expected = 0.9 * 100 * (v**3 - 27) / (1728 - 27)
    assert len(out) == 8
    np.testing.assert_allclose(out.to_numpy(), expected, rtol=1e-12)


# --- profile ----------------------------------------------------------------------------------


@LIBRARY_REFERENCE
def test_bdew_h25_year_sums_to_the_annual_energy_and_follows_demandlib() -> None:
    index = pd.date_range("2023-01-01", "2024-01-01", freq="15min", inclusive="left", tz="UTC")
    out = bdew_profile(index, profile="H25", annual_energy_kwh=3500.0, timezone="UTC", country=None)
    assert out.sum() == pytest.approx(3500.0, rel=1e-12)
    ref = np.asarray(bdew.H25(index.tz_localize(None)), dtype=float)
    np.testing.assert_allclose(out.to_numpy(), ref / ref.sum() * 3500.0, rtol=1e-12)
    # a household: the winter evening peak is well above the night's minimum
    jan = out["2023-01-10"]
    assert jan.between_time("17:00", "20:00").mean() > 2 * jan.between_time("02:00", "04:00").mean()


def test_bdew_in_local_time_with_holidays_as_sundays() -> None:
    index = pd.date_range("2024-12-20", "2024-12-30", freq="15min", inclusive="left", tz="UTC")
    with_pl = bdew_profile(index, annual_energy_kwh=1000, country="PL")
    plain = bdew_profile(index, annual_energy_kwh=1000, country=None)
    christmas = slice("2024-12-24T23:00", "2024-12-25T22:45")  # 25 Dec, local (UTC+1)
    assert not np.allclose(with_pl[christmas], plain[christmas])
    assert np.allclose(with_pl["2024-12-27"], plain["2024-12-27"], rtol=1e-2)  # a working day


def test_profile_operator_scales_to_period_energy() -> None:
    ctx = MemoryContext()
    g = {
        "nodes": [
            node("profile", profile="G25", period_energy_kWh=123.0, freq_minutes=60),
            node("write", client_cid=1, sensor_mid=2, moid=1011, origin=4),
        ],
        "edges": [{"from": 0, "to": 1}],
    }
    record = run("p", g, {}, ms("2024-05-06"), ms("2024-05-13"), ctx)
    out = ctx.written[(1, 2, 1011, 4)]
    assert len(out) == 7 * 24
    assert out.sum() == pytest.approx(123.0, rel=1e-12)
    assert record.metrics[0]["0:profile"]["source"] == "G25"


def test_learned_shape_by_weekday_and_time_of_day() -> None:
    index = pd.date_range("2024-01-01", periods=14 * 24, freq="h", tz="UTC")
    weekend = index.day_of_week >= 5
    values = np.where(weekend, 2.0, 1.0) * (1 + (index.hour == 12))
    shape = learned_shape([pd.Series(values, index=index)], index, timezone="UTC")
    np.testing.assert_allclose(shape.to_numpy(), values / values.mean())


# --- estimation -------------------------------------------------------------------------------


def test_reconcile_by_hand() -> None:
    shape = np.array([1.0, 3.0, 0.0, 0.0, 2.0, 2.0, 5.0])
    period = np.array([0, 0, 1, 1, 2, 2, -1])
    rec = reconcile(shape, period, np.array([8.0, 2.0, -0.004]), tolerance=0.01)
    np.testing.assert_allclose(rec.values[:6], [2.0, 6.0, 1.0, 1.0, 0.0, 0.0])
    assert math.isnan(rec.values[6])  # outside every period
    assert rec.even.tolist() == [False, True, False]
    assert rec.rejected.tolist() == [False, False, False]
    rec = reconcile(shape, period, np.array([8.0, 2.0, -3.0]), tolerance=0.01)
    assert rec.rejected.tolist() == [False, False, True]
    assert np.isnan(rec.values[4:6]).all()


@FAST
@given(
    data=st.data(),
    n_periods=st.integers(1, 8),
)
def test_reconciled_periods_sum_to_their_readings(data: st.DataObject, n_periods: int) -> None:
    sizes = data.draw(st.lists(st.integers(1, 12), min_size=n_periods, max_size=n_periods))
    period = np.repeat(np.arange(n_periods), sizes)
    shape = np.array(
        data.draw(
            st.lists(
                st.one_of(st.just(0.0), st.floats(0, 1e4, allow_nan=False)),
                min_size=len(period),
                max_size=len(period),
            )
        )
    )
    targets = np.array(
        data.draw(st.lists(st.floats(0, 1e6), min_size=n_periods, max_size=n_periods))
    )
    rec = reconcile(shape, period, targets, tolerance=0.001)
    sums = np.bincount(period, weights=rec.values, minlength=n_periods)
    np.testing.assert_allclose(sums, targets, rtol=1e-9, atol=1e-9)
    assert (rec.values >= 0).all()
    for k in np.flatnonzero(rec.even):  # zero-shape periods are spread evenly
        np.testing.assert_allclose(rec.values[period == k], targets[k] / sizes[k])


def test_estimate_net_import_reconciles_every_day_within_tolerance() -> None:
    days = pd.date_range("2024-06-01", periods=8, freq="D", tz="UTC")
    readings = pd.Series(np.cumsum([1000, 6, 5, 0.001, 9, 7, 4, 8]), index=days)
    quarter = pd.date_range("2024-06-01", "2024-06-08", freq="15min", inclusive="left", tz="UTC")
    load = bdew_profile(quarter, annual_energy_kwh=3000)
    hours = quarter.hour + quarter.minute / 60
    gen = pd.Series(np.clip(4 * np.sin((hours - 4) / 16 * np.pi), 0, None), index=quarter)
    out, metrics = estimate(readings, load, gen, mode="net_import", tolerance_kwh=0.01)
    daily = out.resample("D").sum()
    np.testing.assert_allclose(daily.to_numpy(), [6, 5, 0.001, 9, 7, 4, 8], atol=1e-9)
    assert metrics["within_tolerance"] is True
    assert metrics["max_discrepancy_kWh"] < 1e-9
    # PV behind the meter: the estimated import dips at midday compared with the evening
    day = out["2024-06-02"]
    assert day.between_time("10:00", "13:00").mean() < day.between_time("18:00", "21:00").mean()
    assert (out >= 0).all()


def test_estimate_interval_readings_per_zone_period() -> None:
    starts = pd.DatetimeIndex(["2024-01-01T00:00", "2024-01-01T06:00"], tz="UTC")
    readings = pd.Series([3.0, 9.0], index=starts)
    quarter = pd.date_range("2024-01-01", periods=48, freq="15min", tz="UTC")
    out, metrics = estimate(
        readings,
        pd.Series(1.0, index=quarter),
        None,
        mode="load",
        readings_kind="interval",
        zone_freq_minutes=360,
    )
    assert len(out) == 48
    np.testing.assert_allclose(out.to_numpy(), [3 / 24] * 24 + [9 / 24] * 24)
    assert metrics["periods"] == 2


# --- balance ----------------------------------------------------------------------------------


def test_balance_by_hand_and_members_split() -> None:
    t = pd.date_range("2024-01-01", periods=3, freq="15min", tz="UTC")
    parent = pd.Series([10.0, 12.0, 9.0], index=t)
    children = {1: pd.Series([4.0, 5.0, 4.0], index=t), 2: pd.Series([5.0, 6.0], index=t[:2])}
    residual, metrics = balance(parent, children)
    assert residual.tolist() == [1.0, 1.0]  # the third interval lacks child 2
    assert metrics["intervals_incomplete"] == 1
    members = [
        Member(1, True),
        Member(2, True, uncertain=True),
        Member(3, True, negligible=True),
        Member(4, False),
    ]
    assert split_members(members) == ([1, 2], [3], [2])


@FAST
@given(
    st.lists(
        st.tuples(
            st.floats(-1e6, 1e6),
            st.lists(st.floats(-1e6, 1e6), min_size=0, max_size=6),
        ),
        min_size=1,
        max_size=20,
    ),
    st.integers(0, 6),
)
def test_balance_closes_in_every_interval(rows: list[tuple[float, list[float]]], k: int) -> None:
    t = pd.date_range("2024-01-01", periods=len(rows), freq="15min", tz="UTC")
    parent = pd.Series([p for p, _ in rows], index=t)
    children = {
        c: pd.Series([(cs[c] if c < len(cs) else 0.0) for _, cs in rows], index=t) for c in range(k)
    }
    residual, _ = balance(parent, children)
    assert len(residual) == len(rows)
    outputs = sum((s for s in children.values()), pd.Series(0.0, index=t))
    scale = np.maximum.reduce(
        [parent.abs(), *[s.abs() for s in children.values()], pd.Series(1e-300, index=t)]
    )
    closure = (parent - (outputs + residual)).abs() / scale
    assert (closure <= 1e-9).all()


def test_balance_operator_reads_registers_and_leaves_out_negligible_children() -> None:
    ctx = MemoryContext()
    t = pd.date_range("2024-01-01", periods=5, freq="15min", tz="UTC")
    ctx.signals[(1, 100, 32)] = pd.Series([0, 10, 22, 31, 45.0], index=t)  # +10 +12 +9 +14
    ctx.signals[(1, 101, 32)] = pd.Series([0, 6, 13, 18, 26.0], index=t)  # +6 +7 +5 +8
    ctx.signals[(1, 102, 32)] = pd.Series([0, 3, 7, 10, 14.0], index=t)  # +3 +4 +3 +4
    ctx.signals[(1, 103, 32)] = pd.Series([0, 1, 2, 3, 4.0], index=t)  # negligible
    ctx.tree[(1, 100)] = [
        Member(101, True),
        Member(102, True, uncertain=True),
        Member(103, True, negligible=True),
        Member(104, False),
    ]
    g = {
        "nodes": [
            node("balance", client_cid=1, node_mid=100),
            node("write", client_cid=1, sensor_mid=900, moid=1011, origin=3),
        ],
        "edges": [{"from": 0, "to": 1}],
    }
    record = run("b", g, {}, ms("2024-01-01"), ms("2024-01-01T01:00"), ctx)
    assert ctx.written[(1, 900, 1011, 3)].tolist() == [1.0, 1.0, 1.0, 2.0]
    m = record.metrics[0]["0:balance"]
    assert (m["children"], m["negligible_excluded"], m["uncertain"]) == ([101, 102], [103], [102])
    assert m["residual_kWh"] == pytest.approx(5.0)


def test_balance_can_leave_out_children_without_data_and_lists_them() -> None:
    ctx = MemoryContext()
    t = pd.date_range("2024-01-01", periods=5, freq="15min", tz="UTC")
    ctx.signals[(1, 100, 32)] = pd.Series([0, 10, 22, 31, 45.0], index=t)
    ctx.signals[(1, 101, 32)] = pd.Series([0, 6, 13, 18, 26.0], index=t)
    ctx.tree[(1, 100)] = [Member(101, True), Member(105, True)]  # 105 has no A+ at all

    def residual_of(skip: bool) -> tuple[list[float], dict[str, object]]:
        g = {
            "nodes": [
                node("balance", client_cid=1, node_mid=100, skip_children_without_data=skip),
                node("write", client_cid=1, sensor_mid=900, moid=1011, origin=3),
            ],
            "edges": [{"from": 0, "to": 1}],
        }
        ctx.written.clear()
        record = run("b", g, {}, ms("2024-01-01"), ms("2024-01-01T01:00"), ctx)
        out = ctx.written.get((1, 900, 1011, 3))
        return ([] if out is None else out.tolist()), record.metrics[0]["0:balance"]

    kept, m_kept = residual_of(False)
    assert kept == []
    assert m_kept["intervals_incomplete"] == 4
    skipped, m_skipped = residual_of(True)
    assert skipped == [4.0, 5.0, 4.0, 6.0]
    assert (m_skipped["children"], m_skipped["without_data"]) == ([101], [105])


# --- gap_fill ---------------------------------------------------------------------------------


def test_gap_fill_fills_only_the_gaps_linear_when_short() -> None:
    s = series(np.arange(16, dtype=float), "2024-01-01", "15min")
    holey = s.drop(s.index[[5, 6]])
    before = holey.copy()
    out, metrics = fill_gaps(holey, s.index[0], s.index[-1] + pd.Timedelta(minutes=15))
    assert list(out.index) == list(s.index[[5, 6]])
    np.testing.assert_allclose(out.to_numpy(), [5.0, 6.0])
    assert metrics == {"gaps": 1, "linear": 2, "like_day": 0, "shaped": 0, "unfilled": 0}
    pd.testing.assert_series_equal(holey, before)  # originals untouched


def test_gap_fill_long_gap_takes_the_comparable_days() -> None:
    idx = pd.date_range("2024-01-01", periods=4 * 96, freq="15min", tz="UTC")
    daily = 2.0 + np.sin(2 * np.pi * (idx.hour * 4 + idx.minute // 15) / 96)
    s = pd.Series(daily, index=idx)
    gap = (idx >= "2024-01-03T06:00") & (idx < "2024-01-03T14:00")  # 8 hours of a Wednesday
    out, metrics = fill_gaps(s[~gap], idx[0], idx[-1], timezone="UTC")
    assert list(out.index) == list(idx[gap])
    np.testing.assert_allclose(out.to_numpy(), daily[gap])  # Monday's and Tuesday's slots
    assert metrics["like_day"] == 32


def test_gap_fill_without_a_comparable_day_follows_the_shape_at_the_local_level() -> None:
    idx = pd.date_range("2024-01-01", periods=4 * 96, freq="15min", tz="UTC")
    daily = 2.0 + np.sin(2 * np.pi * (idx.hour * 4 + idx.minute // 15) / 96)
    s = pd.Series(daily, index=idx)
    gap = (idx >= "2024-01-01T06:00") & (idx < "2024-01-01T14:00")  # the first day: no history
    out, metrics = fill_gaps(s[~gap], idx[0], idx[-1], timezone="UTC")
    assert list(out.index) == list(idx[gap])
    np.testing.assert_allclose(out.to_numpy(), daily[gap], rtol=0.02)
    assert metrics["shaped"] == 32


def test_gap_fill_graph_writes_estimates_with_origin_4() -> None:
    ctx = MemoryContext()
    s = series(np.linspace(1, 2, 96), "2024-01-01", "15min")
    ctx.signals[(1, 5, 1001)] = s.drop(s.index[[40, 41, 42]])
    from besmart_server.server.graphs.builtin import builtin_graph

    record = run(
        "gap_fill",
        builtin_graph("gap_fill"),
        {"client_cid": 1, "sensor_mid": 5, "moid": 1001},
        ms("2024-01-01"),
        ms("2024-01-02"),
        ctx,
    )
    assert record.points_written == {"1.5/1001/4": 3}
    np.testing.assert_allclose(ctx.written[(1, 5, 1001, 4)].to_numpy(), s.iloc[40:43].to_numpy())


# --- forecasts --------------------------------------------------------------------------------


def _synthetic_load(days: int, seed: int = 1) -> pd.Series:
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-02-01", periods=days * 96, freq="15min", tz="UTC")
    hour = idx.hour + idx.minute / 60
    base = 1.0 + 0.6 * np.exp(-((hour - 19) ** 2) / 6) + 0.3 * np.exp(-((hour - 8) ** 2) / 3)
    weekend = np.where(idx.day_of_week >= 5, 1.3, 1.0)
    return pd.Series(base * weekend + rng.normal(0, 0.08, len(idx)), index=idx)


@pytest.mark.parametrize(
    ("issue", "min_skill_1d"),
    [
        ("2024-03-04", 0.5),  # a Monday: yesterday was a weekend day
        ("2024-03-07", 0.1),  # a Thursday: yesterday looked alike, only the noise differs
    ],
)
def test_forecast_load_beats_persistence_with_enough_history(
    issue: str, min_skill_1d: float
) -> None:
    load = _synthetic_load(36)
    start = pd.Timestamp(issue, tz="UTC")
    index = pd.date_range(start, periods=96, freq="15min")
    past = load[load.index < start]
    out, metrics = forecast_load_series(past, index, country=None, timezone="UTC")
    assert metrics["model"] == "lightgbm"
    scores = evaluate(load.loc[index], out, history=past)
    assert scores["skill_1d"] > min_skill_1d
    assert scores["skill_7d"] > 0.1
    assert scores["rmae"] < 0.1


def test_forecast_load_falls_back_to_the_profile_with_short_history() -> None:
    load = _synthetic_load(5)
    issue = load.index[-1] + pd.Timedelta(minutes=15)
    index = pd.date_range(issue, periods=96, freq="15min")
    out, metrics = forecast_load_series(load, index)
    assert metrics["model"] == "profile:H25"
    assert metrics["history_days"] == 5.0
    assert out.mean() == pytest.approx(load.mean(), rel=1e-9)


def test_forecast_load_never_looks_at_the_future() -> None:
    load = _synthetic_load(30)
    issue = pd.Timestamp("2024-02-25", tz="UTC")
    index = pd.date_range(issue, periods=96, freq="15min")
    a, _ = forecast_load_series(load, index, country=None)
    b, _ = forecast_load_series(load[load.index < issue], index, country=None)
    pd.testing.assert_series_equal(a, b)


def test_bias_ratio() -> None:
    t = pd.date_range("2024-06-01", periods=4, freq="h", tz="UTC")
    modelled = pd.Series([0.0, 2.0, 4.0, 0.001], index=t)
    measured = pd.Series([0.5, 1.5, 3.5, 0.3], index=t)
    assert bias_ratio(measured, modelled, floor=0.01) == (pytest.approx(5 / 6), 2)
    assert bias_ratio(measured * 10, modelled, floor=0.01)[0] == 2.0  # clipped


def test_forecast_pv_is_corrected_by_measured_output() -> None:
    ctx = MemoryContext()
    hours = pd.date_range("2024-06-01", "2024-06-20", freq="h", tz="UTC")
    ghi = pd.Series(np.clip(800 * np.sin((hours.hour - 3) / 16 * np.pi), 0, None), index=hours)
    ctx.weather[1031] = ghi
    ctx.weather[139] = pd.Series(293.15, index=hours)
    pv_params = {"lat": LAT, "lon": LON, "power": 5.0, "inclination": 35, "orientation": 180}
    plain = {
        "nodes": [
            node("pv", **pv_params),
            node("write", client_cid=1, sensor_mid=7, moid=70, origin=3),
        ],
        "edges": [{"from": 0, "to": 1}],
    }
    run("pv", plain, {}, ms("2024-06-01"), ms("2024-06-19"), ctx)
    modelled = ctx.written[(1, 7, 70, 3)]
    ctx.signals[(1, 7, 70)] = modelled[modelled.index < "2024-06-18"] * 0.8  # a dirty array
    g = {
        "nodes": [
            node(
                "signals",
                client_cid=1,
                sensor_mid=7,
                moid=70,
                delta_t=15,
                lookback_minutes=14 * 1440,
            ),
            node("forecast_pv", **pv_params, weather_origin=None),
            node("write", client_cid=1, sensor_mid=7, moid=70, origin=2),
        ],
        "edges": [{"from": 0, "to": 1}, {"from": 1, "to": 2}],
    }
    record = run("f", g, {}, ms("2024-06-18"), ms("2024-06-19"), ctx)
    assert record.metrics[0]["1:forecast_pv"]["bias_ratio"] == pytest.approx(0.8, rel=1e-9)
    forecast = ctx.written[(1, 7, 70, 2)]
    np.testing.assert_allclose(
        forecast.to_numpy(), 0.8 * modelled["2024-06-18"].to_numpy(), rtol=1e-9
    )


# --- reads, writes, arithmetic ----------------------------------------------------------------


def test_read_energy_from_a_register_an_interval_signal_and_power() -> None:
    ctx = MemoryContext()
    t = pd.date_range("2024-01-01", periods=5, freq="15min", tz="UTC")
    ctx.signals[(1, 1, 32)] = pd.Series([100, 101, 103, 106, 110.0], index=t)
    ctx.signals[(1, 1, 1011)] = pd.Series([1, 2, 3, 4, 5.0], index=t)
    ctx.signals[(1, 1, 1001)] = pd.Series([4, 8, 0, 2, 2.0], index=t)
    env = Env(ctx, t[0], t[-1], t[0])
    since, till = ms("2024-01-01"), ms("2024-01-01T01:00")
    assert read_energy(env, 1, 1, 32, since, till, 15).tolist() == [1.0, 2.0, 3.0, 4.0]
    assert read_energy(env, 1, 1, 1011, since, till, 30).tolist() == [3.0, 7.0]
    assert read_energy(env, 1, 1, 1001, since, till, 15).tolist() == [1.0, 2.0, 0.0, 0.5]


def test_write_converts_energy_per_interval_to_power() -> None:
    t = pd.date_range("2024-01-01", periods=2, freq="15min", tz="UTC")
    assert to_target_unit(pd.Series([1.0, 0.5], index=t), 1001, "energy", None).tolist() == [
        4.0,
        2.0,
    ]
    assert to_target_unit(pd.Series([4.0, 2.0], index=t), 1011, "power", None).tolist() == [
        1.0,
        0.5,
    ]


def test_resample_down_and_up() -> None:
    s = series([1, 2, 3, 4, 5, 6, 7, 8.0], "2024-01-01T00:00", "15min")
    assert resample(s, 60, "mean").tolist() == [2.5, 6.5]
    assert resample(s, 60, "sum").tolist() == [10.0, 26.0]
    h = series([4.0, 8.0], "2024-01-01", "h")
    assert resample(h, 15, "split").tolist() == [1.0] * 4 + [2.0] * 4
    assert resample(h, 15, "ffill").tolist() == [4.0] * 4 + [8.0] * 4
    assert resample(h, 15, "interpolate").tolist() == [4.0, 5.0, 6.0, 7.0, 8.0]


def test_sum_difference_scale_through_a_graph() -> None:
    ctx = MemoryContext()
    t = pd.date_range("2024-01-01", periods=3, freq="15min", tz="UTC")
    ctx.signals[(1, 1, 1001)] = pd.Series([1.0, 2.0, 3.0], index=t)
    ctx.signals[(1, 2, 1001)] = pd.Series([10.0, 20.0], index=t[1:])
    read = [node("signals", client_cid=1, sensor_mid=m, moid=1001) for m in (1, 2)]
    g = {
        "nodes": [
            *read,
            node("sum"),
            node("difference"),
            node("scale", factor=2, offset=1),
            node("write", client_cid=1, sensor_mid=3, moid=1001, origin=3),
        ],
        "edges": [
            {"from": 0, "to": 2},
            {"from": 1, "to": 2},
            {"from": 2, "to": 3},
            {"from": 0, "to": 3},
            {"from": 3, "to": 4},
            {"from": 4, "to": 5},
        ],
    }
    run("a", g, {}, ms("2024-01-01"), ms("2024-01-02"), ctx)
    # sum (inner) = [12, 23] at t1, t2; minus input 0 → [10, 20]; times 2 plus 1
    assert ctx.written[(1, 3, 1001, 3)].tolist() == [21.0, 41.0]
