"""Estimation graphs over HTTP: the spec's run route, run states and graph management."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from besmart_server.schemas.users import Role
from besmart_server.server.db import Database
from tests.api.sensor_helpers import loc_of
from tests.api.signal_helpers import get, make_sensor, moid, put
from tests.factories import Actor, make_tenant, make_user

RUN = "/api/tasks/graphs/run/name"
GRAPHS = "/api/tasks/graphs"
DAY = 86_400_000
Q = 900_000
T0 = 1_782_864_000_000  # 2026-07-01T00:00:00Z
EA_PLUS = 1011


@pytest.fixture
def tenant(db: Database) -> tuple[int, Actor]:
    return make_tenant(db, Role.write)


def _coarse_meter(client: TestClient, db: Database, cid: int, actor: Actor) -> int:
    """A meter with daily A+ register readings (kWh) at midnight, 3 days."""
    mid = make_sensor(db, cid, "coarse meter")
    times = [T0 + i * DAY for i in range(4)]
    put(client, actor.headers, cid, mid, moid("A+"), {"time": times, "value": [100, 112, 121, 135]})
    return mid


def _estimation_body(cid: int, mid: int, **over: Any) -> list[dict[str, Any]]:
    """The real service's estimation body, as its clients send it."""
    item: dict[str, Any] = {
        "client_cid": cid,
        "sensor_mid": mid,
        "profile_signal_moid": EA_PLUS,
        "profile_signal_freq_minutes": 15,
        "zone_signals_freq_minutes": 1440,
        "lat": 50.06,
        "lon": 19.94,
        "signal_discrepancy_tolerance_kWh": 0.5,
        "params": {
            "type": "PV",
            "power": 5.0,
            "inclination": 35,
            "orientation": 180,
            "efficiency": 0.9,
            "cut_in_speed": 3,
            "cut_out_speed": 25,
            "hub_height": 80,
        },
    }
    item.update(over)
    return [item]


def _run(client: TestClient, actor: Actor, name: str, body: Any, **params: Any) -> Any:
    query = {"graph_name": name, "since": T0 + DAY, "till": T0 + 2 * DAY, **params}
    return client.post(RUN, params=query, json=body, headers=actor.headers)


# --- the run route --------------------------------------------------------------------------


def test_estimation_with_the_real_service_body_answers_201_with_a_record(
    client: TestClient, db: Database, tenant: tuple[int, Actor]
) -> None:
    cid, actor = tenant
    mid = _coarse_meter(client, db, cid, actor)
    res = _run(client, actor, "estimation", _estimation_body(cid, mid))
    assert res.status_code == 201, res.text
    record = res.json()
    assert record["graph"] == "estimation"
    assert (record["since"], record["till"], record["items"]) == (T0 + DAY, T0 + 2 * DAY, 1)
    assert record["points_written"] == {f"{cid}.{mid}/{EA_PLUS}/4": 96}
    est = record["metrics"][0]["3:estimation"]
    assert est["within_tolerance"] is True
    assert record["run_id"] > 0
    assert record["duration_s"] > 0
    out = get(client, actor.headers, cid, mid, EA_PLUS, T0 + DAY, T0 + 2 * DAY)["data"]
    assert set(out["origin"]) == {4}
    assert set(out["acq_time"]) == {record["run_time"]}
    assert len(out["time"]) == 96
    assert sum(out["value"]) == pytest.approx(121 - 112, abs=1e-6)  # the day's reading


def test_a_rerun_adds_a_newer_version(
    client: TestClient, db: Database, tenant: tuple[int, Actor]
) -> None:
    cid, actor = tenant
    mid = _coarse_meter(client, db, cid, actor)
    first = _run(client, actor, "estimation", _estimation_body(cid, mid)).json()
    time.sleep(0.002)
    second = _run(client, actor, "estimation", _estimation_body(cid, mid)).json()
    assert second["run_time"] > first["run_time"]
    every = get(client, actor.headers, cid, mid, EA_PLUS, T0 + DAY, T0 + 2 * DAY)["data"]
    assert len(every["time"]) == 2 * 96
    newest = get(client, actor.headers, cid, mid, EA_PLUS, T0 + DAY, T0 + 2 * DAY, get_last=True)
    assert set(newest["data"]["acq_time"]) == {second["run_time"]}


