"""`besmart weather import TABLE.csv|.parquet --lat --lon`: units, origins and refusals."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from besmart_server.cli import app
from besmart_server.server.db import Database
from tests.factories import make_user

runner = CliRunner()
H = 3_600_000
DAY = 1_718_928_000_000  # 2024-06-21T00:00Z
T_AIR, GHI, WS = 139, 1031, 1041
LAT, LON = 39.7406, -105.1775


@pytest.fixture
def env(database_url: str, db: Database) -> dict[str, str]:
    return {"BESMART_DATABASE_URL": database_url}


def invoke(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["weather", "import", *args], env=env)
    return result.exit_code, result.output


def here(*extra: str) -> list[str]:
    return ["--lat", str(LAT), "--lon", str(LON), *extra]


def read(client: TestClient, db: Database, moid: int, **params: object) -> dict[str, object]:
    r = client.get(
        f"/api/weather/{LAT}/{LON}/{moid}/data",
        params={"since": DAY, "till": DAY + 4 * H, **params},
        headers=make_user(db).headers,
    )
    assert r.status_code in (200, 404), r.text
    return dict(r.json()) if r.status_code == 200 else {}


def test_csv_units_are_converted_to_the_catalog(
    env: dict[str, str], db: Database, client: TestClient, tmp_path: Path
) -> None:
    f = tmp_path / "site.csv"
    f.write_text(
        "time,T_AIR[°C],GHI[kW/m2],WS\n"
        "2024-06-21T00:00Z,12.5,0.0,3\n"
        "2024-06-21T03:00+02:00,13.0,0.25,\n"  # 01:00Z; an empty cell is no value
        "2024-06-21T02:00,14.0,0.5,4\n",  # naive: UTC
        encoding="utf-8",
    )
    code, out = invoke(env, str(f), *here("--origin", "2"))
    assert code == 0, out
    assert "stored 8 points from table site.csv" in out
    t = read(client, db, T_AIR)["data"]
    assert isinstance(t, dict)
    assert t["time"] == [DAY, DAY + H, DAY + 2 * H]
    assert t["value"] == pytest.approx([285.65, 286.15, 287.15])
    assert t["origin"] == [2, 2, 2]
    g = read(client, db, GHI)["data"]
    assert isinstance(g, dict)
    assert g["value"] == pytest.approx([0.0, 250.0, 500.0])
    w = read(client, db, WS)["data"]
    assert isinstance(w, dict)
    assert w["time"] == [DAY, DAY + 2 * H]


def test_parquet_with_zoned_times_and_milliseconds(
    env: dict[str, str], db: Database, client: TestClient, tmp_path: Path
) -> None:
    f = tmp_path / "site.parquet"
    times = pd.date_range("2024-06-20T18:00", periods=2, freq="h", tz="America/Denver")
    pd.DataFrame({"time": times, "T_AIR[K]": [290.0, 291.0]}).to_parquet(f)
    code, out = invoke(env, str(f), *here())
    assert code == 0, out
    t = read(client, db, T_AIR)["data"]
    assert isinstance(t, dict)
    assert t["time"] == [DAY, DAY + H]  # 18:00 MDT is 00:00Z
    assert t["origin"] == [1, 1]  # a table is measured weather unless told
    ms = tmp_path / "ms.csv"
    ms.write_text(f"time,GHI,T_AIR[°F]\n{DAY + 3 * H},100,68\n", encoding="utf-8")
    code, out = invoke(env, str(ms), *here())
    assert code == 0, out
    g = read(client, db, GHI)["data"]
    assert isinstance(g, dict)
    assert g["time"] == [DAY + 3 * H]
    t = read(client, db, T_AIR)["data"]
    assert isinstance(t, dict)
    assert t["value"][-1] == pytest.approx(293.15)  # 68 °F


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("when,T_AIR\n2024-06-21,1\n", "no 'time' column"),
        ("time,T_FOO\n2024-06-21,1\n", "T_FOO is not a stored weather signal"),
        ("time,GHI_CS\n2024-06-21,1\n", "GHI_CS is not a stored weather signal"),
        ("time,T_AIR[furlong]\n2024-06-21,1\n", "unknown unit 'furlong'"),
        ("time,T_AIR[W/m2]\n2024-06-21,1\n", "W/m2 is a irradiance unit, T_AIR is stored in K"),
        ("time,T_AIR\n2024-06-21,1\nyesterday,2\n", "time, row 2: not a time: 'yesterday'"),
        ("time,T_AIR\n2024-06-21,1\n2024-06-21T00:00Z,2\n", "appears more than once"),
        ("time,T_AIR\n2024-06-21,1\n2024-06-22,warm\n", "column 'T_AIR', row 2: not a number"),
        ("time,T_AIR,T_AIR[°C]\n2024-06-21,1,2\n", "T_AIR is given twice"),
        ("time\n2024-06-21\n", "no weather columns besides time"),
        ("time,T_AIR\n", "the table has no rows"),
    ],
)
def test_bad_tables_store_nothing(
    env: dict[str, str],
    db: Database,
    client: TestClient,
    tmp_path: Path,
    text: str,
    message: str,
) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(text, encoding="utf-8")
    code, out = invoke(env, str(f), *here())
    assert code == 1, out
    assert message in out
    assert read(client, db, T_AIR) == {}  # no grid point was even created


def test_a_table_needs_a_position(env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "site.csv"
    f.write_text("time,T_AIR\n2024-06-21,290\n", encoding="utf-8")
    code, out = invoke(env, str(f))
    assert code == 1
    assert "give --lat and --lon" in out
    code, out = invoke(env, str(f), *here("--year", "2030"))
    assert code == 1
    assert "--year places typical years" in out


def test_converted_values_are_stored_at_15_significant_digits() -> None:
    """°C → K in binary floating point gives 270.04999999999995 for -3.1; a provider stores
    270.05 (15 significant digits, as every computed value), so the block keeps its decimal
    encoding and a read gives the same number a person computes."""
    from besmart_server.server.weather.providers.table import weather_table

    frame = pd.DataFrame(
        {"time": ["2024-06-21T00:00Z", "2024-06-21T01:00Z"], "T_AIR[°C]": ["8.5", "-3.1"]}
    )
    assert -3.1 + 273.15 != 270.05  # the noise this test is about
    t_air = weather_table(frame, lat=LAT, lon=LON, origin=1)["T_AIR"]
    assert t_air.value.tolist() == [281.65, 270.05]
