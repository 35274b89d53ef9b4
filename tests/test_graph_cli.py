"""`besmart graph ...` against the test database, and backtests without leakage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from besmart_server.cli import app
from besmart_server.server.config import Settings
from besmart_server.server.db import Database
from besmart_server.server.graphs.evaluate import backtest
from besmart_server.tools.quality import ADMIN, _write
from tests.api.signal_helpers import make_sensor
from tests.factories import make_client

runner = CliRunner()
T0 = 1_780_272_000_000  # 2026-06-01T00:00:00Z
DAY = 86_400_000
Q = 900_000
A_PLUS, EA_PLUS = 32, 1011


@pytest.fixture
def env(database_url: str, db: Database) -> dict[str, str]:
    return {"BESMART_DATABASE_URL": database_url}


def invoke(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env)
    # A command's answer is on stdout, and its errors on stderr; stderr also names the
    # database, which is not part of the answer.
    return result.exit_code, result.stdout if result.exit_code == 0 else result.stderr


def _register(
    db: Database, days: int, *, acq_delay: int = Q, scale: float = 1.0
) -> tuple[int, int]:
    """A meter's A+ register over `days` days from T0: a daily shape plus noise, stored as a
    live feed would store it (each reading acquired `acq_delay` after its time)."""
    cid = make_client(db)
    mid = make_sensor(db, cid)
    t = np.arange(T0, T0 + days * DAY + Q, Q, dtype=np.int64)
    hours = (t % DAY) / 3_600_000
    rng = np.random.default_rng(7)
    kw = 1.0 + 0.8 * np.exp(-(((hours - 19) / 2.5) ** 2)) + rng.normal(0, 0.05, t.shape)
    counter = np.concatenate(([0.0], np.cumsum(np.clip(kw, 0, None) * 0.25)))[:-1] * scale
    _write(db, cid, mid, A_PLUS, t, counter, t + acq_delay)
    return cid, mid


def test_list_and_show(env: dict[str, str]) -> None:
    code, out = invoke(env, "graph", "list")
    assert code == 0, out
    assert "estimation\t-\tshipped" in out
    code, out = invoke(env, "graph", "show", "balance")
    assert code == 0
    assert json.loads(out)["nodes"][0]["function"] == "balance"
    code, out = invoke(env, "graph", "show", "nope")
    assert code == 1
    assert "404" in out


def test_put_then_run_prints_the_record(env: dict[str, str], db: Database, tmp_path: Path) -> None:
    cid, mid = _register(db, 2)
    graph = {
        "nodes": [
            {
                "function": "signals",
                "params": {
                    "client_cid": cid,
                    "sensor_mid": mid,
                    "moid": A_PLUS,
                    "delta_t": 60,
                    "energy_per_interval": True,
                },
            },
            {"function": "scale", "params": {"factor": {"$param": "k", "default": 1.0}}},
            {
                "function": "write",
                "params": {"client_cid": cid, "sensor_mid": mid, "moid": EA_PLUS, "origin": 3},
            },
        ],
        "edges": [{"from": 0, "to": 1}, {"from": 1, "to": 2}],
    }
    path = tmp_path / "hourly.json"
    path.write_text(json.dumps(graph))
    code, out = invoke(env, "graph", "put", "hourly", f"@{path}", "--client", str(cid))
    assert (code, out.strip()) == (0, "created hourly")
    code, out = invoke(
        env, "graph", "run", "hourly", "--since", "2026-06-01", "--till", "2026-06-02",
        "--body", '{"k": 2}',
    )  # fmt: skip
    assert code == 0, out
    record = json.loads(out)
    assert record["points_written"] == {f"{cid}.{mid}/{EA_PLUS}/3": 24}
    code, out = invoke(env, "graph", "put", "broken", '{"nodes": [{"function": "nope"}]}')
    assert code == 1
    assert "nodes/0/function" in out


def test_evaluate_prints_the_scores(env: dict[str, str], db: Database) -> None:
    cid, mid = _register(db, 20)
    body = json.dumps({"client_cid": cid, "sensor_mid": mid, "min_history_days": 7})
    code, out = invoke(
        env, "graph", "evaluate", "load_forecast", "--since", "2026-06-17",
        "--till", "2026-06-19", "--body", body,
    )  # fmt: skip
    assert code == 0, out
    scores = dict(line.split("\t") for line in out.strip().splitlines())
    assert int(scores["issues"]) == 2
    assert int(scores["points"]) == 2 * 96
    assert float(scores["mae"]) > 0
    assert float(scores["skill_1d"]) > 0  # the daily shape plus noise: better than yesterday


def test_backtests_see_only_data_acquired_before_each_issue(
    database_url: str, db: Database
) -> None:
    cid, mid = _register(db, 18)
    settings = Settings(database_url=database_url, demo=False)
    body = {"client_cid": cid, "sensor_mid": mid}
    since, till = T0 + 16 * DAY, T0 + 18 * DAY

    def forecast() -> list[float]:
        bt = backtest(db, ADMIN, "load_forecast", body, since, till, settings=settings)
        return [float(x) for x in bt.forecast.to_numpy()]

    before = forecast()
    # A correction of the whole history, acquired after the window: a leaking backtest would
    # train on it (ten times the load) and forecast ten times more.
    t = np.arange(T0, T0 + 18 * DAY + Q, Q, dtype=np.int64)
    from besmart_server.server.graphs.context import DbContext

    old = DbContext.over(db, ADMIN).read_signal(cid, mid, A_PLUS, T0, T0 + 19 * DAY, get_last=True)
    _write(db, cid, mid, A_PLUS, t, old.to_numpy() * 10, np.full(t.shape, till + DAY))
    assert forecast() == before
    leaked = backtest(
        db, ADMIN, "load_forecast", body, till + 2 * DAY, till + 3 * DAY, settings=settings
    )
    # issued after the correction, a forecast does see the new version
    assert float(leaked.forecast.mean()) > 5 * float(np.mean(before))


def test_worker_needs_a_redis_url(env: dict[str, str]) -> None:
    code, out = invoke({**env, "BESMART_BROKER_URL": "amqp://guest@127.0.0.1//"}, "graph", "worker")
    assert code == 2
    assert "redis://" in out
