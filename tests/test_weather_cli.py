"""`besmart weather fetch|import` and the demo weather, against the test database."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from besmart_server.cli import app
from besmart_server.server.db import Database
from besmart_server.server.demo_info import DemoInfo
from besmart_server.server.weather import demo as weather_demo
from besmart_server.server.weather.cli import parse_time
from besmart_server.server.weather.providers import open_meteo
from tests.factories import make_client, make_user

runner = CliRunner()
REAL_OPEN_METEO = open_meteo.OpenMeteo  # the factories below wrap it once it is patched
DATA = Path(__file__).parent / "data" / "weather"
H = 3_600_000
DAY = 1_718_928_000_000  # 2024-06-21T00:00Z
T_AIR, GHI = 139, 1031


@pytest.fixture
def env(database_url: str, db: Database) -> dict[str, str]:
    return {"BESMART_DATABASE_URL": database_url}


def invoke(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.output


def read(
    client: TestClient,
    headers: dict[str, str],
    lat: float,
    lon: float,
    moid: int,
    since: int,
    till: int,
    **params: Any,
) -> dict[str, Any]:
    r = client.get(
        f"/api/weather/{lat}/{lon}/{moid}/data",
        params={"since": since, "till": till, **params},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2024-06-21", DAY),
        ("2024-06-21T01:00", DAY + H),
        ("2024-06-21T01:00Z", DAY + H),
        ("2024-06-21T03:00+02:00", DAY + H),
        ("1718928000000", DAY),
    ],
)
def test_parse_time(text: str, ms: int) -> None:
    assert parse_time(text) == ms


def test_import_epw_then_read(env: dict[str, str], db: Database, client: TestClient) -> None:
    code, out = invoke(env, "weather", "import", str(DATA / "krakow_2days.epw"))
    assert code == 0, out
    assert "stored 478 points from EPW krakow_2days.epw (Krakow)" in out
    assert "(50.0600, 19.9400)" in out
    actor = make_user(db)
    since = 1_119_312_000_000  # 2005-06-21T00:00Z
    body = read(client, actor.headers, 50.06, 19.94, T_AIR, since, since + 3 * H, is_chart=True)
    assert body["unit"] == "°C"
    assert body["data"]["value"] == pytest.approx([8.1, 7.3, 7.0])
    assert body["data"]["origin"] == [3, 3, 3]


def test_import_placed_and_year(env: dict[str, str], db: Database, client: TestClient) -> None:
    code, out = invoke(
        env,
        "weather",
        "import",
        str(DATA / "krakow_2days.epw"),
        "--lat",
        "51",
        "--lon",
        "17",
        "--year",
        "2030",
    )
    assert code == 0, out
    assert "data of Krakow (50.06, 19.94) placed at (51.0, 17.0)" in out
    since = 1_908_230_400_000  # 2030-06-21T00:00Z
    body = read(client, make_user(db).headers, 51, 17, T_AIR, since, since + H)
    assert body["data"]["value"] == pytest.approx([281.25])


def test_import_rejects_other_files(env: dict[str, str], tmp_path: Path) -> None:
    other = tmp_path / "x.txt"
    other.write_text("a,b\n", encoding="utf-8")
    code, out = invoke(env, "weather", "import", str(other))
    assert code == 1
    assert "neither an EPW nor a TMY3 file" in out


def _recorded(handler_status: int = 200) -> Callable[..., open_meteo.OpenMeteo]:
    body = json.loads((DATA / "open_meteo_forecast.json").read_text(encoding="utf-8"))

    def handler(request: httpx.Request) -> httpx.Response:
        if handler_status != 200:
            return httpx.Response(handler_status, json={"error": True, "reason": "no"})
        return httpx.Response(200, json=body)

    def factory(**_kw: Any) -> open_meteo.OpenMeteo:
        client = httpx.Client(transport=httpx.MockTransport(handler))
        return REAL_OPEN_METEO(client, sleep=lambda _s: None, clock=lambda: 1_718_990_000_000)

    return factory


def test_fetch_stores_a_forecast_run(
    env: dict[str, str], db: Database, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(open_meteo, "OpenMeteo", _recorded())
    code, out = invoke(
        env,
        "weather",
        "fetch",
        "--lat",
        "50.06",
        "--lon",
        "19.94",
        "--since",
        "2024-06-21",
        "--till",
        "2024-06-22",
    )
    assert code == 0, out
    # 24 hours of 10 variables
    assert "stored 240 points from open-meteo forecast at grid point" in out
    assert "(50.0600, 19.9400)" in out
    body = read(client, make_user(db).headers, 50.06, 19.94, T_AIR, DAY, DAY + 4 * H)
    assert body["data"]["origin"] == [2, 2, 2, 2]
    assert body["data"]["acq_time"] == [1_718_990_000_000] * 4
    assert body["data"]["value"][3] == pytest.approx(12.0 + 273.15)


def test_fetch_reports_provider_errors(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(open_meteo, "OpenMeteo", _recorded(400))
    code, out = invoke(
        env,
        "weather",
        "fetch",
        "--lat",
        "50",
        "--lon",
        "20",
        "--since",
        "2024-06-21",
        "--till",
        "2024-06-22",
        "--kind",
        "archive",
    )
    assert code == 1
    assert "Open-Meteo refused the request (400): no" in out


def test_fetch_checks_the_window(env: dict[str, str]) -> None:
    code, out = invoke(
        env,
        "weather",
        "fetch",
        "--lat",
        "50",
        "--lon",
        "20",
        "--since",
        "2024-06-22",
        "--till",
        "2024-06-21",
    )
    assert code != 0
    assert "--since must be before --till" in out


def test_demo_weather(db: Database, client: TestClient) -> None:
    cid = make_client(db)
    info = DemoInfo(client_cid=cid, login="demo", password="x")
    with db.transaction() as conn:
        weather_demo.load(conn, info)
    assert info.notes[0].startswith("weather: 78840 hourly points of 2026 at (50.06, 19.94)")
    headers = make_user(db).headers
    june = 1_782_000_000_000 - 1_782_000_000_000 % (24 * H)  # 2026-06-21T00:00Z
    body = read(client, headers, 50.06, 19.94, T_AIR, june, june + 24 * H, delta_t=60)
    assert len(body["data"]["time"]) == 24
    assert all(270 < v < 320 for v in body["data"]["value"])
    ghi = read(client, headers, 50.06, 19.94, GHI, june, june + 24 * H)
    values = ghi["data"]["value"]
    # the sun of the transposed day peaks around midday Kraków standard time (11:00 UTC)
    peak_hour = (ghi["data"]["time"][values.index(max(values))] - june) // H
    assert 9 <= peak_hour <= 13
    assert values[0] == 0.0
