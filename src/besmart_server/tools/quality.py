"""Measured quality of the shipped graphs on the demo data (`besmart graph quality`).

A benchmark harness, not a part of the server: it loads the demo and runs the graphs through
the services as a caller would.

On a database holding the demo (`load_demo`):

- load_forecast: the demo meters' A+ registers are replayed as a live feed would have stored
  them (each reading acquired 15 minutes after its capture time), then `evaluate` backtests
  day-ahead forecasts over the last 14 days of the demo month, each issued at midnight UTC
  from the data acquired before it.
- pv_forecast: pvlib's bundled TMY3 year (the demo weather) drives a reference PV system
  (pvlib's PVWatts ModelChain, hourly, 9.8 kWp) whose output stands in for measurements,
  stored as a live feed (acquired one hour after each hour); the graph forecasts it day-ahead
  with that same weather as its forecast, so the score measures the PV model and its bias
  correction, not weather-forecast error (no archived forecasts ship with pvlib).
- estimation: daily readings of the apartment-block meter's register feed the real service's
  estimation body; every day's 15-minute profile must sum to its reading within tolerance.
- balance: the demo transformer's residual; parent = children + residual in every interval,
  to 1e-9 relative.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import pandas as pd

from besmart_server.server.access import Principal
from besmart_server.server.config import Settings
from besmart_server.server.db import Database
from besmart_server.server.demo_info import DemoInfo
from besmart_server.server.graphs import operator_api
from besmart_server.server.graphs.context import DbContext
from besmart_server.server.graphs.evaluate import backtest
from besmart_server.server.graphs.operators.signals import read_energy
from besmart_server.server.graphs.operators.weather import DHI, DNI, GHI, KELVIN, T_AIR, WS
from besmart_server.server.graphs.service import run_now
from besmart_server.server.sensors import service as sensors
from besmart_server.server.signals import service as signals
from besmart_server.server.signals.catalog import signal_type_by_symbol
from besmart_server.server.signals.columns import Columns
from besmart_server.server.signals.store import SeriesStore
from besmart_server.server.weather.compat import quiet_pandas_deprecations
from besmart_server.server.weather.demo import LAT, LON
from besmart_server.wire import TYPE_DBL


def _moid(symbol: str) -> int:
    t = signal_type_by_symbol(symbol)
    assert t is not None, symbol
    return t.moid


P_PLUS: Final = _moid("P+")
DAY_MS: Final = 86_400_000
HOUR_MS: Final = 3_600_000
Q_MS: Final = 900_000
A_PLUS, P_PV, EA_PLUS = 32, 70, 1011
ADMIN: Final = Principal(user_id=None, login="quality", is_admin=True)
KWP: Final = 9.8
PV_SINCE: Final = 1_780_272_000_000  # 2026-06-01T00:00:00Z
PV_DAYS: Final = 28
TOLERANCE_KWH: Final = 0.01


def _write(db: Database, cid: int, mid: int, moid: int, t: Any, v: Any, acq: Any) -> None:
    t = np.asarray(t, dtype=np.int64)
    cols = Columns(
        time=t,
        origin=np.ones(t.shape[0], dtype=np.int64),
        type=np.full(t.shape[0], TYPE_DBL, dtype=np.int8),
        value=np.asarray(v, dtype=np.float64),
        text=None,
        acq_ms=np.asarray(acq, dtype=np.int64),
    )
    with db.transaction() as conn:
        store = SeriesStore(conn.dialect.name)
        signals.write(conn, store, ADMIN, [signals.WriteItem(cid, mid, moid, None, cols, ("q",))])


def replay_as_live_feed(
    db: Database, cid: int, mid: int, moid: int, since: int, till: int, delay_ms: int
) -> int:
    """Store a series' newest values again, each acquired `delay_ms` after its capture."""
    ctx = DbContext.over(db, ADMIN)
    s = ctx.read_signal(cid, mid, moid, since, till, get_last=True, raw=True)
    t = operator_api.ns(s.index) // 1_000_000
    _write(db, cid, mid, moid, t, s.to_numpy(), t + delay_ms)
    return len(s)


def _new_sensor(db: Database, cid: int, name: str, **fields: Any) -> int:
    with db.transaction() as conn:
        made = sensors.create_sensor(
            conn, ADMIN, client_cid=cid, fields=sensors.SensorFields(name=name, **fields)
        )
    return made.sensor_mid


