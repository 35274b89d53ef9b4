"""Graph runs under bad and edge inputs (issue #14): every fault is a clear 4xx that changes
nothing, a run that fails is recorded as failed with nothing written, run records are plain
JSON, and readers of a run's clients see it."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from besmart_server.schemas.users import Role
from besmart_server.server.access import Principal
from besmart_server.server.config import Settings
from besmart_server.server.db import Database, now_ms
from besmart_server.server.graphs import service
from besmart_server.server.graphs.builtin import BUILTIN
from besmart_server.server.graphs.operators import REGISTRY
from besmart_server.server.graphs.tables import graph_runs
from besmart_server.server.sensors.tables import sensors
from tests.api.sensor_helpers import loc_of
from tests.api.signal_helpers import get, make_sensor, moid, put
from tests.factories import Actor, make_tenant, make_user

RUN = "/api/tasks/graphs/run/name"
GRAPHS = "/api/tasks/graphs"
RUNS = "/api/tasks/runs"
DAY = 86_400_000
Q = 900_000
T0 = 1_782_864_000_000  # 2026-07-01T00:00:00Z
EA_PLUS, P_PLUS, A_PLUS, U1 = 1011, 1001, 32, 53


@pytest.fixture
def owner(db: Database) -> tuple[int, Actor]:
    return make_tenant(db, Role.owner)


def _run(client: TestClient, actor: Actor, name: str, body: Any, **params: Any) -> Any:
    query = {"graph_name": name, "since": T0, "till": T0 + DAY, **params}
    return client.post(RUN, params=query, json=body, headers=actor.headers)


def _power_with_a_gap(client: TestClient, db: Database, cid: int, actor: Actor) -> int:
    """A sensor with a day of 15-minute P+ (kW) and A+ readings, 10 intervals missing."""
    mid = make_sensor(db, cid, "gappy")
    times = [T0 + i * Q for i in range(96) if not 40 <= i < 50]
    put(client, actor.headers, cid, mid, P_PLUS, {"time": times, "value": [2.0] * len(times)})
    put(
        client,
        actor.headers,
        cid,
        mid,
        A_PLUS,
        {"time": times, "value": [float(i) for i in range(len(times))]},
    )
    return mid


def _store(client: TestClient, actor: Actor, cid: int, name: str, graph: Any) -> None:
    res = client.put(
        f"{GRAPHS}/{name}", params={"client_cid": cid}, json=graph, headers=actor.headers
    )
    assert res.status_code == 201, res.text


def _runs_in(db: Database) -> list[tuple[str, str | None]]:
    with db.transaction(write=False) as conn:
        rows = conn.execute(
            select(graph_runs.c.state, graph_runs.c.error).order_by(graph_runs.c.id)
        )
        return [(r.state, r.error) for r in rows]


def _wait(client: TestClient, actor: Actor, run_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        status = client.get(f"{RUNS}/{run_id}", headers=actor.headers).json()
        if status["state"] in ("done", "failed") or time.monotonic() > deadline:
            return dict(status)
        time.sleep(0.05)


# --- item 7: run records, failed runs --------------------------------------------------------


@pytest.mark.parametrize("task_async", [False, True], ids=["sync", "async"])
def test_gap_fill_is_done_and_its_record_is_plain_json(
    client: TestClient, db: Database, owner: tuple[int, Actor], task_async: bool
) -> None:
    cid, actor = owner
    mid = _power_with_a_gap(client, db, cid, actor)
    body = {"client_cid": cid, "sensor_mid": mid, "moid": P_PLUS}
    res = _run(client, actor, "gap_fill", body, task_async=task_async)
    assert res.status_code == (202 if task_async else 201), res.text
    status = _wait(client, actor, res.json()["run_id"])
    assert status["state"] == "done", status
    record = status["record"]
    assert record["points_written"] == {f"{cid}.{mid}/{P_PLUS}/4": 10}
    assert record["metrics"][0]["1:gap_fill"] == {
        "gaps": 1,
        "linear": 0,
        "like_day": 0,
        "shaped": 10,
        "unfilled": 0,
    }
    if not task_async:
        assert res.json() == record  # the answer is the stored record, value for value
    filled = get(client, actor.headers, cid, mid, P_PLUS, T0, T0 + DAY, signal_origin_id=4)
    assert filled["data"]["time"] == [T0 + i * Q for i in range(40, 50)]


def test_two_runs_started_in_one_millisecond_store_two_versions(
    client: TestClient, db: Database, owner: tuple[int, Actor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run stamps its points with its run_time; two runs over one series that took the
    same millisecond as their run_time (two workers at once; here a clock held still) get
    different ones, each its own version, and each record names the acq_time stored."""
    cid, actor = owner
    mid = _power_with_a_gap(client, db, cid, actor)
    held = time.time()
    monkeypatch.setattr(time, "time", lambda: held)
    body = {"client_cid": cid, "sensor_mid": mid, "moid": P_PLUS}
    records = []
    for _ in range(2):
        res = _run(client, actor, "gap_fill", body)
        assert res.status_code == 201, res.text
        records.append(res.json())
    stamps = [r["run_time"] for r in records]
    assert stamps == [int(held * 1000), int(held * 1000) + 1]
    filled = T0 + 40 * Q
    versions = get(client, actor.headers, cid, mid, P_PLUS, filled, filled + 1, raw="true",
                   signal_origin_id=4)["data"]  # fmt: skip
    assert sorted(versions["acq_time"]) == stamps


