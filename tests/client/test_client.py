"""`Client` against the real app and database: every route, tokens, retries, typed errors."""

from __future__ import annotations

import inspect
import pydoc
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update

from besmart_server.client import (
    AuthError,
    BesmartError,
    Client,
    Conflict,
    ConnectionFailed,
    Forbidden,
    NotFound,
    RateLimited,
    TooLarge,
    ValidationError,
    core,
)
from besmart_server.schemas.graphs import GraphDefinition, RunAccepted, RunRecord
from besmart_server.schemas.signals import (
    GetSignalRequest,
    PutMultipleSignalsRequest,
    SignalData,
)
from besmart_server.schemas.users import Role
from besmart_server.server.app import create_app
from besmart_server.server.config import Settings
from besmart_server.server.db import Database, now_ms
from besmart_server.server.users import service as users
from besmart_server.server.users.tables import tokens
from besmart_server.server.weather import service as weather
from besmart_server.server.weather.providers import ORIGIN_MODEL, ProviderResult, ProviderSeries
from tests.client.conftest import BASE, AppTransport
from tests.factories import Actor, make_client, make_user

A_PLUS, A_MINUS, T_AIR, EA_PLUS = 32, 34, 139, 1011
T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
H = 3_600_000


def paths(transport: AppTransport) -> list[str]:
    return [f"{r.method} {r.url.path}" for r in transport.requests]


def has_route(app: FastAPI, path: str) -> bool:
    """Whether the app serves `path` (routers are included lazily: ask the OpenAPI document)."""
    return path in app.openapi()["paths"]