def reference_pv(db: Database, since: int, till: int) -> pd.Series[float]:
    """Hourly AC power (kW) of a reference PV system on the stored demo weather (PVWatts)."""
    import pvlib  # type: ignore[import-untyped]  # pvlib ships no type hints

    ctx = DbContext.over(db, ADMIN)
    frame = pd.DataFrame(
        {
            name: ctx.read_weather(LAT, LON, moid, since, till)
            for name, moid in (
                ("ghi", GHI),
                ("dni", DNI),
                ("dhi", DHI),
                ("temp_air", T_AIR),
                ("wind_speed", WS),
            )
        }
    ).dropna()
    frame["temp_air"] -= KELVIN
    starts = frame.index
    frame.index = starts + pd.Timedelta(minutes=30)  # each hour's mean, at its centre
    system = pvlib.pvsystem.PVSystem(
        surface_tilt=35,
        surface_azimuth=180,
        module_parameters={"pdc0": KWP * 1000, "gamma_pdc": -0.0035},
        inverter_parameters={"pdc0": KWP * 1000 / 0.96},
        temperature_model_parameters=pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"][
            "open_rack_glass_polymer"
        ],
    )
    chain = pvlib.modelchain.ModelChain.with_pvwatts(
        system, pvlib.location.Location(LAT, LON), losses_model="pvwatts"
    )
    with quiet_pandas_deprecations():
        chain.run_model(frame)
    ac = np.clip(np.asarray(chain.results.ac, dtype=float), 0.0, None) / 1000.0
    return pd.Series(ac, index=starts)


# The day the quality demo's data runs up to: fixed, so the figures (and the README's table)
# are the same on every run and machine instead of moving with the weekdays of the load date.
DEMO_DAY: Final = "2026-11-01"


def measure(db: Database, info: DemoInfo, settings: Settings) -> dict[str, Any]:
    """Every figure of the module docstring, by graph."""
    cid = info.client_cid
    today = info.today
    month = today - 30 * DAY_MS
    out: dict[str, Any] = {}

    # load_forecast on the demo meters
    for role in ("meter_2", "meter_1"):
        mid = info.sensors[role]
        replay_as_live_feed(db, cid, mid, A_PLUS, month - DAY_MS, today, Q_MS)
        body = {"client_cid": cid, "sensor_mid": mid, "lat": LAT, "lon": LON}
        bt = backtest(
            db, ADMIN, "load_forecast", body, today - 14 * DAY_MS, today, settings=settings
        )
        out[f"load_forecast {role}"] = bt.to_json()

    # pv_forecast on the TMY3 weather
    pv = _new_sensor(db, cid, "PV reference on TMY3 weather", lat=LAT, lon=LON)
    lo = PV_SINCE - 22 * DAY_MS
    hi = PV_SINCE + PV_DAYS * DAY_MS
    ref = reference_pv(db, lo, hi)
    t = operator_api.ns(ref.index) // 1_000_000
    _write(db, cid, pv, P_PV, t, ref.to_numpy(), t + HOUR_MS)
    pv_body: dict[str, Any] = {
        "client_cid": cid,
        "sensor_mid": pv,
        "lat": LAT,
        "lon": LON,
        "params": {"power": KWP, "inclination": 35, "orientation": 180},
        "weather_origin": 3,
        "freq_minutes": 60,
    }
    bt = backtest(db, ADMIN, "pv_forecast", pv_body, PV_SINCE, hi, settings=settings)
    out["pv_forecast (TMY3 weather as forecast)"] = bt.to_json()

    # estimation from daily readings
    out["estimation"] = _estimation(db, info, settings, month, today)
    # balance of the demo transformer
    out["balance"] = _balance(db, info, settings, month, today)
    return out