def test_balance_closes_and_writes_the_residual_with_origin_3(
    client: TestClient, db: Database, tenant: tuple[int, Actor]
) -> None:
    cid, actor = tenant
    node = make_sensor(db, cid, "transformer")
    residual = make_sensor(db, cid, "losses")
    kids = []
    for name in ("m1", "m2"):
        kids.append(make_sensor(db, cid, name))
    with db.transaction() as conn:
        from sqlalchemy import update

        from besmart_server.server.sensors.tables import sensors

        conn.execute(
            update(sensors)
            .where(sensors.c.mid.in_(kids))
            .values(node_id=node, balance_calculation=True)
        )
    grid = [T0 + DAY + i * Q for i in range(97)]
    rng = np.random.default_rng(1)
    loads = [np.cumsum(rng.uniform(0, 2, 97)) for _ in kids]
    for mid, reg in zip(kids, loads, strict=True):
        put(client, actor.headers, cid, mid, moid("A+"), {"time": grid, "value": reg.tolist()})
    parent = (loads[0] + loads[1]) * 1.03
    put(client, actor.headers, cid, node, moid("A+"), {"time": grid, "value": parent.tolist()})
    body = {"client_cid": cid, "node_mid": node, "residual_sensor_mid": residual}
    res = _run(client, actor, "balance", body)
    assert res.status_code == 201, res.text
    m = res.json()["metrics"][0]["0:balance"]
    assert m["children"] == sorted(kids)
    assert m["intervals"] == 96
    assert m["input_kWh"] == pytest.approx(m["outputs_kWh"] + m["residual_kWh"], rel=1e-9)
    out = get(client, actor.headers, cid, residual, EA_PLUS, T0 + DAY, T0 + 2 * DAY)["data"]
    assert set(out["origin"]) == {3}
    assert sum(out["value"]) == pytest.approx(m["residual_kWh"], rel=1e-9)


def test_unknown_graph_is_404_with_a_json_string(
    client: TestClient, tenant: tuple[int, Actor]
) -> None:
    _, actor = tenant
    res = _run(client, actor, "no-such-graph", {})
    assert res.status_code == 404
    assert isinstance(res.json(), str)


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        pytest.param({"client_cid": None}, ["body", 0, "client_cid"], id="missing-template"),
        pytest.param(
            {"params": {"type": "PV", "power": "lots"}},
            ["nodes", 2, "params", "power"],
            id="ill-typed",
        ),
        pytest.param(
            {"params": {"type": "solar-sail", "power": 1}},
            ["nodes", 2, "params", "type"],
            id="bad-literal",
        ),
    ],
)
def test_validation_422_names_node_and_parameter(
    client: TestClient,
    db: Database,
    tenant: tuple[int, Actor],
    change: dict[str, Any],
    loc: list[Any],
) -> None:
    cid, actor = tenant
    mid = make_sensor(db, cid)
    body = _estimation_body(cid, mid, **change)
    if change.get("client_cid", 0) is None:
        del body[0]["client_cid"]
    assert loc_of(_run(client, actor, "estimation", body)) == loc


def test_an_empty_window_is_422_before_anything_runs(
    client: TestClient, db: Database, tenant: tuple[int, Actor]
) -> None:
    cid, actor = tenant
    mid = make_sensor(db, cid)
    res = _run(client, actor, "estimation", _estimation_body(cid, mid), since=T0, till=T0)
    assert loc_of(res) == ["query", "since"]


def test_a_reader_may_not_run_a_graph_that_writes(
    client: TestClient, db: Database, tenant: tuple[int, Actor]
) -> None:
    cid, owner = tenant
    mid = _coarse_meter(client, db, cid, owner)
    reader = make_user(db, roles={cid: Role.read})
    res = _run(client, reader, "estimation", _estimation_body(cid, mid))
    assert res.status_code == 403
    assert get(client, owner.headers, cid, mid, EA_PLUS, T0, T0 + 4 * DAY)["data"]["time"] == []


def test_another_tenants_sensor_is_404(
    client: TestClient, db: Database, tenant: tuple[int, Actor]
) -> None:
    cid, owner = tenant
    mid = _coarse_meter(client, db, cid, owner)
    _, stranger = make_tenant(db, Role.owner)
    res = _run(client, stranger, "estimation", _estimation_body(cid, mid))
    assert res.status_code == 404
    assert isinstance(res.json(), str)