def test_a_run_whose_writes_fail_half_way_is_failed_and_wrote_nothing(
    client: TestClient, db: Database, owner: tuple[int, Actor]
) -> None:
    cid, actor = owner
    mid = _power_with_a_gap(client, db, cid, actor)
    energy = {"client_cid": cid, "sensor_mid": mid, "moid": A_PLUS, "delta_t": 15}
    target = {"client_cid": cid, "sensor_mid": mid, "origin": 3}
    graph = {
        "nodes": [
            {"function": "signals", "params": {**energy, "energy_per_interval": True}},
            {"function": "write", "params": {**target, "moid": EA_PLUS}},  # stored first
            {"function": "write", "params": {**target, "moid": 99999}},  # no such type: fails
        ],
        "edges": [{"from": 0, "to": 1}, {"from": 0, "to": 2}],
    }
    _store(client, actor, cid, "two-targets", graph)
    res = _run(client, actor, "two-targets", {})
    assert res.status_code == 404, res.text
    [(state, error)] = _runs_in(db)
    assert state == "failed"
    assert error is not None
    assert "99999" in error
    assert get(client, actor.headers, cid, mid, EA_PLUS, T0, T0 + DAY)["data"]["time"] == []


def test_a_run_stopped_by_a_time_limit_is_failed(
    db: Database, owner: tuple[int, Actor], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dramatiq.middleware.time_limit import TimeLimitExceeded

    cid, _ = owner
    mid = make_sensor(db, cid)
    principal = Principal(user_id=None, login="cli", is_admin=True)
    body = {"client_cid": cid, "sensor_mid": mid, "moid": P_PLUS}
    with db.transaction(write=False) as conn:
        plan = service.plan_run(conn, principal, "gap_fill", T0, T0 + DAY, body)
    with db.transaction() as conn:
        run_id = service.create_run(conn, principal, plan, executor="dramatiq")

    def out_of_time(*args: Any, **kwargs: Any) -> Any:
        raise TimeLimitExceeded  # what dramatiq raises in a worker thread: a BaseException

    monkeypatch.setattr(service.engine, "run", out_of_time)
    with pytest.raises(TimeLimitExceeded):
        service.execute(db, run_id, principal, settings=settings)
    [(state, error)] = _runs_in(db)
    assert state == "failed"
    assert error == "TimeLimitExceeded: "


# --- item 8: windows, units, time zones -------------------------------------------------------


@pytest.mark.parametrize(
    ("since", "till", "loc"),
    [
        (-(2**62), T0, ["query", "since"]),
        (T0, 2**62, ["query", "till"]),
        (2**62 - 1, 2**62, ["query", "since"]),
        (-(2**63), 2**63 - 1, ["query", "since"]),
    ],
)
@pytest.mark.parametrize("task_async", [False, True], ids=["sync", "async"])
def test_windows_beyond_calendar_time_are_422(
    client: TestClient,
    db: Database,
    owner: tuple[int, Actor],
    since: int,
    till: int,
    loc: list[str],
    task_async: bool,
) -> None:
    cid, actor = owner
    mid = make_sensor(db, cid)
    for name in BUILTIN:
        body = {"client_cid": cid, "sensor_mid": mid, "node_mid": mid, "moid": P_PLUS}
        res = _run(client, actor, name, body, since=since, till=till, task_async=task_async)
        assert loc_of(res) == loc, (name, res.text)
    assert _runs_in(db) == []


def test_windows_and_lookbacks_longer_than_max_window_days_are_413(
    client: TestClient, db: Database, owner: tuple[int, Actor], settings: Settings
) -> None:
    cid, actor = owner
    mid = make_sensor(db, cid)
    days = settings.max_window_days
    body = {"client_cid": cid, "sensor_mid": mid, "moid": P_PLUS}
    too_long = _run(client, actor, "gap_fill", body, till=T0 + (days + 1) * DAY)
    assert too_long.status_code == 413
    assert "max_window_days" in too_long.json()["detail"]
    # the window fits, the day of context before it does not
    widened = _run(client, actor, "gap_fill", body, till=T0 + days * DAY)
    assert widened.status_code == 413
    assert "lookback_minutes" in widened.json()["detail"]
    # a lookback reaching before 1900
    far = _run(client, actor, "gap_fill", {**body, "context_minutes": 300 * 366 * 1440})
    assert loc_of(far) == ["nodes", 0, "params", "lookback_minutes"]
    assert _runs_in(db) == []


@pytest.mark.parametrize("symbol", ["U1", "I1", "F", "R1", "Q+", "T_AIR"])
def test_balance_of_a_signal_that_is_not_active_energy_or_power_is_422(
    client: TestClient, db: Database, owner: tuple[int, Actor], symbol: str
) -> None:
    cid, actor = owner
    node, residual = make_sensor(db, cid, "node"), make_sensor(db, cid, "residual")
    body = {"client_cid": cid, "node_mid": node, "residual_sensor_mid": residual}
    res = _run(client, actor, "balance", {**body, "moid": moid(symbol)})
    assert loc_of(res) == ["nodes", 0, "params", "moid"]
    assert symbol in res.json()["detail"][0]["msg"]
    assert _runs_in(db) == []
    # the same holds for a signals node reading energy per interval
    graph = {
        "nodes": [
            {
                "function": "signals",
                "params": {
                    "client_cid": cid,
                    "sensor_mid": node,
                    "moid": moid(symbol),
                    "delta_t": 15,
                    "energy_per_interval": True,
                },
            }
        ]
    }
    stored = client.put(
        f"{GRAPHS}/e", params={"client_cid": cid}, json=graph, headers=actor.headers
    )
    assert loc_of(stored) == ["body", "nodes", 0, "params", "moid"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timezone", "Mars/Olympus_Mons"),
        ("timezone", ""),
        ("timezone", "localtime"),
        ("country", "XX"),
    ],
)
def test_unknown_time_zones_and_countries_are_422_naming_the_parameter(
    client: TestClient, db: Database, owner: tuple[int, Actor], field: str, value: str
) -> None:
    cid, actor = owner
    mid = make_sensor(db, cid)
    if field == "timezone":
        body = {"client_cid": cid, "sensor_mid": mid, "timezone": value}
        assert loc_of(_run(client, actor, "load_forecast", body)) == ["nodes", 2, "params", field]
        estimation = {**body, "zone_signals_freq_minutes": 1440, "params": {"type": None}}
        assert loc_of(_run(client, actor, "estimation", [estimation])) == [
            "nodes",
            1,
            "params",
            field,
        ]
    for function in ("profile", "forecast_load", "gap_fill"):
        if field not in REGISTRY[function].params.model_fields:
            continue
        inputs = REGISTRY[function].min_inputs
        source = {"function": "profile", "params": {}}
        graph = {
            "nodes": [source] * inputs + [{"function": function, "params": {field: value}}],
            "edges": [{"from": i, "to": inputs} for i in range(inputs)],
        }
        res = client.put(
            f"{GRAPHS}/tz", params={"client_cid": cid}, json=graph, headers=actor.headers
        )
        assert loc_of(res) == ["body", "nodes", inputs, "params", field], function
    assert _runs_in(db) == []