def _estimation(
    db: Database, info: DemoInfo, settings: Settings, month: int, today: int
) -> dict[str, Any]:
    cid = info.client_cid
    ctx = DbContext.over(db, ADMIN)
    register = ctx.read_signal(cid, info.sensors["meter_2"], A_PLUS, month, today, get_last=True)
    daily = register[(operator_api.ns(register.index) // 1_000_000) % DAY_MS == 0]
    coarse = _new_sensor(db, cid, "Coarse meter (daily readings of meter_2)")
    t = operator_api.ns(daily.index) // 1_000_000
    _write(db, cid, coarse, A_PLUS, t, daily.to_numpy(), t + HOUR_MS)
    body = [
        {
            "client_cid": cid,
            "sensor_mid": coarse,
            "profile_signal_moid": EA_PLUS,
            "profile_signal_freq_minutes": 15,
            "zone_signals_freq_minutes": 1440,
            "lat": LAT,
            "lon": LON,
            "signal_discrepancy_tolerance_kWh": TOLERANCE_KWH,
            "params": {"type": "PV", "power": 0.0, "inclination": 35, "orientation": 180},
        }
    ]
    since, till = int(t[1]), int(t[-2])
    record = run_now(db, ADMIN, "estimation", since, till, body, settings=settings)
    profile = ctx.read_signal(cid, coarse, EA_PLUS, since, till, get_last=True)
    per_day = profile.groupby(operator_api.ns(profile.index) // 1_000_000 // DAY_MS * DAY_MS).sum()
    target = daily.diff().shift(-1)
    target.index = operator_api.ns(target.index) // 1_000_000
    gaps = (per_day - target.reindex(per_day.index)).abs()
    return {
        "days": len(per_day),
        "max_discrepancy_kWh": float(gaps.max()),
        "tolerance_kWh": TOLERANCE_KWH,
        "all_within_tolerance": bool((gaps <= TOLERANCE_KWH).all()),
        "points": sum(record["points_written"].values()),
    }


def _balance(
    db: Database, info: DemoInfo, settings: Settings, month: int, today: int
) -> dict[str, Any]:
    cid, node = info.client_cid, info.sensors["transformer"]
    residual_mid = _new_sensor(db, cid, "Balance residual (quality)")
    body = {
        "client_cid": cid,
        "node_mid": node,
        "residual_sensor_mid": residual_mid,
        "moid": P_PLUS,
    }
    record = run_now(db, ADMIN, "balance", month, today, body, settings=settings)
    metrics = record["metrics"][0]["0:balance"]
    ctx = DbContext.over(db, ADMIN)
    env = operator_api.Env(
        ctx,
        operator_api.ms_to_ts(month),
        operator_api.ms_to_ts(today),
        operator_api.ms_to_ts(today),
    )

    def energy(mid: int, moid: int, **opts: Any) -> pd.Series[float]:
        return read_energy(env, cid, mid, moid, month, today, 15, get_last=True, **opts)

    parent = energy(node, P_PLUS, apply_multiplier=True)
    kids = [energy(mid, P_PLUS, apply_multiplier=True) for mid in metrics["children"]]
    residual = energy(residual_mid, EA_PLUS)
    frame = pd.concat([parent, residual, *kids], axis=1, join="inner").dropna()
    values = frame.to_numpy(dtype=float)
    a, r, b = values[:, 0], values[:, 1], values[:, 2:].sum(axis=1)
    closure = np.abs(a - (b + r)) / np.maximum(np.abs(a), 1e-12)
    return {
        "intervals": len(frame),
        "children": metrics["children"],
        "left_out_without_data": metrics["without_data"],
        "residual_share": metrics["residual_share"],
        "max_relative_closure_error": float(closure.max()),
        "closes_to_1e-9": bool((closure <= 1e-9).all()),
    }


# The README's quality section is this module's output, spliced between these markers by
# `besmart graph quality --readme README.md` and checked by tests/test_readme.py.
README_BEGIN: Final = "<!-- graph-quality:begin: besmart graph quality --readme README.md -->"
README_END: Final = "<!-- graph-quality:end -->"
TABLE_HEADER: Final = (
    "| graph | MAE | rMAE | skill vs 1 day | skill vs 1 week |\n|---|---|---|---|---|"
)
# measure()'s keys → the table's rows. The load rows depend on the day the demo is loaded
# (its 30 days end at that day's midnight); the PV row reads only the fixed TMY3 year.
ROWS: Final = (
    ("load_forecast meter_2", "load_forecast, meter 2 (MAE in kWh per 15 min)"),
    ("load_forecast meter_1", "load_forecast, meter 1 (MAE in kWh per 15 min)"),
    ("pv_forecast (TMY3 weather as forecast)", "pv_forecast, 28 days in June (MAE in kW, hourly)"),
)


def _figure(x: float) -> str:
    return f"{x:.3g}"


def table(measured: dict[str, Any]) -> str:
    """The forecast graphs' scores as a Markdown table (the README's and the command's)."""
    lines = [TABLE_HEADER]
    for key, label in ROWS:
        s = measured[key]
        cells = [_figure(s[k]) for k in ("mae", "rmae", "skill_1d", "skill_7d")]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(lines)


def summary(measured: dict[str, Any]) -> str:
    """The estimation and balance checks in one sentence."""
    est, bal = measured["estimation"], measured["balance"]
    within = "all" if est["all_within_tolerance"] else "NOT all"
    closes = "closed" if bal["closes_to_1e-9"] else "did NOT close"
    return (
        f"`estimation` reconciled {within} {est['days']} daily periods within "
        f"{est['max_discrepancy_kWh']:.1g} kWh (tolerance {est['tolerance_kWh']:g} kWh); "
        f"`balance` {closes} {bal['intervals']:,} intervals to "
        f"{bal['max_relative_closure_error']:.1g} relative."
    )


def readme_section(measured: dict[str, Any], day: str) -> str:
    """The README's generated block, markers included; `day` is the day the demo data runs up to."""
    return "\n".join(
        [
            README_BEGIN,
            f"Measured on the demo with data up to {day} (a fixed day: every run gives these):",
            "",
            table(measured),
            "",
            summary(measured),
            README_END,
        ]
    )


def splice(text: str, section: str) -> str:
    """`text` with the block between the markers replaced by `section`."""
    begin, end = text.find(README_BEGIN), text.find(README_END)
    if begin < 0 or end < begin:
        raise ValueError(f"no {README_BEGIN!r} ... {README_END!r} block")
    return text[:begin] + section + text[end + len(README_END) :]
