"""Helpers for the sensor, state and signal-state API tests: create through the API."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.factories import Actor

# 2026-01-01T00:00:00Z and one day, in ms.
T0 = 1_767_225_600_000
DAY = 86_400_000
A_PLUS, A_MINUS = 32, 34
ENERGY_METER, STATION, PV = 2, 3, 5
THREE_PHASE, AMI_3P = 2, 5


def new_sensor(client: TestClient, actor: Actor, cid: int, **params: Any) -> dict[str, Any]:
    """POST /api/sensors and return the created sensor (asserting 201)."""
    params.setdefault("name", "meter")
    res = client.post("/api/sensors", params={"client_cid": cid, **params}, headers=actor.headers)
    assert res.status_code == 201, res.text
    body: dict[str, Any] = res.json()
    return body


def new_state(
    client: TestClient, actor: Actor, cid: int, mid: int, **params: Any
) -> dict[str, Any]:
    """POST /api/sensors/states and return the created state (asserting 201)."""
    res = client.post(
        "/api/sensors/states",
        params={"client_cid": cid, "sensor_mid": mid, **params},
        headers=actor.headers,
    )
    assert res.status_code == 201, res.text
    body: dict[str, Any] = res.json()
    return body


def new_signal_state(
    client: TestClient, actor: Actor, state_id: int, moid: int = A_PLUS, **params: Any
) -> dict[str, Any]:
    """POST /api/sensors/states/{id}/signals and return the created signal state."""
    res = client.post(
        f"/api/sensors/states/{state_id}/signals",
        params={"signal_type_moid": moid, **params},
        headers=actor.headers,
    )
    assert res.status_code == 201, res.text
    body: dict[str, Any] = res.json()
    return body


def loc_of(res: Any) -> list[Any]:
    """The loc of the first 422 error, asserting the FastAPI validation shape."""
    assert res.status_code == 422, res.text
    detail = res.json()["detail"]
    assert isinstance(detail, list)
    assert detail[0]["msg"]
    assert detail[0]["type"]
    loc: list[Any] = detail[0]["loc"]
    return loc
