"""Day-ahead forecasts scored on real data: `pv_forecast` and `load_forecast` in a rolling backtest.

    .venv/bin/python -m bench.forecast                    # full runs, temporary SQLite
    .venv/bin/python -m bench.forecast --weeks 2          # a small slice of each set (CI)
    .venv/bin/python -m bench.forecast --set pv --db-url postgresql://postgres@127.0.0.1:5432/test

Each set (bench/forecast_data.py) goes into a fresh database through the API as a live feed
would have stored it: the measured series by `PUT .../signals/{moid}/data/v2`, every point
acquired one interval after its start (when it was complete); the weather through the weather
import (the `besmart weather import` table path), as forecast weather of origin 2 for PV and
as the temperature at the demand's place for load. Then the shipped graphs are backtested by
`graphs.evaluate.backtest`: one forecast per local day, issued at 06:00 local standard time
the day before (a lead of 18 hours) and reading only what was acquired before its issue.

Printed per set: MAE, rMAE = MAE / (P99 - P1) of the actuals (OpenSTEF's benchmark metric),
skill against persistence one day and one week earlier (1 - MAE / MAE of persistence), the
persistence forecasts' own rMAE, and the P10-P90 coverage where the graph writes a band.
The weather is the measured/reanalysed weather of the same days: the PV score is that of the
PV model and its correction, not of a weather forecast.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import orjson
import pandas as pd
from fastapi.testclient import TestClient

from bench.forecast_data import (
    LoadSet,
    PVSet,
    pvdaq_system_50,
    serf_east_2016,
    victoria_demand,
)
from bench.scratch import scratch_database
from besmart_server.schemas.users import Role
from besmart_server.server import metrics, migrate
from besmart_server.server.access import Principal
from besmart_server.server.app import create_app
from besmart_server.server.config import Settings
from besmart_server.server.db import Database
from besmart_server.server.graphs.evaluate import Backtest, backtest
from besmart_server.server.users import service as users
from besmart_server.server.weather import service as weather
from besmart_server.server.weather.providers import ORIGIN_FORECAST, ORIGIN_OBSERVED
from besmart_server.server.weather.providers.table import weather_table

DAY_MS: Final = 86_400_000
HOUR_MS: Final = 3_600_000
LEAD_MS: Final = 18 * HOUR_MS  # issued at 06:00 the day before the forecast day
ISSUE_HOUR: Final = 6
P_PV, P_PLUS = 70, 1001  # kW signal types: PV output, active power import
ADMIN: Final = Principal(user_id=None, login="bench-forecast", is_admin=True)
PV_HISTORY_DAYS: Final = 14  # the PV bias correction's window
LOAD_HISTORY_DAYS: Final = 56  # what the load model learns from
CHUNK: Final = 20_000  # points per PUT


@dataclass(frozen=True)
class Slice:
    """Which local days to forecast: [first, first + days)."""

    first: str  # local date
    days: int


FULL: Final = {
    "pv": Slice("2011-05-01", 975),
    "serf": Slice("2016-07-23", 82),
    "load": Slice("2014-03-01", 306),
}
SMALL_START: Final = {"pv": "2012-06-01", "serf": "2016-08-01", "load": "2014-06-01"}


class Api:
    """The set's client, sensors and writes through a TestClient on one app."""

    def __init__(self, client: TestClient, db: Database) -> None:
        self.client, self.db = client, db
        with db.transaction() as conn:
            self.cid = users.create_client(conn, name="forecast benchmark")
            login = f"bench-forecast-{uuid.uuid4().hex[:8]}"
            uid = users.create_user(conn, login=login, password="x" * 16)
            users.grant_role(conn, user_id=uid, client_cid=self.cid, role=Role.owner)
            token = users.issue_token(conn, user_id=uid, ttl_seconds=86_400).token
        self.headers = {"Authorization": f"Bearer {token}"}

    def sensor(self, name: str, lat: float, lon: float) -> int:
        r = self.client.post(
            "/api/sensors",
            params={"client_cid": self.cid, "name": name, "lat": lat, "lon": lon},
            headers=self.headers,
        )
        assert r.status_code in (200, 201), r.text
        return int(r.json()["sensor_mid"])

    def put_live(self, mid: int, moid: int, series: pd.Series, step_ms: int) -> None:
        """The series as a live feed: each point acquired when its interval ended."""
        t = pd.DatetimeIndex(series.index).as_unit("ms").asi8.astype(np.int64)
        v = series.to_numpy(dtype=float)
        for lo in range(0, len(t), CHUNK):
            part = slice(lo, lo + CHUNK)
            body = {
                "time": t[part].tolist(),
                "value": v[part].tolist(),
                "acq_time": (t[part] + step_ms).tolist(),
            }
            r = self.client.put(
                f"/api/sensors/{self.cid}.{mid}/signals/{moid}/data/v2",
                content=orjson.dumps(body),
                headers={**self.headers, "Content-Type": "application/json"},
            )
            assert r.status_code == 200, r.text

    def weather(self, table: pd.DataFrame, lat: float, lon: float, origin: int) -> None:
        result = weather_table(table, lat=lat, lon=lon, origin=origin, acq_time=0)
        with self.db.transaction() as conn:
            weather.import_weather(conn, result)