def test_anonymous_is_401(client: TestClient) -> None:
    assert client.post(RUN, params={"graph_name": "estimation"}, json={}).status_code == 401
    assert client.get(GRAPHS).status_code == 401


def test_async_run_answers_202_and_its_state_is_readable_by_its_clients_readers(
    client: TestClient, db: Database, tenant: tuple[int, Actor]
) -> None:
    cid, actor = tenant
    mid = _coarse_meter(client, db, cid, actor)
    res = _run(client, actor, "estimation", _estimation_body(cid, mid), task_async=True)
    assert res.status_code == 202, res.text
    run_id = res.json()["run_id"]
    deadline = time.monotonic() + 60
    while True:
        status = client.get(f"/api/tasks/runs/{run_id}", headers=actor.headers)
        assert status.status_code == 200, status.text
        if status.json()["state"] in ("done", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    body = status.json()
    assert body["state"] == "done", body
    assert body["executor"] == "inprocess"
    assert body["record"]["points_written"] == {f"{cid}.{mid}/{EA_PLUS}/4": 96}
    reader = make_user(db, roles={cid: Role.read})
    seen = client.get(f"/api/tasks/runs/{run_id}", headers=reader.headers)
    assert seen.status_code == 200
    assert seen.json()["clients"] == [cid]
    _, stranger = make_tenant(db, Role.owner)
    assert client.get(f"/api/tasks/runs/{run_id}", headers=stranger.headers).status_code == 404
    assert client.get("/api/tasks/runs/999999", headers=actor.headers).status_code == 404


def test_a_failing_run_is_recorded_as_failed(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.owner)
    mid = _coarse_meter(client, db, cid, actor)
    # Valid and authorized, but its source signal type does not exist: fails while running.
    graph = {
        "nodes": [
            {
                "function": "signals",
                "params": {"client_cid": cid, "sensor_mid": mid, "moid": 99999},
            },
            {
                "function": "write",
                "params": {"client_cid": cid, "sensor_mid": mid, "moid": EA_PLUS, "origin": 4},
            },
        ],
        "edges": [{"from": 0, "to": 1}],
    }
    put_res = client.put(
        f"{GRAPHS}/bad-source", params={"client_cid": cid}, json=graph, headers=actor.headers
    )
    assert put_res.status_code == 201, put_res.text
    res = _run(client, actor, "bad-source", {})
    assert res.status_code == 404  # the unknown signal type, as a read would answer
    runs = client.get(f"/api/tasks/runs/{_last_run_id(db)}", headers=actor.headers).json()
    assert runs["state"] == "failed"
    assert "99999" in runs["error"]


def _last_run_id(db: Database) -> int:
    from sqlalchemy import func, select

    from besmart_server.server.graphs.tables import graph_runs

    with db.transaction(write=False) as conn:
        return int(conn.scalar(select(func.max(graph_runs.c.id))) or 0)


# --- graph management -----------------------------------------------------------------------


def _scale_graph(cid: int, mid: int) -> dict[str, Any]:
    src = {"client_cid": cid, "sensor_mid": mid, "moid": {"$param": "moid", "default": 32}}
    return {
        "nodes": [
            {"function": "signals", "params": {**src, "delta_t": 15, "energy_per_interval": True}},
            {"function": "scale", "params": {"factor": {"$param": "factor", "default": 2.0}}},
            {
                "function": "write",
                "params": {"client_cid": cid, "sensor_mid": mid, "moid": EA_PLUS, "origin": 3},
            },
        ],
        "edges": [{"from": 0, "to": 1}, {"from": 1, "to": 2}],
    }


def test_list_shows_shipped_graphs_and_own_ones(
    client: TestClient, db: Database, tenant: tuple[int, Actor]
) -> None:
    cid, actor = tenant
    owner = make_user(db, roles={cid: Role.owner})
    mid = make_sensor(db, cid)
    assert (
        client.put(
            f"{GRAPHS}/mine",
            params={"client_cid": cid},
            json=_scale_graph(cid, mid),
            headers=owner.headers,
        ).status_code
        == 201
    )
    listed = client.get(GRAPHS, headers=actor.headers).json()
    names = [g["name"] for g in listed]
    assert {"estimation", "pv_forecast", "load_forecast", "balance", "gap_fill"} <= set(names)
    assert "mine" in names
    mine = next(g for g in listed if g["name"] == "mine")
    assert (mine["owner_cid"], mine["shipped"]) == (cid, False)
    _, stranger = make_tenant(db)
    assert "mine" not in [g["name"] for g in client.get(GRAPHS, headers=stranger.headers).json()]
    shipped = client.get(f"{GRAPHS}/estimation", headers=stranger.headers)
    assert shipped.status_code == 200
    assert shipped.json()["shipped"] is True
    assert shipped.json()["definition"]["nodes"][0]["function"] == "signals"


def test_put_get_run_replace_delete(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db, Role.owner)
    mid = make_sensor(db, cid)
    put(
        client,
        owner.headers,
        cid,
        mid,
        moid("A+"),
        {"time": [T0 + DAY + i * Q for i in range(5)], "value": [0, 1, 3, 6, 10]},
    )
    url = f"{GRAPHS}/doubler"
    created = client.put(
        url, params={"client_cid": cid}, json=_scale_graph(cid, mid), headers=owner.headers
    )
    assert created.status_code == 201, created.text
    assert created.json()["owner_cid"] == cid
    res = _run(client, owner, "doubler", {"factor": 3.0})
    assert res.status_code == 201, res.text
    out = get(client, owner.headers, cid, mid, EA_PLUS, T0 + DAY, T0 + 2 * DAY)["data"]
    assert out["value"] == [3.0, 6.0, 9.0, 12.0]
    assert set(out["origin"]) == {3}
    replaced = client.put(url, json=_scale_graph(cid, mid), headers=owner.headers)
    assert replaced.status_code == 200
    assert client.get(url, headers=owner.headers).status_code == 200
    assert client.delete(url, headers=owner.headers).status_code == 204
    assert client.get(url, headers=owner.headers).status_code == 404
    assert _run(client, owner, "doubler", {}).status_code == 404


def test_management_rules(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db, Role.owner)
    writer = make_user(db, roles={cid: Role.write})
    mid = make_sensor(db, cid)
    url = f"{GRAPHS}/g1"
    assert (
        client.put(
            url, params={"client_cid": cid}, json=_scale_graph(cid, mid), headers=writer.headers
        ).status_code
        == 403
    )
    assert (
        client.put(
            url, params={"client_cid": cid}, json=_scale_graph(cid, mid), headers=owner.headers
        ).status_code
        == 201
    )
    assert client.get(url, headers=writer.headers).status_code == 200
    assert client.delete(url, headers=writer.headers).status_code == 403
    scid, stranger = make_tenant(db, Role.owner)
    assert client.get(url, headers=stranger.headers).status_code == 404
    assert client.delete(url, headers=stranger.headers).status_code == 404
    # names are per client: another tenant cannot take it over through the owner's client...
    assert (
        client.put(
            url, params={"client_cid": cid}, json=_scale_graph(cid, mid), headers=stranger.headers
        ).status_code
        == 404
    )
    # ...and storing its own graph of that name leaves the owner's untouched
    smid = make_sensor(db, scid)
    theirs = client.put(
        url, params={"client_cid": scid}, json=_scale_graph(scid, smid), headers=stranger.headers
    )
    assert theirs.status_code == 201
    assert client.get(url, headers=stranger.headers).json()["owner_cid"] == scid
    mine = client.get(url, headers=owner.headers).json()
    assert mine["owner_cid"] == cid
    assert mine["definition"] == _scale_graph(cid, mid)
    # shipped graphs: reserved names, not deletable
    assert (
        client.put(
            f"{GRAPHS}/estimation",
            params={"client_cid": cid},
            json=_scale_graph(cid, mid),
            headers=owner.headers,
        ).status_code
        == 409
    )
    assert client.delete(f"{GRAPHS}/estimation", headers=owner.headers).status_code == 403
    # a new graph needs its client (admins may store system graphs without one)
    assert loc_of(
        client.put(f"{GRAPHS}/g2", json=_scale_graph(cid, mid), headers=owner.headers)
    ) == ["query", "client_cid"]
    admin = make_user(db, admin=True)
    system = client.put(f"{GRAPHS}/g2", json=_scale_graph(cid, mid), headers=admin.headers)
    assert system.status_code == 201
    assert system.json()["owner_cid"] is None
    assert client.get(f"{GRAPHS}/g2", headers=stranger.headers).status_code == 200
    assert client.delete(f"{GRAPHS}/g2", headers=owner.headers).status_code == 403
    assert client.delete(f"{GRAPHS}/g2", headers=admin.headers).status_code == 204


@pytest.mark.parametrize(
    ("graph", "loc"),
    [
        pytest.param(
            {"nodes": [{"function": "nope"}]}, ["body", "nodes", 0, "function"], id="function"
        ),
        pytest.param(
            {"nodes": [{"function": "scale", "params": {"factor": "x"}}]},
            ["body", "nodes", 0, "params", "factor"],
            id="param-type",
        ),
        pytest.param(
            {
                "nodes": [{"function": "scale", "params": {}}, {"function": "scale", "params": {}}],
                "edges": [{"from": 0, "to": 1}, {"from": 1, "to": 0}],
            },
            ["body", "edges", 0],
            id="cycle",
        ),
    ],
)
def test_put_validates_the_graph(
    client: TestClient, db: Database, graph: dict[str, Any], loc: list[Any]
) -> None:
    cid, owner = make_tenant(db, Role.owner)
    res = client.put(
        f"{GRAPHS}/broken", params={"client_cid": cid}, json=graph, headers=owner.headers
    )
    assert loc_of(res) == loc
    assert client.get(f"{GRAPHS}/broken", headers=owner.headers).status_code == 404


def test_written_values_keep_15_significant_digits(client: TestClient, db: Database) -> None:
    """A graph's computed values are stored rounded as a read's are (issue #14, item 21):
    0.1 kWh x 3 is 0.3, not 0.30000000000000004; the balance residual alike."""
    cid, owner = make_tenant(db, Role.owner)
    mid = make_sensor(db, cid)
    times = [T0 + DAY + i * Q for i in range(5)]
    put(
        client,
        owner.headers,
        cid,
        mid,
        moid("A+"),
        {"time": times, "value": [0, 0.1, 0.2, 0.3, 0.4]},
    )
    graph = _scale_graph(cid, mid)
    graph["nodes"][0]["params"]["delta_t"] = 15
    assert (
        client.put(
            f"{GRAPHS}/tripler", params={"client_cid": cid}, json=graph, headers=owner.headers
        ).status_code
        == 201
    )
    res = _run(client, owner, "tripler", {"factor": 3.0})
    assert res.status_code == 201, res.text
    out = get(client, owner.headers, cid, mid, EA_PLUS, T0 + DAY, T0 + 2 * DAY)["data"]
    assert out["value"] == [0.3, 0.3, 0.3, 0.3]


def test_balance_residual_is_rounded_at_its_operands_scale(
    client: TestClient, db: Database, tenant: tuple[int, Actor]
) -> None:
    """parent - Σ children cancels leading digits, not the float noise: the residual keeps 15
    significant digits of the operands (demo: 0.0904749999999999 for 0.090475; black-box run
    after issue #14)."""
    cid, actor = tenant
    node = make_sensor(db, cid, "transformer")
    residual = make_sensor(db, cid, "losses")
    kids = [make_sensor(db, cid, "m1"), make_sensor(db, cid, "m2")]
    with db.transaction() as conn:
        from sqlalchemy import update

        from besmart_server.server.sensors.tables import sensors

        conn.execute(
            update(sensors)
            .where(sensors.c.mid.in_(kids))
            .values(node_id=node, balance_calculation=True)
        )
    grid = [T0 + DAY + i * Q for i in range(3)]
    ea = moid("EA+")
    put(client, actor.headers, cid, kids[0], ea, {"time": grid, "value": [1.1, 0.1, 2.2345]})
    put(client, actor.headers, cid, kids[1], ea, {"time": grid, "value": [2.2, 0.2, 1.211]})
    put(client, actor.headers, cid, node, ea, {"time": grid, "value": [3.5361, 0.3, 3.5361]})
    body = {"client_cid": cid, "node_mid": node, "residual_sensor_mid": residual, "moid": ea}
    res = _run(client, actor, "balance", body)
    assert res.status_code == 201, res.text
    out = get(client, actor.headers, cid, residual, EA_PLUS, T0 + DAY, T0 + 2 * DAY)["data"]
    assert out["value"] == [0.2361, 0.0, 0.0906]


def test_difference_is_rounded_at_its_operands_scale(client: TestClient, db: Database) -> None:
    """The `difference` operator rounds as the balance residual does."""
    cid, owner = make_tenant(db, Role.owner)
    a_mid, b_mid, out_mid = (make_sensor(db, cid, n) for n in ("a", "b", "out"))
    grid = [T0 + DAY + i * Q for i in range(2)]
    ea = moid("EA+")
    put(client, owner.headers, cid, a_mid, ea, {"time": grid, "value": [3.5361, 0.3]})
    put(client, owner.headers, cid, b_mid, ea, {"time": grid, "value": [3.4456, 0.1]})
    src = {"client_cid": cid, "moid": ea}
    graph = {
        "nodes": [
            {"function": "signals", "params": {**src, "sensor_mid": a_mid}},
            {"function": "signals", "params": {**src, "sensor_mid": b_mid}},
            {"function": "difference", "params": {}},
            {
                "function": "write",
                "params": {"client_cid": cid, "sensor_mid": out_mid, "moid": ea, "origin": 3},
            },
        ],
        "edges": [{"from": 0, "to": 2}, {"from": 1, "to": 2}, {"from": 2, "to": 3}],
    }
    put_res = client.put(
        f"{GRAPHS}/diff", params={"client_cid": cid}, json=graph, headers=owner.headers
    )
    assert put_res.status_code == 201, put_res.text
    res = _run(client, owner, "diff", {})
    assert res.status_code == 201, res.text
    out = get(client, owner.headers, cid, out_mid, ea, T0 + DAY, T0 + 2 * DAY)["data"]
    assert out["value"] == [0.0905, 0.2]


def _load_history(client: TestClient, cid: int, mid: int, actor: Actor, days: int) -> None:
    """A+ register readings every 15 minutes from T0 - days: a daily shape plus noise."""
    t = np.arange(T0 - days * DAY, T0 + DAY, Q, dtype=np.int64)
    hours = (t % DAY) / 3_600_000
    kw = 1.0 + 0.8 * np.exp(-(((hours - 19) / 2.5) ** 2))
    kw = kw + np.random.default_rng(3).normal(0, 0.2, t.shape)
    counter = 1000 + np.cumsum(np.clip(kw, 0, None) * 0.25)
    body = {"time": t.tolist(), "value": counter.tolist()}
    put(client, actor.headers, cid, mid, moid("A+"), body)


@pytest.mark.parametrize("band", [False, True])
def test_load_forecast_band_writes_p10_and_p90_as_series_of_their_own(
    client: TestClient, db: Database, tenant: tuple[int, Actor], band: bool
) -> None:
    cid, actor = tenant
    mid = make_sensor(db, cid, "load meter")
    _load_history(client, cid, mid, actor, 21)
    body = {"client_cid": cid, "sensor_mid": mid, "band": band}
    res = _run(client, actor, "load_forecast", body)
    assert res.status_code == 201, res.text
    record = res.json()
    p10, p90 = moid("EA+_P10"), moid("EA+_P90")
    bands = {f"{cid}.{mid}/{p10}/2": 96, f"{cid}.{mid}/{p90}/2": 96} if band else {}
    assert record["points_written"] == {f"{cid}.{mid}/{EA_PLUS}/2": 96, **bands}
    assert record["warnings"] == []

    def values(m: int) -> Any:
        out = get(client, actor.headers, cid, mid, m, T0 + DAY, T0 + 2 * DAY)["data"]
        assert set(out["origin"]) <= {2}
        return np.asarray(out["value"], dtype=float)

    mid_ = values(EA_PLUS)
    assert len(mid_) == 96
    if not band:
        assert len(values(p10)) == len(values(p90)) == 0
        return
    low, high = values(p10), values(p90)
    assert (low <= mid_).all()
    assert (mid_ <= high).all()
    assert (high - low).mean() > 0.01  # a band, not three copies of the P50
