"""Writing signals: single and multi-series PUT (v2 and legacy), validation, units, limits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from besmart_server.schemas.users import Role
from besmart_server.server.app import create_app
from besmart_server.server.config import Settings
from besmart_server.server.db import Database
from tests.api.signal_helpers import T0, Q, data_url, get, make_sensor, moid, put
from tests.factories import Actor, make_tenant, make_user

MANY = "/api/sensors/signals/data/v2"
MANY_LEGACY = "/api/sensors/signals/data"


@pytest.fixture
def writer(db: Database) -> tuple[int, int, Actor]:
    cid, actor = make_tenant(db, Role.write)
    return cid, make_sensor(db, cid), actor


def item(cid: int, mid: int, symbol: str, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "client_cid": cid,
        "sensor_mid": mid,
        "signal_type_moid": moid(symbol),
        "data": data,
        **extra,
    }


def values(
    client: TestClient, actor: Actor, cid: int, mid: int, symbol: str, **p: Any
) -> list[Any]:
    body = get(
        client, actor.headers, cid, mid, moid(symbol), T0 - Q, T0 + 100 * Q, get_last=True, **p
    )
    return list(body["data"]["value"])


def test_put_v2_is_200_null_and_legacy_is_204(
    client: TestClient, writer: tuple[int, int, Actor]
) -> None:
    cid, mid, a = writer
    m = moid("P+")
    r = client.put(data_url(cid, mid, m), json={"time": [T0], "value": [1.0]}, headers=a.headers)
    assert r.status_code == 200
    assert r.json() is None
    r = client.put(
        data_url(cid, mid, m, v2=False), json={"time": [T0 + Q], "value": [2]}, headers=a.headers
    )
    assert r.status_code == 204
    assert r.content == b""
    assert values(client, a, cid, mid, "P+") == [1.0, 2.0]


def test_put_accepts_wrapped_data_exponents_and_any_content_type(
    client: TestClient, writer: tuple[int, int, Actor]
) -> None:
    cid, mid, a = writer
    raw = b'{"data": {"time": [%d], "value": [1.235e+04], "type": ["DBL"], "origin": [1]}}' % T0
    r = client.put(
        data_url(cid, mid, moid("P+")),
        content=raw,
        headers={**a.headers, "Content-Type": "text/plain"},
    )
    assert r.status_code == 200, r.text
    assert values(client, a, cid, mid, "P+") == [12350.0]


def test_multi_put_v2_and_legacy(client: TestClient, writer: tuple[int, int, Actor]) -> None:
    cid, mid, a = writer
    body = [
        item(cid, mid, "P+", {"time": [T0, T0 + Q], "value": [1, 2]}),
        item(cid, mid, "U1", {"time": [T0], "value": [230.1]}),
    ]
    r = client.put(MANY, json=body, headers=a.headers)
    assert r.status_code == 200
    assert r.json() is None
    r = client.put(
        MANY_LEGACY, json=[item(cid, mid, "U2", {"time": [T0], "value": [231]})], headers=a.headers
    )
    assert r.status_code == 200
    assert values(client, a, cid, mid, "P+") == [1.0, 2.0]
    assert values(client, a, cid, mid, "U1") == [230.1]
    assert values(client, a, cid, mid, "U2") == [231.0]


def test_multi_put_is_all_or_nothing(
    client: TestClient, db: Database, writer: tuple[int, int, Actor]
) -> None:
    cid, mid, a = writer
    good = item(cid, mid, "P+", {"time": [T0], "value": [1]})
    bad = item(cid, mid, "U1", {"time": [T0, T0 + Q], "value": [1, "oops"]})
    r = client.put(MANY, json=[good, bad], headers=a.headers)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", 1, "data", "value", 1]
    # A failure found only inside the transaction (another tenant's sensor) rolls back too.
    other_cid, _ = make_tenant(db, Role.write)
    foreign = make_sensor(db, other_cid)
    r = client.put(
        MANY,
        json=[good, item(other_cid, foreign, "P+", {"time": [T0], "value": [1]})],
        headers=a.headers,
    )
    assert r.status_code == 404
    assert values(client, a, cid, mid, "P+") == []
    assert values(client, a, cid, mid, "U1") == []


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        pytest.param({"time": [T0, T0], "value": [1]}, ["body", "value"], id="unequal"),
        pytest.param({"time": [T0], "value": ["x"]}, ["body", "value", 0], id="non-numeric"),
        pytest.param({"time": [T0], "value": [1], "type": ["XYZ"]}, ["body", "type", 0], id="type"),
        pytest.param(
            {"time": [T0], "value": [1], "origin": [7]}, ["body", "origin", 0], id="origin"
        ),
        pytest.param({"value": [1]}, ["body", "time"], id="no-time"),
        pytest.param([1, 2], ["body"], id="not-object"),
    ],
)
def test_put_validation_names_column_and_index(
    client: TestClient, writer: tuple[int, int, Actor], body: Any, loc: list[Any]
) -> None:
    cid, mid, a = writer
    r = client.put(data_url(cid, mid, moid("P+")), json=body, headers=a.headers)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"] == loc
    assert detail["msg"]


@pytest.mark.parametrize(
    "raw",
    [b"", b"{not json", b'{"time": [1], "value": [NaN]}', b'{"time": [1], "value": [Infinity]}'],
)
def test_put_bad_json_is_422(
    client: TestClient, writer: tuple[int, int, Actor], raw: bytes
) -> None:
    cid, mid, a = writer
    r = client.put(data_url(cid, mid, moid("P+")), content=raw, headers=a.headers)
    assert r.status_code == 422


_NO_CID = {"data": {"time": []}, "sensor_mid": 1, "signal_type_moid": 32}


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        pytest.param({"no": "list"}, ["body"], id="not-list"),
        pytest.param([{"client_cid": 1}], ["body", 0], id="no-data"),
        pytest.param([{**_NO_CID}], ["body", 0, "client_cid"], id="no-cid"),
        pytest.param([{**_NO_CID, "client_cid": "1"}], ["body", 0, "client_cid"], id="str-cid"),
        pytest.param(
            [{**_NO_CID, "client_cid": 1, "unit": 5}], ["body", 0, "unit"], id="unit-type"
        ),
    ],
)
def test_multi_put_item_validation(
    client: TestClient, writer: tuple[int, int, Actor], body: Any, loc: list[Any]
) -> None:
    _, _, a = writer
    r = client.put(MANY, json=body, headers=a.headers)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc


def test_unit_conversion_on_the_way_in(client: TestClient, writer: tuple[int, int, Actor]) -> None:
    cid, mid, a = writer
    put(client, a.headers, cid, mid, moid("P+"), {"time": [T0], "value": [1500]}, unit="W")
    put(client, a.headers, cid, mid, moid("A+"), {"time": [T0], "value": [2]}, unit="MW.h")
    r = client.put(
        MANY,
        json=[item(cid, mid, "U1", {"time": [T0], "value": [0.23]}, unit="kV")],
        headers=a.headers,
    )
    assert r.status_code == 200
    assert values(client, a, cid, mid, "P+") == [1.5]
    assert values(client, a, cid, mid, "A+", raw=True) == [2000.0]
    assert values(client, a, cid, mid, "U1") == pytest.approx([230.0])


def test_unit_errors_are_422(client: TestClient, writer: tuple[int, int, Actor]) -> None:
    cid, mid, a = writer
    url = data_url(cid, mid, moid("P+"))
    r = client.put(url, params={"unit": "V"}, json={"time": [T0], "value": [1]}, headers=a.headers)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "unit"]
    r = client.put(
        url, params={"unit": "furlong"}, json={"time": [T0], "value": [1]}, headers=a.headers
    )
    assert r.status_code == 422
    r = client.put(
        MANY,
        json=[item(cid, mid, "P+", {"time": [T0], "value": [1]}, unit="kWh")],
        headers=a.headers,
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", 0, "unit"]
    assert values(client, a, cid, mid, "P+") == []


def test_roles_reader_403_other_tenant_404_anonymous_401(client: TestClient, db: Database) -> None:
    cid, reader = make_tenant(db, Role.read)
    mid = make_sensor(db, cid)
    _, stranger = make_tenant(db, Role.owner)
    body = {"time": [T0], "value": [1]}
    url = data_url(cid, mid, moid("P+"))
    assert client.put(url, json=body).status_code == 401
    r = client.put(url, json=body, headers=reader.headers)
    assert r.status_code == 403
    r = client.put(url, json=body, headers=stranger.headers)
    assert r.status_code == 404
    assert r.json() == f"Sensor {cid}.{mid} not found"
    r = client.put(
        data_url(cid, mid + 1000, moid("P+"), v2=False), json=body, headers=reader.headers
    )
    assert r.status_code == 404
    r = client.put(MANY, json=[item(cid, mid, "P+", body)], headers=reader.headers)
    assert r.status_code == 403
    admin = make_user(db, admin=True)
    assert client.put(url, json=body, headers=admin.headers).status_code == 200


def test_unknown_signal_type_is_404(client: TestClient, writer: tuple[int, int, Actor]) -> None:
    cid, mid, a = writer
    r = client.put(data_url(cid, mid, 99_999), json={"time": [T0], "value": [1]}, headers=a.headers)
    assert r.status_code == 404
    assert r.json() == "Signal type 99999 not found"


def test_empty_body_columns_store_nothing(
    client: TestClient, writer: tuple[int, int, Actor]
) -> None:
    cid, mid, a = writer
    put(client, a.headers, cid, mid, moid("P+"), {"time": [], "value": []})
    r = client.get(
        f"/api/sensors/{cid}.{mid}/signals/cap",
        params={"signal_type_moid": moid("P+")},
        headers=a.headers,
    )
    assert r.json() == {"cap_max": None}


def test_acq_time_column_imports_are_idempotent(
    client: TestClient, writer: tuple[int, int, Actor]
) -> None:
    cid, mid, a = writer
    m = moid("P+")
    body = {"time": [T0, T0], "value": [1, 2], "acq_time": [T0 + 1000, T0 + 2000]}
    put(client, a.headers, cid, mid, m, body)
    put(client, a.headers, cid, mid, m, {**body, "value": [10, 20]})  # same keys: replaced
    out = get(client, a.headers, cid, mid, m, T0, T0 + 1)["data"]
    assert out["value"] == [10.0, 20.0]
    assert out["acq_time"] == [T0 + 1000, T0 + 2000]
    # A server-stamped write is newer than both imports.
    put(client, a.headers, cid, mid, m, {"time": [T0], "value": [3]})
    assert get(client, a.headers, cid, mid, m, T0, T0 + 1, get_last=True)["data"]["value"] == [3.0]


def test_duplicate_points_in_one_request_keep_the_last(
    client: TestClient, writer: tuple[int, int, Actor]
) -> None:
    cid, mid, a = writer
    body = [
        item(cid, mid, "P+", {"time": [T0, T0], "value": [1, 2]}),
        item(cid, mid, "P+", {"time": [T0], "value": [3]}),
    ]
    assert client.put(MANY, json=body, headers=a.headers).status_code == 200
    out = get(client, a.headers, cid, mid, moid("P+"), T0, T0 + 1)["data"]
    assert out["value"] == [3.0]


@pytest.fixture
def small(database_url: str, db: Database) -> Iterator[TestClient]:
    settings = Settings(
        database_url=database_url,
        demo=False,
        max_points_per_request=5,
        max_items_per_request=2,
        max_points_per_read=4,
        max_body_bytes=4096,
    )
    with TestClient(create_app(settings)) as c:
        yield c


def test_limits_answer_413(small: TestClient, db: Database) -> None:
    cid, a = make_tenant(db, Role.write)
    mid = make_sensor(db, cid)
    url = data_url(cid, mid, moid("P+"))
    six = {"time": [T0 + i for i in range(6)], "value": [1] * 6}
    r = small.put(url, json=six, headers=a.headers)
    assert r.status_code == 413
    assert "max_points_per_request" in r.json()["detail"]
    three = {"time": [T0, T0 + 1, T0 + 2], "value": [1] * 3}
    r = small.put(
        MANY, json=[item(cid, mid, "P+", three), item(cid, mid, "U1", three)], headers=a.headers
    )
    assert r.status_code == 413
    r = small.put(
        MANY, json=[item(cid, mid, "P+", {"time": [], "value": []})] * 3, headers=a.headers
    )
    assert r.status_code == 413
    assert "max_items_per_request" in r.json()["detail"]
    big = {"time": [T0] * 2000, "value": [1] * 2000}
    assert small.put(url, json=big, headers=a.headers).status_code == 413
    # Reads: a window holding more than max_points_per_read points.
    r = small.put(
        url, json={"time": [T0 + i for i in range(5)], "value": [1] * 5}, headers=a.headers
    )
    assert r.status_code == 200
    r = small.get(
        data_url(cid, mid, moid("P+"), v2=False),
        params={"since": T0, "till": T0 + 10},
        headers=a.headers,
    )
    assert r.status_code == 413
    assert "max_points_per_read" in r.json()["detail"]
    r = small.get(
        data_url(cid, mid, moid("P+"), v2=False),
        params={"since": T0, "till": T0 + 4},
        headers=a.headers,
    )
    assert r.status_code == 200
    q = {
        "client_cid": cid,
        "sensor_mid": mid,
        "signal_type_moid": moid("P+"),
        "since": T0,
        "till": T0 + 3,
    }
    r = small.post(MANY, json=[q, q], headers=a.headers)  # 3 + 3 points across the request
    assert r.status_code == 413
    r = small.post(MANY, json=[q, q, q], headers=a.headers)
    assert r.status_code == 413
    assert "max_items_per_request" in r.json()["detail"]
    # Too many buckets for a read.
    r = small.get(
        data_url(cid, mid, moid("P+"), v2=False),
        params={"since": T0, "till": T0 + 3_600_000, "delta_t": 1},
        headers=a.headers,
    )
    assert r.status_code == 413