# --- no built-in graph or operator answers 5xx to bad values ----------------------------------

BAD_VALUES: list[Any] = [None, -1, 0, 2**31, 2**62, 2**64, 10**30, 1e308, "x", [], {}, True]


def _template_paths(value: Any) -> set[str]:
    if isinstance(value, dict):
        if "$param" in value:
            return {str(value["$param"])}
        return set().union(*(_template_paths(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_template_paths(v) for v in value))
    return set()


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_no_bad_body_value_of_a_shipped_graph_answers_5xx(
    client: TestClient, db: Database, owner: tuple[int, Actor], name: str
) -> None:
    cid, actor = owner
    mid = _power_with_a_gap(client, db, cid, actor)
    base = {
        "client_cid": cid,
        "sensor_mid": mid,
        "node_mid": mid,
        "residual_sensor_mid": mid,
        "moid": P_PLUS,
        "lat": 50.0,
        "lon": 19.9,
        "params": {"power": 5.0},
    }
    for path in sorted(_template_paths(BUILTIN[name])):
        for bad in [*BAD_VALUES, "NaN", "Infinity"]:
            body: dict[str, Any] = json.loads(json.dumps(base))
            *parents, leaf = path.split(".")
            into = body
            for part in parents:
                into = into.setdefault(part, {})
            into[leaf] = "__BAD__" if isinstance(bad, str) and bad[0].isupper() else bad
            raw = json.dumps(body).replace('"__BAD__"', str(bad))
            res = client.post(
                RUN,
                params={"graph_name": name, "since": T0, "till": T0 + DAY},
                content=raw,
                headers={**actor.headers, "content-type": "application/json"},
            )
            assert res.status_code < 500, (path, bad, res.text)
    with db.transaction(write=False) as conn:
        stuck = conn.scalar(
            select(func.count()).select_from(graph_runs).where(graph_runs.c.state == "running")
        )
    assert stuck == 0


@pytest.mark.parametrize("function", sorted(REGISTRY))
def test_no_bad_parameter_of_an_operator_answers_5xx(
    client: TestClient, db: Database, owner: tuple[int, Actor], function: str
) -> None:
    cid, actor = owner
    mid = _power_with_a_gap(client, db, cid, actor)
    op = REGISTRY[function]
    fields = op.params.model_fields
    given = {
        "client_cid": cid,
        "sensor_mid": mid,
        "node_mid": mid,
        "moid": P_PLUS,
        "lat": 50.0,
        "lon": 19.9,
        "power": 5.0,
        "freq_minutes": 15,
        "origin": 4,
    }
    params = {k: v for k, v in given.items() if k in fields}
    source = {
        "function": "signals",
        "params": {"client_cid": cid, "sensor_mid": mid, "moid": P_PLUS},
    }
    inputs = op.min_inputs
    edges = [{"from": i, "to": inputs} for i in range(inputs)]
    for field in fields:
        for bad in [*BAD_VALUES, "Mars/Olympus_Mons", 10**9]:
            graph = {
                "nodes": [source] * inputs
                + [{"function": function, "params": {**params, field: bad}}],
                "edges": edges,
            }
            stored = client.put(
                f"{GRAPHS}/fuzz", params={"client_cid": cid}, json=graph, headers=actor.headers
            )
            assert stored.status_code < 500, (field, bad, stored.text)
            if stored.status_code < 300:
                res = _run(client, actor, "fuzz", {})
                assert res.status_code < 500, (field, bad, res.text)


# --- item 14: who sees runs, what may be written, runs that find nothing -------------------


def test_readers_of_a_runs_clients_see_and_list_it_and_still_cannot_run(
    client: TestClient, db: Database, owner: tuple[int, Actor]
) -> None:
    cid, actor = owner
    mid = _power_with_a_gap(client, db, cid, actor)
    body = {"client_cid": cid, "sensor_mid": mid, "moid": P_PLUS}
    run_id = _run(client, actor, "gap_fill", body).json()["run_id"]
    reader = make_user(db, roles={cid: Role.read})
    seen = client.get(f"{RUNS}/{run_id}", headers=reader.headers)
    assert seen.status_code == 200, seen.text
    assert (seen.json()["state"], seen.json()["clients"]) == ("done", [cid])
    listed = client.get(RUNS, headers=reader.headers)
    assert [r["run_id"] for r in listed.json()] == [run_id]
    assert client.get(RUNS, params={"graph_name": "balance"}, headers=reader.headers).json() == []
    assert (
        client.get(RUNS, params={"state": "done"}, headers=reader.headers).json()[0]["run_id"]
        == run_id
    )
    assert _run(client, reader, "gap_fill", body).status_code == 403
    # a stranger sees nothing of it
    _, stranger = make_tenant(db, Role.owner)
    assert client.get(f"{RUNS}/{run_id}", headers=stranger.headers).status_code == 404
    assert client.get(RUNS, headers=stranger.headers).json() == []
    assert client.get(RUNS, params={"client_cid": cid}, headers=stranger.headers).json() == []


def test_a_run_over_two_clients_is_seen_by_readers_of_both_only(
    client: TestClient, db: Database
) -> None:
    cid1, admin_ish = make_tenant(db, Role.owner)
    cid2, _ = make_tenant(db, Role.owner)
    both = make_user(db, roles={cid1: Role.write, cid2: Role.write})
    mids = [_power_with_a_gap(client, db, c, both) for c in (cid1, cid2)]
    body = [
        {"client_cid": c, "sensor_mid": m, "moid": P_PLUS}
        for c, m in zip((cid1, cid2), mids, strict=True)
    ]
    res = _run(client, both, "gap_fill", body)
    assert res.status_code == 201, res.text
    run_id = res.json()["run_id"]
    one = make_user(db, roles={cid1: Role.read})
    two = make_user(db, roles={cid1: Role.read, cid2: Role.read})
    assert client.get(f"{RUNS}/{run_id}", headers=one.headers).status_code == 404
    assert client.get(RUNS, headers=one.headers).json() == []
    assert client.get(f"{RUNS}/{run_id}", headers=two.headers).json()["clients"] == sorted(
        [cid1, cid2]
    )
    assert [r["run_id"] for r in client.get(RUNS, headers=two.headers).json()] == [run_id]
    del admin_ish


def _custom(cid: int, mid: int, source: dict[str, Any], write: dict[str, Any]) -> dict[str, Any]:
    where = {"client_cid": cid, "sensor_mid": mid}
    return {
        "nodes": [
            {"function": "signals", "params": {**where, **source}},
            {"function": "write", "params": {**where, "origin": 3, **write}},
        ],
        "edges": [{"from": 0, "to": 1}],
    }


@pytest.mark.parametrize(
    ("source", "write", "loc"),
    [
        pytest.param({"moid": U1}, {"moid": EA_PLUS}, "moid", id="voltage-into-energy"),
        pytest.param({"moid": P_PLUS}, {"moid": EA_PLUS}, "moid", id="power-into-energy-as-is"),
        pytest.param({"moid": A_PLUS}, {"moid": EA_PLUS}, "moid", id="register-into-interval"),
        pytest.param(
            {"moid": U1},
            {"moid": EA_PLUS, "series_is": "energy"},
            "series_is",
            id="voltage-as-energy",
        ),
        pytest.param(
            {"moid": P_PLUS}, {"moid": U1, "series_is": "power"}, "moid", id="power-into-voltage"
        ),
        pytest.param(
            {"moid": A_PLUS, "delta_t": 15, "energy_per_interval": True},
            {"moid": A_PLUS},
            "moid",
            id="interval-into-register",
        ),
    ],
)
def test_a_write_of_what_the_target_signal_does_not_hold_is_422(
    client: TestClient,
    db: Database,
    owner: tuple[int, Actor],
    source: dict[str, Any],
    write: dict[str, Any],
    loc: str,
) -> None:
    cid, actor = owner
    mid = _power_with_a_gap(client, db, cid, actor)
    put(client, actor.headers, cid, mid, U1, {"time": [T0, T0 + Q], "value": [230.0, 231.0]})
    literal = client.put(
        f"{GRAPHS}/w",
        params={"client_cid": cid},
        json=_custom(cid, mid, source, write),
        headers=actor.headers,
    )
    assert loc_of(literal) == ["body", "nodes", 1, "params", loc], literal.text
    # with the target's type from the body, the run finds it before anything runs
    templated = {**write, "moid": {"$param": "target"}}
    _store(client, actor, cid, "w", _custom(cid, mid, source, templated))
    res = _run(client, actor, "w", {"target": write["moid"]})
    assert loc_of(res) == ["nodes", 1, "params", loc], res.text
    assert _runs_in(db) == []
    assert (
        get(client, actor.headers, cid, mid, write["moid"], T0, T0 + DAY, signal_origin_id=3)[
            "data"
        ]["time"]
        == []
    )


@pytest.mark.parametrize(
    ("source", "write"),
    [
        pytest.param({"moid": U1}, {"moid": moid("U2")}, id="voltage-into-voltage"),
        pytest.param(
            {"moid": P_PLUS}, {"moid": EA_PLUS, "series_is": "power"}, id="power-as-energy"
        ),
        pytest.param(
            {"moid": A_PLUS, "delta_t": 15, "energy_per_interval": True},
            {"moid": EA_PLUS},
            id="energy-per-interval",
        ),
    ],
)
def test_a_write_of_what_the_target_holds_runs(
    client: TestClient,
    db: Database,
    owner: tuple[int, Actor],
    source: dict[str, Any],
    write: dict[str, Any],
) -> None:
    cid, actor = owner
    mid = _power_with_a_gap(client, db, cid, actor)
    put(client, actor.headers, cid, mid, U1, {"time": [T0, T0 + Q], "value": [230.0, 231.0]})
    _store(client, actor, cid, "w", _custom(cid, mid, source, write))
    res = _run(client, actor, "w", {})
    assert res.status_code == 201, res.text
    assert sum(res.json()["points_written"].values()) > 0


def test_a_sum_of_power_and_voltage_is_422(
    client: TestClient, db: Database, owner: tuple[int, Actor]
) -> None:
    cid, actor = owner
    mid = make_sensor(db, cid)
    where = {"client_cid": cid, "sensor_mid": mid}
    graph = {
        "nodes": [
            {"function": "signals", "params": {**where, "moid": P_PLUS}},
            {"function": "signals", "params": {**where, "moid": U1}},
            {"function": "sum", "params": {}},
        ],
        "edges": [{"from": 0, "to": 2}, {"from": 1, "to": 2}],
    }
    res = client.put(f"{GRAPHS}/s", params={"client_cid": cid}, json=graph, headers=actor.headers)
    assert loc_of(res) == ["body", "nodes", 2, "inputs"]


def test_pv_forecast_without_weather_is_done_with_a_warning(
    client: TestClient, db: Database, owner: tuple[int, Actor]
) -> None:
    cid, actor = owner
    mid = make_sensor(db, cid, "pv")
    body = {
        "client_cid": cid,
        "sensor_mid": mid,
        "lat": 50.06,
        "lon": 19.94,
        "params": {"power": 5},
    }
    res = _run(client, actor, "pv_forecast", body)
    assert res.status_code == 201, res.text
    record = res.json()
    assert record["points_written"] == {}
    warnings = record["warnings"]
    assert any(
        w.startswith("1:forecast_pv: no irradiance (GHI) weather of origin 2") for w in warnings
    )
    assert "2:write: no points to write in the window" in warnings
    stored = client.get(f"{RUNS}/{record['run_id']}", headers=actor.headers).json()
    assert stored["record"]["warnings"] == warnings


def test_a_sensor_moved_out_of_reach_between_queue_and_run_fails_the_run(
    client: TestClient, db: Database, owner: tuple[int, Actor]
) -> None:
    """A queued run authorizes again when it starts; what changed meanwhile fails it, recorded."""
    cid, actor = owner
    mid = _power_with_a_gap(client, db, cid, actor)
    other, _ = make_tenant(db, Role.owner)
    principal = Principal(user_id=actor.user_id, login=actor.login, roles={cid: Role.write})
    body = {"client_cid": cid, "sensor_mid": mid, "moid": P_PLUS}
    with db.transaction(write=False) as conn:
        plan = service.plan_run(conn, principal, "gap_fill", T0, T0 + DAY, body)
    with db.transaction() as conn:
        run_id = service.create_run(conn, principal, plan, executor="inprocess")
        conn.execute(update(sensors).where(sensors.c.mid == mid).values(client_cid=other))
    settings = Settings(database_url=str(db.url), demo=False)
    with pytest.raises(service.NotFound):
        service.execute(db, run_id, principal, settings=settings)
    assert _runs_in(db)[0][0] == "failed"


# --- item 22: the demo grid balances physically -----------------------------------------------


def test_the_demo_transformer_balances_to_a_few_percent_of_losses(
    client: TestClient, db: Database
) -> None:
    from besmart_server.demo import load_demo

    info = load_demo(db, password="demo password")
    s = info.sensors
    operator = make_user(db, roles={info.client_cid: Role.write})
    till = now_ms() // DAY * DAY
    body = {
        "client_cid": info.client_cid,
        "node_mid": s["transformer"],
        "residual_sensor_mid": s["residual"],
        "moid": P_PLUS,
    }
    res = _run(client, operator, "balance", body, since=till - 30 * DAY, till=till)
    assert res.status_code == 201, res.text
    m = res.json()["metrics"][0]["0:balance"]
    assert m["children"] == sorted([s["meter_1"], s["meter_2"]])
    assert (m["without_data"], m["intervals"], m["intervals_incomplete"]) == ([], 30 * 96, 0)
    assert 0.01 < m["residual_share"] < 0.06  # transformer and line losses, nothing untracked
    assert res.json()["warnings"] == []
    # the PV installation is behind meter 2, whose export is its surplus
    with db.transaction(write=False) as conn:
        pv = conn.execute(select(sensors).where(sensors.c.mid == s["pv"])).one()
    assert (pv.node_id, pv.balance_calculation) == (s["meter_2"], False)


def test_a_read_into_a_unit_of_another_dimension_is_422_when_stored(
    client: TestClient, db: Database, owner: tuple[int, Actor]
) -> None:
    cid, actor = owner
    mid = make_sensor(db, cid)
    read = {"client_cid": cid, "sensor_mid": mid, "moid": P_PLUS}
    for unit_id, why in ((17, "voltage"), (99999, "Unknown unit")):
        graph = {"nodes": [{"function": "signals", "params": {**read, "output_unit_id": unit_id}}]}
        res = client.put(
            f"{GRAPHS}/u", params={"client_cid": cid}, json=graph, headers=actor.headers
        )
        assert loc_of(res) == ["body", "nodes", 0, "params", "output_unit_id"]
        assert why in res.json()["detail"][0]["msg"]


@pytest.mark.parametrize(("cid", "status"), [(999_999, 404), (2**31, 422), (2**40, 422), (-5, 422)])
def test_an_admin_storing_a_graph_for_no_such_client_is_4xx(
    client: TestClient, db: Database, cid: int, status: int
) -> None:
    admin = make_user(db, admin=True)
    graph = {"nodes": [{"function": "profile", "params": {}}]}
    res = client.put(f"{GRAPHS}/x", params={"client_cid": cid}, json=graph, headers=admin.headers)
    assert res.status_code == status, res.text
    assert client.get(f"{GRAPHS}/x", headers=admin.headers).status_code == 404


@pytest.mark.parametrize(
    ("since", "till"),
    [
        (T0, T0 + 1),
        (T0 + 1, T0 + 2),  # no interval starts inside
        (T0 + 7, T0 + Q + 7),
        (-2_208_988_800_000, -2_208_988_800_000 + DAY),  # the first day graphs compute on
        (7_258_118_400_000 - DAY, 7_258_118_400_000),  # the last
    ],
)
def test_short_unaligned_and_edge_windows_never_answer_5xx(
    client: TestClient, db: Database, owner: tuple[int, Actor], since: int, till: int
) -> None:
    cid, actor = owner
    mid = _power_with_a_gap(client, db, cid, actor)
    body = {
        "client_cid": cid,
        "sensor_mid": mid,
        "node_mid": mid,
        "residual_sensor_mid": mid,
        "moid": P_PLUS,
        "lat": 50.0,
        "lon": 19.9,
        "params": {"power": 5.0},
    }
    for name in sorted(BUILTIN):
        res = _run(client, actor, name, body, since=since, till=till)
        assert res.status_code < 500, (name, res.text)
    assert "running" not in [state for state, _ in _runs_in(db)]
