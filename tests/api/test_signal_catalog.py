"""Signal types, units and the server clock."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from besmart_server.schemas.users import Role
from besmart_server.server.db import Database
from tests.factories import make_tenant


@pytest.mark.parametrize(
    "path", ["/api/sensors/signals/types", "/api/units", "/api/time", "/api/time?unit=ms"]
)
def test_anonymous_is_401(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 401
    assert r.json() == {"detail": "Not valid authentication credentials"}


def test_signal_types_have_the_real_moids_and_spec_fields(client: TestClient, db: Database) -> None:
    _, reader = make_tenant(db, Role.read)
    r = client.get("/api/sensors/signals/types", headers=reader.headers)
    assert r.status_code == 200
    by_symbol = {t["symbol"]: t for t in r.json()}
    a_plus = by_symbol["A+"]
    assert a_plus["signal_type_moid"] == 32
    assert a_plus["obis_mapping"] == "1.8.0"
    assert a_plus["unit_symbol"] == "kWh"
    assert a_plus["time_series_type"] == 1
    assert a_plus["apply_multiplier"] is True
    assert a_plus["apply_current_ratio"] is True
    assert a_plus["apply_voltage_ratio"] is True
    assert by_symbol["A-"]["signal_type_moid"] == 34
    assert [by_symbol[s]["signal_type_moid"] for s in ("U1", "U2", "U3")] == [53, 54, 55]
    assert by_symbol["U1"]["apply_current_ratio"] is False
    assert by_symbol["U1"]["apply_voltage_ratio"] is True
    assert by_symbol["P_PV"]["signal_type_moid"] == 70
    assert by_symbol["P_PV"]["apply_multiplier"] is False
    assert by_symbol["F"]["signal_type_moid"] == 103
    assert by_symbol["T_AIR"]["signal_type_moid"] == 139
    assert by_symbol["T_AIR"]["chart_expected_unit"] == "°C"
    assert by_symbol["EA+"]["time_series_type"] == 2
    assert by_symbol["P+"]["time_series_type"] == 0
    spec_fields = {
        "signal_type_moid", "symbol", "description", "is_measurement", "time_series_type",
        "apply_multiplier", "apply_current_ratio", "apply_voltage_ratio", "obis_mapping",
        "chart_expected_unit", "keep_prefix", "draw_chart", "unit_id", "unit_symbol",
        "group_id", "group", "data_model_type", "chart_expected_summary", "columns",
        "payload_mapping",
    }  # fmt: skip
    assert spec_fields <= set(a_plus)


def test_units_with_dimensions(client: TestClient, db: Database) -> None:
    _, reader = make_tenant(db, Role.read)
    r = client.get("/api/units", headers=reader.headers)
    assert r.status_code == 200
    by_symbol = {u["symbol"]: u for u in r.json()}
    for symbol in ("W", "kW", "MW", "Wh", "kWh", "MWh", "var", "kvarh", "V", "kV", "A", "Hz"):
        assert symbol in by_symbol
    for symbol in ("K", "°C", "°F", "W/m2", "m/s", "km/h", "°", "%", "hPa", "Pa", "mm"):
        assert symbol in by_symbol
    assert by_symbol["kWh"]["dimension"] == "energy"
    assert by_symbol["kWh"]["factor"] == 1000.0
    assert "kW.h" in by_symbol["kWh"]["aliases"]
    assert by_symbol["°C"]["offset"] == 273.15


def test_time_in_seconds_and_ms(client: TestClient, db: Database) -> None:
    _, reader = make_tenant(db, Role.read)
    before = time.time()
    s = client.get("/api/time", params={"unit": "s"}, headers=reader.headers)
    ms = client.get("/api/time", params={"unit": "ms"}, headers=reader.headers)
    default = client.get("/api/time", headers=reader.headers)
    after = time.time()
    assert s.status_code == ms.status_code == default.status_code == 200
    assert isinstance(s.json(), float)
    assert before - 1 <= s.json() <= after + 1
    assert isinstance(ms.json(), int)
    assert before * 1000 - 1000 <= ms.json() <= after * 1000 + 1000
    assert isinstance(default.json(), float)
    assert client.get("/api/time?unit=h", headers=reader.headers).status_code == 422


def test_openapi_documents_the_signal_routes(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    put_v2 = paths["/api/sensors/{client_cid}.{sensor_mid}/signals/{signal_type_moid}/data/v2"]
    assert put_v2["put"]["summary"] == "Put signal data"
    assert "requestBody" in put_v2["put"]
    many = paths["/api/sensors/signals/data/v2"]
    assert many["put"]["summary"] == "Put multiple signals data"
    assert many["post"]["summary"] == "Get multiple signals data"
    items = many["post"]["requestBody"]["content"]["application/json"]["schema"]["items"]
    assert {"client_cid", "since", "till", "last_acq", "delta_t"} <= set(items["properties"])
    get = paths["/api/sensors/{client_cid}.{sensor_mid}/signals/{signal_type_moid}/data"]["get"]
    assert get["summary"] == "Get signal data"
    params = {p["name"] for p in get["parameters"]}
    assert {"since", "till", "get_last", "delta_t", "raw", "apply_multiplier"} <= params
    assert {"output_unit_id", "signal_origin_id"} <= params
    assert "SignalResponse" in doc["components"]["schemas"]
    legacy = paths["/api/sensors/{client_cid}.{sensor_mid}/signals/{signal_type_moid}/data"]
    assert "204" in legacy["put"]["responses"]