def _days(kind: str, weeks: int | None) -> Slice:
    return FULL[kind] if weeks is None else Slice(SMALL_START[kind], 7 * weeks)


def _window(s: Slice, utc_offset_h: int) -> tuple[int, int]:
    """[since, till) in UTC ms of the slice's local days."""
    first = pd.Timestamp(s.first, tz="UTC") - pd.Timedelta(hours=utc_offset_h)
    since = int(first.value // 1_000_000)
    return since, since + s.days * DAY_MS


def _between(series: pd.Series, since: int, till: int) -> pd.Series:
    t = pd.DatetimeIndex(series.index).as_unit("ms").asi8
    out: pd.Series = series[(t >= since) & (t < till)]
    return out


def _table_between(frame: pd.DataFrame, since: int, till: int) -> pd.DataFrame:
    t = pd.DatetimeIndex(frame["time"]).as_unit("ms").asi8
    return frame[(t >= since) & (t < till)]


@dataclass(frozen=True)
class Score:
    """One set's figures."""

    name: str
    days: int
    scores: dict[str, float]
    persistence_rmae: dict[str, float]
    seconds: float
    coverage: float | None = None  # share of actuals inside the P10-P90 band


def _persistence_rmae(actual: pd.Series, history: pd.Series) -> dict[str, float]:
    hist = pd.concat([history, actual]).sort_index()
    hist = hist[~hist.index.duplicated(keep="last")]
    return {
        "1d": metrics.rmae(actual, metrics.persistence(hist, metrics.DAY)),
        "7d": metrics.rmae(actual, metrics.persistence(hist, metrics.WEEK)),
    }


@dataclass(frozen=True)
class Case:
    """A set loaded into the database, ready to backtest."""

    name: str
    graph: str
    body: dict[str, Any]
    since: int
    till: int
    days: int
    band: bool = False  # the graph forecasts quantiles too (body key "quantile")


def load_pv(api: Api, data: PVSet, s: Slice) -> Case:
    """PV power as a live feed and the PSM3 weather as forecasts (origin 2)."""
    since, till = _window(s, data.utc_offset_h)
    lo = since - (PV_HISTORY_DAYS + 8) * DAY_MS  # bias window + a week for persistence
    mid = api.sensor("PV " + data.name, data.lat, data.lon)
    api.put_live(mid, P_PV, _between(data.power_kw, lo, till), data.freq_minutes * 60_000)
    table = _table_between(data.weather, lo, till + DAY_MS)
    api.weather(table, data.lat, data.lon, ORIGIN_FORECAST)
    body: dict[str, Any] = {
        "client_cid": api.cid,
        "sensor_mid": mid,
        "lat": data.lat,
        "lon": data.lon,
        "params": {"power": data.kwp, "inclination": data.tilt, "orientation": data.azimuth},
        "weather_origin": ORIGIN_FORECAST,
        "freq_minutes": data.freq_minutes,
        "bias_days": PV_HISTORY_DAYS,
    }
    return Case(data.name, "pv_forecast", body, since, till, s.days, band=True)


def load_demand(api: Api, data: LoadSet, s: Slice) -> Case:
    """Demand as a live feed (P+, kW) and the temperature at its place (origin 1)."""
    since, till = _window(s, data.utc_offset_h)
    lo = since - (LOAD_HISTORY_DAYS + 8) * DAY_MS
    mid = api.sensor("Demand " + data.name, data.lat, data.lon)
    api.put_live(mid, P_PLUS, _between(data.load_kw, lo, till), data.freq_minutes * 60_000)
    table = _table_between(data.weather, lo, till + DAY_MS)
    api.weather(table, data.lat, data.lon, ORIGIN_OBSERVED)
    body: dict[str, Any] = {
        "client_cid": api.cid,
        "sensor_mid": mid,
        "lat": data.lat,
        "lon": data.lon,
        "moid": P_PLUS,
        "freq_minutes": data.freq_minutes,
        "history_minutes": LOAD_HISTORY_DAYS * 1440,
        "timezone": data.timezone,
        "country": data.country,
        "subdivision": data.subdivision,
    }
    return Case(data.name, "load_forecast", body, since, till, s.days, band=True)


def coverage(actual: pd.Series, low: pd.Series, high: pd.Series) -> float:
    """The share of actuals inside [low, high] where all three exist and the band is open
    (PV nights, where the band is [0, 0] and the actual 0, would count as free hits)."""
    both = pd.concat([actual, low, high], axis=1, join="inner").dropna().to_numpy(dtype=float)
    both = both[both[:, 2] > both[:, 1]]
    inside = (both[:, 0] >= both[:, 1]) & (both[:, 0] <= both[:, 2])
    return float(inside.mean()) if len(both) else float("nan")


def run_case(
    api: Api, case: Case, settings: Settings, *, band: bool = True
) -> tuple[Score, Backtest]:
    """The day-ahead backtest of a loaded case and its figures (with its P10-P90 band's
    coverage when the graph has one and `band`)."""

    def run(body: dict[str, Any]) -> Backtest:
        return backtest(
            api.db,
            ADMIN,
            case.graph,
            body,
            case.since,
            case.till,
            settings=settings,
            lead_ms=LEAD_MS,
        )

    t0 = time.perf_counter()
    bt = run(case.body)
    seconds = time.perf_counter() - t0
    covered = None
    if band and case.band:
        low, high = (run({**case.body, "quantile": q}).forecast for q in (0.1, 0.9))
        covered = coverage(bt.actual, low, high)
    score = Score(
        case.name,
        case.days,
        bt.scores,
        _persistence_rmae(bt.actual, bt.history),
        seconds,
        covered,
    )
    return score, bt


@contextmanager
def served(url: str | None) -> Iterator[Api]:
    """A fresh database with the app over it on a TestClient."""
    with scratch_database(url, "forecast") as db_url:
        db = Database(db_url)
        migrate.upgrade(db)
        settings = Settings(database_url=db_url, demo=False)
        try:
            with TestClient(create_app(settings)) as client:
                yield Api(client, db)
        finally:
            db.dispose()


def measure(sets: list[str], weeks: int | None, url: str | None) -> list[Score]:
    """Load and backtest each named set ("pv", "serf", "load") in its own fresh database."""
    out = []
    for kind in sets:
        with served(url) as api:
            settings = Settings(database_url=str(api.db.url), demo=False)
            s = _days(kind, weeks)
            if kind == "pv":
                case = load_pv(api, pvdaq_system_50(), s)
            elif kind == "serf":
                case = load_pv(api, serf_east_2016(), s)
            else:
                case = load_demand(api, victoria_demand(), s)
            out.append(run_case(api, case, settings)[0])
    return out


def table(scores: list[Score]) -> str:
    """The figures as the README's Markdown table."""
    lines = [
        "| data | days | rMAE | skill vs 1 day | skill vs 1 week "
        "| persistence rMAE 1 day / 1 week | P10-P90 coverage |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in scores:
        f = s.scores
        band = "n/a" if s.coverage is None else f"{s.coverage:.2f}"
        lines.append(
            f"| {s.name} | {s.days} | {f['rmae']:.3f} | {f['skill_1d']:.3f} | "
            f"{f['skill_7d']:.3f} | {s.persistence_rmae['1d']:.3f} / "
            f"{s.persistence_rmae['7d']:.3f} | {band} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", choices=("pv", "serf", "load", "all"), default="all")
    parser.add_argument("--weeks", type=int, default=None, help="a small slice (CI); else all")
    parser.add_argument("--db-url", default=None, help="PostgreSQL server (else SQLite)")
    args = parser.parse_args(argv)
    sets = ["pv", "serf", "load"] if args.set == "all" else [args.set]
    scores = measure(sets, args.weeks, args.db_url)
    print(table(scores))
    for s in scores:
        print(f"{s.name}: MAE {s.scores['mae']:.4g}, backtest {s.seconds:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