class Clock:
    """A settable clock (unix seconds) for the token logic."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- logging in and tokens ----------------------------------------------------------------------


def test_logs_in_on_first_use_and_lists_clients(
    bs: Client, transport: AppTransport, tenant: tuple[int, Actor]
) -> None:
    cid, _ = tenant
    assert bs.token is None
    roles = bs.clients()
    assert [(r.client_cid, r.role) for r in roles] == [(cid, Role.owner)]
    assert paths(transport) == ["POST /api/users/token", "GET /api/clients"]
    assert bs.token is not None
    assert bs.expiration is not None


def test_wrong_password_is_auth_error(transport: AppTransport, tenant: tuple[int, Actor]) -> None:
    _, actor = tenant
    with (
        Client(BASE, login=actor.login, password="wrong", transport=transport) as c,
        pytest.raises(AuthError) as err,
    ):
        c.clients()
    assert err.value.status == 401
    assert "Not valid authentication credentials" in str(err.value)


def test_token_is_refreshed_within_30_s_of_expiry(
    transport: AppTransport, tenant: tuple[int, Actor]
) -> None:
    _, actor = tenant
    clock = Clock(0.0)
    with Client(
        BASE, login=actor.login, password=actor.password, transport=transport, clock=clock
    ) as c:
        first = c.login()
        clock.now = first.expiration - 31
        c.clients()
        assert c.token == first.token
        clock.now = first.expiration - 29
        c.clients()
        assert c.token != first.token
        assert paths(transport)[-2:] == ["GET /api/users/token", "GET /api/clients"]
        assert c.expiration is not None
        assert c.expiration >= first.expiration


def test_logs_in_again_once_the_token_has_expired(
    transport: AppTransport, tenant: tuple[int, Actor], db: Database
) -> None:
    _, actor = tenant
    clock = Clock(0.0)
    with Client(
        BASE, login=actor.login, password=actor.password, transport=transport, clock=clock
    ) as c:
        first = c.login()
        with db.transaction() as conn:  # the server's side of expiry
            conn.execute(update(tokens).values(expires_at=now_ms() - 1))
        clock.now = first.expiration + 1
        assert c.clients()
        assert c.token != first.token
        assert paths(transport)[-2:] == ["POST /api/users/token", "GET /api/clients"]


def test_refresh_failing_falls_back_to_login(
    transport: AppTransport, tenant: tuple[int, Actor], db: Database
) -> None:
    _, actor = tenant
    clock = Clock(0.0)
    with Client(
        BASE, login=actor.login, password=actor.password, transport=transport, clock=clock
    ) as c:
        first = c.login()
        with db.transaction() as conn:  # expired early on the server (clock skew)
            conn.execute(update(tokens).values(expires_at=now_ms() - 1))
        clock.now = first.expiration - 10
        assert c.clients()
        assert paths(transport)[-3:] == [
            "GET /api/users/token",
            "POST /api/users/token",
            "GET /api/clients",
        ]


def test_a_revoked_token_means_one_fresh_login(
    transport: AppTransport, tenant: tuple[int, Actor], db: Database
) -> None:
    _, actor = tenant
    with Client(BASE, login=actor.login, password=actor.password, transport=transport) as c:
        token = c.login().token
        with db.transaction() as conn:
            users.revoke_token(conn, token)
        assert c.clients()
        assert c.token != token
        assert paths(transport)[-3:] == [
            "GET /api/clients",
            "POST /api/users/token",
            "GET /api/clients",
        ]


def test_token_client_and_logout(transport: AppTransport, tenant: tuple[int, Actor]) -> None:
    cid, actor = tenant
    with Client(BASE, token=actor.token, transport=transport) as c:
        assert [r.client_cid for r in c.clients()] == [cid]
        fresh = c.refresh_token()
        assert fresh.token != actor.token
        c.logout()
        assert c.token is None
        with pytest.raises(AuthError):
            c.clients()
    with Client(BASE, token=fresh.token, transport=transport) as c, pytest.raises(AuthError):
        c.clients()  # revoked by logout, and this client cannot log in


def test_anonymous_and_login_misuse(transport: AppTransport) -> None:
    with Client(BASE, transport=transport) as c:
        with pytest.raises(AuthError):
            c.sensor_types()
        with pytest.raises(AuthError):
            c.login()
    with pytest.raises(ValueError, match="both login and password"):
        Client(BASE, login="x")


def test_too_many_failed_logins_is_rate_limited(
    transport: AppTransport, tenant: tuple[int, Actor]
) -> None:
    _, actor = tenant
    with Client(BASE, login=actor.login, password="wrong", transport=transport) as c:
        failures = 0
        while True:
            try:
                c.login()
            except RateLimited as exc:
                err = exc
                break
            except AuthError:
                failures += 1
                assert failures < 10
        assert err.status == 429
        assert err.retry_after is not None
        assert err.retry_after > 0


# --- sensors and states ---------------------------------------------------------------------


def test_sensor_lifecycle_and_error_mapping(bs: Client, tenant: tuple[int, Actor]) -> None:
    cid, _ = tenant
    types = bs.sensor_types()
    assert any(t.is_system_type for t in types)
    s = bs.create_sensor(cid, "meter 1", sensor_eid="E-1", info={"k": 1}, lat=50.0, lon=19.9)
    assert (s.client_cid, s.name, s.info, s.write) == (cid, "meter 1", {"k": 1}, True)
    assert bs.get_sensor(cid, s.sensor_mid) == s
    changed = bs.update_sensor(cid, s.sensor_mid, name="meter 1b", info="null", comments="c")
    assert (changed.name, changed.info, changed.comments) == ("meter 1b", None, "c")
    with pytest.raises(Conflict) as conflict:
        bs.create_sensor(cid, "twin", sensor_eid="E-1")
    assert conflict.value.status == 409
    with pytest.raises(ValidationError) as invalid:
        bs.create_sensor(cid, "bad", info="{not json")
    assert invalid.value.errors[0]["loc"][0] == "query"
    assert invalid.value.errors[0]["msg"]
    bs.delete_sensor(cid, s.sensor_mid)
    with pytest.raises(NotFound) as missing:
        bs.get_sensor(cid, s.sensor_mid)
    assert f"{cid}.{s.sensor_mid}" in str(missing.value)
    assert isinstance(missing.value, BesmartError)


def test_read_role_is_forbidden_to_change(
    bs: Client, transport: AppTransport, tenant: tuple[int, Actor], db: Database
) -> None:
    cid, _ = tenant
    s = bs.create_sensor(cid, "meter")
    reader = make_user(db, roles={cid: Role.read})
    with Client(BASE, token=reader.token, transport=transport) as c:
        assert c.get_sensor(cid, s.sensor_mid).write is False
        with pytest.raises(Forbidden) as err:
            c.update_sensor(cid, s.sensor_mid, name="x")
        assert err.value.status == 403


def test_states_signal_states_and_the_device_routes(bs: Client, tenant: tuple[int, Actor]) -> None:
    cid, _ = tenant
    mid = bs.create_sensor(cid, "meter").sensor_mid
    old = bs.create_sensor_state(cid, mid, since=T0, till=T0 + 10 * H, meter_eid="OLD-1")
    new = bs.create_sensor_state(cid, mid, since=T0 + 10 * H, meter_eid="NEW-1", info={"a": 1})
    assert (old.since, old.till, new.till, new.info) == (T0, T0 + 10 * H, None, {"a": 1})
    with pytest.raises(Conflict):
        bs.create_sensor_state(cid, mid, since=T0 + H, till=T0 + 2 * H)
    assert [s.sensor_state_id for s in bs.sensor_states(client_cid=cid, sensor_mid=mid)] == [
        old.sensor_state_id,
        new.sensor_state_id,
    ]
    moved = bs.update_sensor_state(old.sensor_state_id, meter_eid="OLD-2")
    assert moved.meter_eid == "OLD-2"

    ss = bs.create_signal_state(old.sensor_state_id, A_PLUS, value_for_since=1.0)
    assert (ss.value_for_since, ss.value_for_till) == (1.0, None)
    ss = bs.update_signal_state(ss.signal_state_id, value_for_till="1.235e+04")
    assert ss.value_for_till == 12350.0
    with pytest.raises(Conflict):
        bs.create_signal_state(old.sensor_state_id, A_PLUS)
    with_signals = bs.signal_states(client_cid=cid, sensor_mid=mid, signal_type_moid=A_PLUS)
    assert [len(s.signal_states) for s in with_signals] == [1, 0]
    bs.delete_signal_state(ss.signal_state_id)
    with pytest.raises(NotFound):
        bs.delete_signal_state(ss.signal_state_id)

    found = bs.find_sensor_state("NEW-1")
    assert (found.client_cid, found.sensor_mid, found.sensor_state_id) == (
        cid,
        mid,
        new.sensor_state_id,
    )
    with pytest.raises(NotFound):
        bs.find_sensor_state("OLD-2")  # not in force now

    bs.delete_sensor_state(old.sensor_state_id)
    assert [s.sensor_state_id for s in bs.sensor_states(sensor_mid=mid, client_cid=cid)] == [
        new.sensor_state_id
    ]


# --- catalogs, clock, signal data -------------------------------------------------------------


def test_catalogs_and_clock(bs: Client) -> None:
    symbols = {t.symbol: t for t in bs.signal_types()}
    assert symbols["A+"].signal_type_moid == A_PLUS
    assert symbols["A+"].time_series_type == 1
    units = {u.symbol: u for u in bs.units()}
    assert units["kWh"].dimension == units["Wh"].dimension
    now_s = bs.server_time()
    now = bs.server_time("ms")
    assert isinstance(now, int)
    assert abs(now / 1000 - now_s) < 60


def test_put_and_get_one_signal_on_v2_and_legacy_paths(
    bs: Client, transport: AppTransport, tenant: tuple[int, Actor]
) -> None:
    cid, _ = tenant
    mid = bs.create_sensor(cid, "meter").sensor_mid
    assert bs.cap(cid, mid, signal_type_moid=A_PLUS).cap_max is None
    bs.put_signal(cid, mid, A_PLUS, SignalData(time=[T0, T0 + H], value=[1.5, 2.5]))
    bs.put_signal(cid, mid, A_PLUS, {"time": [T0 + 2 * H], "value": [3500.0]}, unit="Wh")
    bs.put_signal(cid, mid, A_PLUS, {"time": [T0 + 3 * H], "value": [4]}, legacy=True)
    statuses = [r.url.path.endswith("/data") for r in transport.requests if r.method == "PUT"]
    assert statuses == [False, False, True]
    res = bs.get_signal(cid, mid, A_PLUS, T0, T0 + 4 * H, get_last=True)
    assert res.data is not None
    assert res.data.value == [1.5, 2.5, 3.5, 4.0]
    assert (res.client_cid, res.sensor_mid, res.signal_type_moid, res.unit) == (
        cid,
        mid,
        A_PLUS,
        "kWh",
    )
    assert bs.cap(cid, mid, signal_type_moid=A_PLUS).cap_max == T0 + 3 * H
    agg = bs.get_signal(cid, mid, A_PLUS, T0, T0 + 4 * H, delta_t=120, signal_origin_id=1)
    assert agg.data is not None
    assert agg.data.time == [T0, T0 + 2 * H]


def test_multi_series_put_and_post_on_v2_and_legacy_paths(
    bs: Client, tenant: tuple[int, Actor]
) -> None:
    cid, _ = tenant
    a = bs.create_sensor(cid, "a").sensor_mid
    b = bs.create_sensor(cid, "b").sensor_mid
    bs.put_signals(
        [
            PutMultipleSignalsRequest(
                client_cid=cid,
                sensor_mid=a,
                signal_type_moid=A_PLUS,
                data=SignalData(time=[T0], value=[1.0]),
            ),
            {"client_cid": cid, "sensor_mid": b, "signal_type_moid": A_MINUS,
             "data": {"time": [T0], "value": [2.0]}},
        ]
    )  # fmt: skip
    bs.put_signals(
        [{"client_cid": cid, "sensor_mid": a, "signal_type_moid": A_PLUS,
          "data": {"time": [T0 + H], "value": [3.0], "origin": [2]}}],
        legacy=True,
    )  # fmt: skip
    items: list[GetSignalRequest | dict[str, Any]] = [
        GetSignalRequest(
            client_cid=cid, sensor_mid=a, signal_type_moid=A_PLUS, since=T0, till=T0 + 2 * H
        ),
        {"client_cid": cid, "sensor_mid": b, "signal_type_moid": A_MINUS,
         "since": T0, "till": T0 + H},
        {"client_cid": cid, "sensor_mid": 999_999, "signal_type_moid": A_PLUS,
         "since": T0, "till": T0 + H},
    ]  # fmt: skip
    for legacy in (False, True):
        out = bs.get_signals(items, legacy=legacy)
        assert [o.data.value if o.data else None for o in out][:2] == [[1.0, 3.0], [2.0]]
        assert out[0].data is not None
        assert out[0].data.origin == [1, 2]
        assert out[2].error is not None
        assert out[2].error.status == 404


def test_a_bad_item_is_a_validation_error_naming_it_and_nothing_is_stored(
    bs: Client, tenant: tuple[int, Actor]
) -> None:
    cid, _ = tenant
    mid = bs.create_sensor(cid, "a").sensor_mid
    with pytest.raises(ValidationError) as err:
        bs.put_signals(
            [
                {"client_cid": cid, "sensor_mid": mid, "signal_type_moid": A_PLUS,
                 "data": {"time": [T0], "value": [1.0]}},
                {"client_cid": cid, "sensor_mid": mid, "signal_type_moid": A_PLUS,
                 "data": {"time": [T0, T0 + H], "value": [1.0, 2.0], "type": ["DBL", "XYZ"]}},
            ]
        )  # fmt: skip
    assert err.value.errors[0]["loc"] == ["body", 1, "data", "type", 1]
    assert "body.1.data.type.1" in str(err.value)
    assert bs.cap(cid, mid, signal_type_moid=A_PLUS).cap_max is None


def test_limits_are_too_large_and_write_splits_under_them(
    tenant: tuple[int, Actor], database_url: str
) -> None:
    cid, actor = tenant
    settings = Settings(database_url=database_url, demo=False, max_points_per_request=50)
    with TestClient(create_app(settings)) as tc:
        transport = AppTransport(tc)
        with Client(BASE, login=actor.login, password=actor.password, transport=transport) as c:
            mid = c.create_sensor(cid, "m").sensor_mid
            data = {"time": [T0 + i * 60_000 for i in range(51)], "value": [1.0] * 51}
            with pytest.raises(TooLarge) as err:
                c.put_signal(cid, mid, A_PLUS, data)
            assert err.value.status == 413
            assert "split" in str(err.value)
            assert c.read(cid, mid, A_PLUS, T0, T0 + H).empty
            values = np.arange(120, dtype=np.float64)
            idx = pd.to_datetime(T0 + 60_000 * np.arange(120), unit="ms", utc=True)
            assert c.write(pd.Series(values, index=idx), cid, mid, A_PLUS, chunk_points=50) == 120
            back = c.read(cid, mid, A_PLUS, T0, T0 + 3 * H)
            assert back["value"].tolist() == values.tolist()


# --- weather, discovery, meter types, graphs -------------------------------------------------


def test_weather_with_an_api_key(transport: AppTransport, db: Database) -> None:
    times = np.array([T0 + i * H for i in range(3)], dtype=np.int64)
    points = ProviderSeries(times, np.array([280.0, 281.0, 282.0]), ORIGIN_MODEL, 1)
    owner = make_client(db)
    with db.transaction() as conn:
        weather.import_weather(
            conn, ProviderResult({"T_AIR": points}, lat=50.0, lon=20.0, source="test")
        )
        key = users.create_api_key(conn, client_cid=owner, name="w")
    with Client(BASE, api_key=key, transport=transport) as c:
        res = c.weather(50.0, 20.0, T_AIR, T0, T0 + 3 * H)
        assert res.data is not None
        assert res.data.value == [280.0, 281.0, 282.0]
        frame = c.read_weather(50.0, 20.0, T_AIR, T0, T0 + 3 * H, is_chart=True)
        assert frame["value"].round(2).tolist() == [6.85, 7.85, 8.85]
        assert frame.attrs["unit"] == "°C"
        with pytest.raises(NotFound):
            c.weather(-40.0, 100.0, T_AIR, T0, T0 + H)
        with pytest.raises(AuthError):
            c.clients()  # an API key is for weather only


def test_find_sensors(bs: Client, tenant: tuple[int, Actor], app: FastAPI) -> None:
    if not has_route(app, "/api/sensors/find"):
        pytest.skip("GET /api/sensors/find is not in the app yet (issue 10)")
    cid, _ = tenant
    a = bs.create_sensor(cid, "North feeder").sensor_mid
    bs.create_sensor(cid, "South feeder")
    found = bs.find_sensors(client_cid=cid, name="north")
    assert [s.sensor_mid for s in found] == [a]


def test_meter_types(bs: Client, tenant: tuple[int, Actor], app: FastAPI) -> None:
    if not has_route(app, "/api/sensors/meters"):
        pytest.skip("/api/sensors/meters is not in the app yet (issue 10)")
    cid, _ = tenant
    system = bs.meter_types()
    assert system
    own = bs.create_meter_type(cid, "Test meter", number_of_phases=3, is_ami=True)
    assert (own.meter_type_name, own.client_cid, own.is_ami) == ("Test meter", cid, True)
    assert bs.update_meter_type(own.id, description="d").description == "d"
    with pytest.raises(Forbidden):
        bs.update_meter_type(system[0].id, description="x")
    mid = bs.create_sensor(cid, "m").sensor_mid
    state = bs.create_sensor_state(cid, mid, since=T0, meter_type_id=own.id)
    assert state.meter_type_name == "Test meter"
    with pytest.raises(Conflict):
        bs.delete_meter_type(own.id)
    bs.delete_sensor_state(state.sensor_state_id)
    bs.delete_meter_type(own.id)
    assert own.id not in [m.id for m in bs.meter_types(cid)]


def test_graphs_run_and_management(bs: Client, tenant: tuple[int, Actor], app: FastAPI) -> None:
    if not has_route(app, "/api/tasks/graphs/run/name"):
        pytest.skip("POST /api/tasks/graphs/run/name is not in the app yet (issue 8)")
    cid, _ = tenant
    mid = bs.create_sensor(cid, "m").sensor_mid
    q = 15 * 60_000
    bs.put_signal(
        cid, mid, A_PLUS, {"time": [T0 + i * q for i in range(5)], "value": [0, 1, 3, 6, 10]}
    )
    assert {"estimation", "balance", "gap_fill"} <= {g.name for g in bs.graphs()}
    src = {"client_cid": cid, "sensor_mid": mid, "moid": A_PLUS}
    graph = GraphDefinition(
        nodes=[
            {"function": "signals", "params": {**src, "delta_t": 15, "energy_per_interval": True}},
            {"function": "scale", "params": {"factor": {"$param": "factor", "default": 2.0}}},
            {"function": "write", "params": {**src, "moid": EA_PLUS, "origin": 3}},
        ],
        edges=[{"from": 0, "to": 1}, {"from": 1, "to": 2}],
    )
    info = bs.put_graph("tripler", graph, client_cid=cid)
    assert (info.name, info.owner_cid, info.shipped) == ("tripler", cid, False)
    assert bs.get_graph("tripler").definition == graph
    record = bs.run_graph("tripler", {"factor": 3.0}, since=T0, till=T0 + H)
    assert isinstance(record, RunRecord)
    assert record.points_written == {f"{cid}.{mid}/{EA_PLUS}/3": 4}
    assert bs.read(cid, mid, EA_PLUS, T0, T0 + H)["value"].tolist() == [3.0, 6.0, 9.0, 12.0]
    queued = bs.run_graph("tripler", {"factor": 1.0}, since=T0, till=T0 + H, task_async=True)
    assert isinstance(queued, RunAccepted)
    deadline = time.monotonic() + 60
    while (status := bs.graph_run(queued.run_id)).state not in ("done", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status.state == "done", status.error
    assert status.record is not None
    runs = bs.graph_runs(graph_name="tripler", client_cid=cid)
    assert [r.run_id for r in runs][:1] == [queued.run_id]  # newest first
    assert {r.state for r in runs} == {"done"}
    assert bs.graph_runs(graph_name="tripler", state="failed") == []
    with pytest.raises(ValidationError):
        bs.run_graph("tripler", {}, since=T0 + H, till=T0)
    bs.delete_graph("tripler")
    with pytest.raises(NotFound):
        bs.get_graph("tripler")
    with pytest.raises(NotFound):
        bs.run_graph("tripler", since=T0, till=T0 + H)


# --- connection errors, closing, docs ---------------------------------------------------------


class Flaky(httpx.BaseTransport):
    """Fails the first `failures` requests with a connection error, then passes them on."""

    def __init__(self, inner: httpx.BaseTransport, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.attempts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise httpx.ConnectError("connection refused", request=request)
        return self.inner.handle_request(request)


def test_idempotent_calls_are_retried_on_connection_errors(
    transport: AppTransport, tenant: tuple[int, Actor]
) -> None:
    cid, actor = tenant
    flaky = Flaky(transport, failures=2)
    with Client(BASE, token=actor.token, transport=flaky, retries=2, backoff=0) as c:
        assert c.clients()
        assert flaky.attempts == 3
        flaky.failures, flaky.attempts = 1, 0
        with pytest.raises(ConnectionFailed):
            c.create_sensor(cid, "not retried: POST creates")
        assert flaky.attempts == 1
        assert c.sensor_types()  # the next call goes through


def test_an_unreachable_server_is_connection_failed() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    with Client(f"http://127.0.0.1:{port}", token="t", retries=1, backoff=0, timeout=2) as c:
        with pytest.raises(ConnectionFailed) as err:
            c.server_time()
        assert err.value.status is None
        assert "after 2 attempts" in str(err.value)


@pytest.fixture
def closed_check(transport: AppTransport, tenant: tuple[int, Actor]) -> Iterator[Client]:
    _, actor = tenant
    with Client(BASE, token=actor.token, transport=transport) as c:
        yield c


def test_context_manager_closes_the_connections(closed_check: Client) -> None:
    closed_check.close()
    with pytest.raises(RuntimeError):
        closed_check.clients()


def test_the_client_names_every_route_of_the_app(app: FastAPI) -> None:
    """A route added to the app without a client method fails here."""
    source = inspect.getsource(core)

    def shape(path: str) -> str:
        return re.sub(r"\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}", "{}", path)

    named = {shape(p) for p in re.findall(r'"(/api/[^"]*)"', source)}
    missing = [p for p in app.openapi()["paths"] if shape(p) not in named]
    assert missing == []


def test_public_methods_have_docstrings_that_render_in_help() -> None:
    public = [n for n in dir(Client) if not n.startswith("_")]
    missing = [n for n in public if not (getattr(Client, n).__doc__ or "").strip()]
    assert missing == []
    text = pydoc.render_doc(Client, renderer=pydoc.plaintext)
    assert "renews" in text
    assert "put_signals" in text


def test_chart_completeness_and_devices(bs: Client, tenant: tuple[int, Actor]) -> None:
    cid, _ = tenant
    mid = bs.create_sensor(cid, "meter").sensor_mid
    times = [T0 + i * 15 * 60_000 for i in range(8) if i != 5]  # a quarter-hour missing
    bs.put_signal(cid, mid, A_PLUS, {"time": times, "value": [float(i) for i in range(7)]})
    chart = bs.chart(cid, mid, A_PLUS, T0, T0 + 2 * H, register=True)
    assert chart["summary"]["count"] == 7
    gaps = bs.completeness(cid, mid, A_PLUS, T0, T0 + 2 * H)["gaps"]
    assert len(gaps) == 1

    added = bs.add_device("gw-1", cid, sensors=[mid])
    assert (added.name, added.client_cid, added.sensors) == ("gw-1", cid, [mid])
    assert added.secret
    assert [d.name for d in bs.devices(client_cid=cid)] == ["gw-1"]
    bs.revoke_device("gw-1")
    assert bs.devices(client_cid=cid)[0].revoked_at is not None
    assert bs.rejected_messages(client_cid=cid) == []
    with pytest.raises(NotFound):
        bs.revoke_device("no-such-device")


def test_quality_estimate_and_audit(bs: Client, tenant: tuple[int, Actor]) -> None:
    cid, _ = tenant
    mid = bs.create_sensor(cid, "meter").sensor_mid
    q = 15 * 60_000
    times = [T0 + i * q for i in range(96) if not 40 <= i < 44]  # an hour missing
    bs.put_signal(cid, mid, EA_PLUS, {"time": times, "value": [1.0] * len(times)})
    day = (T0, T0 + 24 * H)
    [gap] = [e for e in bs.validate(cid, mid, EA_PLUS, *day) if e["rule"] == "gap"]
    assert (gap["since"], gap["till"], gap["state"]) == (T0 + 40 * q, T0 + 44 * q, "open")
    quality = bs.quality(cid, mid, EA_PLUS, *day)
    assert (quality["completeness"]["expected"], quality["completeness"]["present"]) == (96, 92)
    assert [s["sensor_mid"] for s in bs.client_quality(cid, *day)["sensors"]] == [mid]

    done = bs.estimate(cid, mid, EA_PLUS, *day, reason="AMI outage")
    assert done["methods"] == {"linear": 4}
    [entry] = bs.audit(cid, mid, EA_PLUS, *day)
    assert (entry["origin"], entry["method"], entry["reason"]) == (4, "linear", "AMI outage")
    accepted = bs.accept_event(cid, mid, EA_PLUS, gap["id"], "checked on site")
    assert accepted["id"] == gap["id"]

    assert bs.set_quality_thresholds(cid, {"flatline_hours": 48})["overrides"]["0"] == {
        "flatline_hours": 48
    }
    assert bs.quality_thresholds(cid)["overrides"]["0"] == {"flatline_hours": 48}
    with pytest.raises(NotFound):
        bs.audit(cid, 999_999, EA_PLUS, *day)
