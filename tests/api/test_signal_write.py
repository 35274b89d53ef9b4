"""Writing signals: single and multi-series PUT (v2 and legacy), validation, units, limits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from besmart_server.schemas.users import Role
from besmart_server.server.app import create_app
from besmart_server.server.config import Settings
from besmart_server.server.db import Database, now_ms
from tests.api.signal_helpers import T0, Q, data_url, get, make_sensor, make_state, moid, put
from tests.factories import Actor, make_tenant, make_user

MANY = "/api/sensors/signals/data/v2"
MANY_LEGACY = "/api/sensors/signals/data"
H = 4 * Q


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


# --- versions on the wire, future imports (issue #14) ----------------------------------------


def test_versions_written_within_one_ms_have_distinct_acq_times(
    client: TestClient, writer: tuple[int, int, Actor]
) -> None:
    """The wire's acq_time is ms: a burst of writes of one point (several per ms on a fast
    store) still shows every version with its own, increasing acq_time."""
    cid, mid, a = writer
    m = moid("P+")
    body = [item(cid, mid, "P+", {"time": [T0], "value": [0]})]
    for i in range(200):
        body[0]["data"]["value"] = [i]
        assert client.put(MANY, json=body, headers=a.headers).status_code == 200
    out = get(client, a.headers, cid, mid, m, T0, T0 + 1)["data"]
    assert out["value"] == [float(i) for i in range(200)]
    acq = out["acq_time"]
    assert len(set(acq)) == 200
    assert acq == sorted(acq)
    assert get(client, a.headers, cid, mid, m, T0, T0 + 1, get_last=True)["data"]["value"] == [
        199.0
    ]


def test_an_import_into_its_own_server_replaces_the_same_versions(
    client: TestClient, writer: tuple[int, int, Actor]
) -> None:
    """An export's rows carry each version's whole stamp: imported back (same time, origin,
    acq_time) they are those versions, not copies beside them."""
    cid, mid, a = writer
    m = moid("P+")
    for v in (1, 2, 3):
        put(client, a.headers, cid, mid, m, {"time": [T0], "value": [v]})
    out = get(client, a.headers, cid, mid, m, T0, T0 + 1)["data"]
    put(client, a.headers, cid, mid, m, out)
    assert get(client, a.headers, cid, mid, m, T0, T0 + 1)["data"] == out


def test_an_acq_time_from_the_future_is_refused(
    client: TestClient, writer: tuple[int, int, Actor]
) -> None:
    cid, mid, a = writer
    m = moid("P+")
    later = now_ms() + 3_600_000
    body = {"time": [T0, T0 + Q], "value": [1, 2], "acq_time": [T0, later]}
    r = client.put(data_url(cid, mid, m), json=body, headers=a.headers)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "acq_time", 1]
    many = [
        item(cid, mid, "P+", {"time": [T0], "value": [1]}),
        item(cid, mid, "P+", {"time": [T0], "value": [1], "acq_time": [later]}),
    ]
    r = client.put(MANY, json=many, headers=a.headers)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", 1, "data", "acq_time", 0]
    assert get(client, a.headers, cid, mid, m, T0 - Q, T0 + H)["data"]["time"] == []


def test_a_live_write_after_an_import_is_newer_than_it(
    client: TestClient, writer: tuple[int, int, Actor]
) -> None:
    """An import a little ahead of the server's clock (within its skew allowance) must not
    hide the live writes after it: the version clock moves past the import."""
    cid, mid, a = writer
    m = moid("P+")
    ahead = now_ms() + 30_000
    put(client, a.headers, cid, mid, m, {"time": [T0], "value": [1], "acq_time": [ahead]})
    put(client, a.headers, cid, mid, m, {"time": [T0], "value": [2]})
    out = get(client, a.headers, cid, mid, m, T0, T0 + 1)["data"]
    assert out["value"] == [1.0, 2.0]
    assert out["acq_time"][1] > ahead
    assert get(client, a.headers, cid, mid, m, T0, T0 + 1, get_last=True)["data"]["value"] == [2.0]


# --- values and times a read can give back (issue #14) ---------------------------------------


@pytest.mark.parametrize(
    ("raw_value", "kind"),
    [
        pytest.param("1e300", "INT", id="int-1e300"),
        pytest.param("18446744073709551616", "INT", id="int-2**64"),
        pytest.param("9007199254740993", "INT", id="int-2**53+1-rounds"),
        pytest.param("-9007199254740992", "INT", id="int--2**53"),
        pytest.param("1e300", "DBL", id="dbl-1e300"),
    ],
)
def test_values_the_wire_cannot_carry_back_are_refused(
    client: TestClient, writer: tuple[int, int, Actor], raw_value: str, kind: str
) -> None:
    cid, mid, a = writer
    m = moid("P+")
    one = f'{{"time": [{T0}, {T0 + Q}], "value": [1, {raw_value}], "type": ["INT", "{kind}"]}}'
    headers = {**a.headers, "content-type": "application/json"}
    r = client.put(data_url(cid, mid, m), content=one, headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "value", 1]
    many = f'[{{"client_cid": {cid}, "sensor_mid": {mid}, "signal_type_moid": {m}, "data": {one}}}]'
    r = client.put(MANY, content=many, headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", 0, "data", "value", 1]
    plain = f'{{"time": [{T0}], "value": [{raw_value}]}}'  # the fast path of plain items
    many = (
        f'[{{"client_cid": {cid}, "sensor_mid": {mid}, "signal_type_moid": {m}, "data": {plain}}}]'
    )
    if kind == "DBL":
        r = client.put(MANY, content=many, headers=headers)
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["body", 0, "data", "value", 0]
    assert get(client, a.headers, cid, mid, m, T0 - Q, T0 + H)["data"]["time"] == []


def test_the_largest_int_and_value_round_trip(
    client: TestClient, writer: tuple[int, int, Actor]
) -> None:
    cid, mid, a = writer
    m = moid("P+")
    big = 2**53 - 1
    body = {"time": [T0, T0 + Q, T0 + 2 * Q], "value": [big, -big, 1e250]}
    put(client, a.headers, cid, mid, m, {**body, "type": ["INT", "INT", "DBL"]})
    out = get(client, a.headers, cid, mid, m, T0, T0 + H)["data"]
    assert out["value"] == [big, -big, 1e250]
    # A read that adds them up stays finite (the bound leaves room for sums).
    assert get(client, a.headers, cid, mid, m, T0, T0 + H, delta_t=60)["data"]["value"] == [
        pytest.approx(1e250 / 3)
    ]


def test_a_conversion_on_write_beyond_what_is_stored_is_refused(
    client: TestClient, writer: tuple[int, int, Actor]
) -> None:
    cid, mid, a = writer
    m = moid("P+")  # kW
    r = client.put(
        data_url(cid, mid, m),
        json={"time": [T0, T0 + Q], "value": [1, 1e250]},
        params={"unit": "MW"},
        headers=a.headers,
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "value", 1]
    many = [item(cid, mid, "P+", {"time": [T0], "value": [2**52], "type": ["INT"]}, unit="W")]
    put(client, a.headers, cid, mid, m, {"time": [T0 + H], "value": [1]})
    many[0]["unit"] = "MW"
    r = client.put(MANY, json=many, headers=a.headers)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", 0, "data", "value", 0]
    assert get(client, a.headers, cid, mid, m, T0 - Q, T0 + 2 * H)["data"]["time"] == [T0 + H]


@pytest.mark.parametrize("t", [2**62, 2**63 - 1, -(2**62) - 1])
def test_times_no_read_can_ask_for_are_refused(
    client: TestClient, writer: tuple[int, int, Actor], t: int
) -> None:
    cid, mid, a = writer
    m = moid("P+")
    r = client.put(
        data_url(cid, mid, m), json={"time": [T0, t], "value": [1, 2]}, headers=a.headers
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "time", 1]
    r = client.put(
        MANY, json=[item(cid, mid, "P+", {"time": [t], "value": [1]})], headers=a.headers
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", 0, "data", "time", 0]
    cap = client.get(
        f"/api/sensors/{cid}.{mid}/signals/cap", params={"signal_type_moid": m}, headers=a.headers
    )
    assert cap.json() == {"cap_max": None}


def test_the_edges_of_the_time_range_are_written_and_read(
    client: TestClient, writer: tuple[int, int, Actor]
) -> None:
    cid, mid, a = writer
    m = moid("P+")
    lo, hi = -(2**62), 2**62 - 1
    put(client, a.headers, cid, mid, m, {"time": [lo, hi], "value": [1, 2]})
    assert get(client, a.headers, cid, mid, m, lo, lo + 1)["data"]["value"] == [1.0]
    assert get(client, a.headers, cid, mid, m, hi, 2**62)["data"]["value"] == [2.0]


# --- computed values rounded (issue #14) -----------------------------------------------------


def test_computed_values_are_rounded_to_15_significant_digits(
    client: TestClient, writer: tuple[int, int, Actor]
) -> None:
    cid, mid, a = writer
    p = moid("P+")  # kW, instantaneous
    put(
        client,
        a.headers,
        cid,
        mid,
        p,
        {"time": [T0, T0 + Q], "value": [0.7083, 12345.678901234567]},
    )
    units = {u["symbol"]: u["unit_id"] for u in client.get("/api/units", headers=a.headers).json()}
    w = get(client, a.headers, cid, mid, p, T0, T0 + H, output_unit_id=units["W"])["data"]
    assert w["value"] == [708.3, 12345678.9012346]  # 708.3000000000001 unrounded
    # Stored values come back exactly as written; only computed ones are rounded.
    assert get(client, a.headers, cid, mid, p, T0, T0 + H)["data"]["value"] == [
        0.7083,
        12345.678901234567,
    ]
    u = moid("U1")
    put(client, a.headers, cid, mid, u, {"time": [T0, T0 + Q], "value": [18.7, 18.9]})
    mean = get(client, a.headers, cid, mid, u, T0, T0 + H, delta_t=60)["data"]["value"]
    assert mean == [18.8]  # 18.799999999999997 unrounded
    # A conversion on write is a computed value too.
    put(client, a.headers, cid, mid, p, {"time": [T0 + 2 * Q], "value": [708.3]}, unit="W")
    assert get(client, a.headers, cid, mid, p, T0 + 2 * Q, T0 + H)["data"]["value"] == [0.7083]


def test_a_computed_value_that_overflows_is_a_422_not_null(
    client: TestClient, db: Database, writer: tuple[int, int, Actor]
) -> None:
    cid, mid, a = writer
    p = moid("P+")
    make_state(db, mid, T0 - H, None, info={"current_ratio": 1e30, "voltage_ratio": 1e30})
    put(client, a.headers, cid, mid, p, {"time": [T0, T0 + Q], "value": [1, 1e250]})
    r = client.get(
        data_url(cid, mid, p, v2=False),
        params={"since": T0, "till": T0 + H, "apply_multiplier": True},
        headers=a.headers,
    )
    assert r.status_code == 422, r.text
    assert str(T0 + Q) in r.json()["detail"][0]["msg"]
    body = [{"client_cid": cid, "sensor_mid": mid, "signal_type_moid": p, "since": T0,
             "till": T0 + H, "apply_multiplier": True}]  # fmt: skip
    r = client.post("/api/sensors/signals/data/v2", json=body, headers=a.headers)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][:2] == ["body", 0]


@pytest.mark.parametrize("delta_t", [15, 60, "month"])
def test_an_overflowed_multiplied_point_is_a_422_with_delta_t_too(
    client: TestClient, db: Database, writer: tuple[int, int, Actor], delta_t: int | str
) -> None:
    """The aggregate used to leave the overflowed point out: a bucket read [] (or a mean of
    the rest) with 200 where the same raw read answered 422 (black-box run after issue #14)."""
    cid, mid, a = writer
    p, a_plus = moid("P+"), moid("A+")
    make_state(db, mid, T0 - H, None, info={"current_ratio": 1e30, "voltage_ratio": 1e30})
    put(client, a.headers, cid, mid, p, {"time": [T0, T0 + Q], "value": [1, 1e250]})
    put(client, a.headers, cid, mid, a_plus, {"time": [T0, T0 + Q], "value": [1, 1e250]})
    for m in (p, a_plus):
        r = client.get(
            data_url(cid, mid, m, v2=False),
            params={"since": T0, "till": T0 + H, "apply_multiplier": True, "delta_t": delta_t},
            headers=a.headers,
        )
        assert r.status_code == 422, r.text
        assert str(T0 + Q) in r.json()["detail"][0]["msg"]
        body = [{"client_cid": cid, "sensor_mid": mid, "signal_type_moid": m, "since": T0,
                 "till": T0 + H, "apply_multiplier": True, "delta_t": delta_t}]  # fmt: skip
        r = client.post("/api/sensors/signals/data/v2", json=body, headers=a.headers)
        assert r.status_code == 422, r.text
    # Without the multiplier the same reads answer their values.
    r = client.get(
        data_url(cid, mid, p, v2=False),
        params={"since": T0, "till": T0 + H, "delta_t": 60},
        headers=a.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["value"] == [5e249]


def test_many_checks_the_token_before_the_body_and_in_the_write(
    client: TestClient, writer: tuple[int, int, Actor]
) -> None:
    # The multi-series PUT checks its caller in the write's own transaction: a wrong or
    # missing token is a 401 whatever the body (a bad one too), and stores nothing.
    cid, mid, a = writer
    good = [item(cid, mid, "P+", {"time": [T0], "value": [1.0]})]
    bad = [item(cid, mid, "P+", {"time": [T0], "value": ["x"]})]
    wrong = {"Authorization": "Bearer " + a.headers["Authorization"].split()[1][:-4] + "AAAA"}
    for url in (MANY, MANY_LEGACY):
        for body in (good, bad, b"{not json"):
            kw: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
            assert client.put(url, headers=wrong, **kw).status_code == 401
            assert client.put(url, **kw).status_code == 401
    assert values(client, a, cid, mid, "P+") == []
    assert client.put(MANY, json=bad, headers=a.headers).status_code == 422
    assert client.put(MANY, json=good, headers=a.headers).status_code == 200
    assert values(client, a, cid, mid, "P+") == [1.0]


@pytest.fixture
def quiet(database_url: str, db: Database) -> Iterator[TestClient]:
    """An app with no validation after writes: no worker merges anything behind the test."""
    settings = Settings(database_url=database_url, demo=False, validate_after_write=False)
    with TestClient(create_app(settings)) as c:
        yield c


def _pending(db: Database) -> int:
    with db.transaction(write=False, settle=False) as conn:
        return int(conn.execute(text("SELECT count(*) FROM pending")).scalar_one())


def test_puts_defer_their_points_and_the_next_read_merges_them(
    quiet: TestClient, db: Database
) -> None:
    """Both PUTs append to the write-ahead table (one row per series) and answer; the next
    read, of any series, merges everything pending first and sees every point."""
    cid, a = make_tenant(db, Role.write)
    mid = make_sensor(db, cid)
    put(quiet, a.headers, cid, mid, moid("P+"), {"time": [T0, T0 + Q], "value": [1.0, 2.0]})
    r = quiet.put(
        MANY,
        json=[
            item(cid, mid, "P+", {"time": [T0 + 2 * Q], "value": [3.0]}),
            item(cid, mid, "P-", {"time": [T0], "value": [4.0]}),
        ],
        headers=a.headers,
    )
    assert r.status_code == 200, r.text
    assert _pending(db) == 3
    body = get(quiet, a.headers, cid, mid, moid("P-"), T0, T0 + Q)
    assert body["data"]["value"] == [4.0]
    assert _pending(db) == 0  # the read merged the other series' rows too
    body = get(quiet, a.headers, cid, mid, moid("P+"), T0, T0 + H)
    assert body["data"]["value"] == [1.0, 2.0, 3.0]


def test_a_refused_put_leaves_nothing_pending(quiet: TestClient, db: Database) -> None:
    cid, a = make_tenant(db, Role.write)
    mid = make_sensor(db, cid)
    r = quiet.put(
        MANY,
        json=[
            item(cid, mid, "P+", {"time": [T0], "value": [1.0]}),
            item(cid, mid, "P+", {"time": [T0], "value": [1.0]}, unit="bogus"),
        ],
        headers=a.headers,
    )
    assert r.status_code == 422, r.text
    assert _pending(db) == 0
