"""VEE over HTTP: validation after writes, the quality and summary views, accepting events,
estimate runs, corrections with a reason and their audit; tenancy and error paths."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, text, update

from besmart_server.schemas.users import Role
from besmart_server.server.access import Principal
from besmart_server.server.app import create_app
from besmart_server.server.config import Settings
from besmart_server.server.db import Database
from besmart_server.server.sensors.tables import sensors
from besmart_server.server.signals import columns
from besmart_server.server.signals import service as signals
from besmart_server.server.signals.store import SeriesStore
from besmart_server.server.signals.tables import series
from besmart_server.server.vee import service as vee_service
from besmart_server.server.vee.rules import Finding, Rule, Severity
from besmart_server.server.vee.tables import quality_events, vee_queue
from besmart_server.server.vee.worker import (
    CLAIM_ROWS,
    ROBOT,
    Worker,
    _windows,
    look,
    merged_windows,
    process,
    rest_after,
    serve,
)
from tests.api.signal_helpers import (
    MIN,
    T0,
    Q,
    day_with_defects,
    get,
    make_sensor,
    moid,
    put,
)
from tests.factories import Actor, make_tenant, make_user

DAY = 86_400_000
EA = moid("EA+")


def _url(cid: int, mid: int, m: int = EA, tail: str = "quality") -> str:
    return f"/api/sensors/{cid}.{mid}/signals/{m}/{tail}"


def _settle(app: FastAPI) -> None:
    """The validation the writes queued, as a worker's drain does it (`besmart vee worker`
    runs `process` in a process of its own)."""
    state = app.state
    process(state.db, state.store, state.settings.max_points_per_read)


def _setup(db: Database, client: TestClient, app: FastAPI) -> tuple[int, int, Actor]:
    cid, owner = make_tenant(db, Role.owner)
    mid = make_sensor(db, cid)
    put(client, owner.headers, cid, mid, EA, day_with_defects())
    _settle(app)
    return cid, mid, owner


def test_a_write_is_validated_after_its_commit(
    db: Database, client: TestClient, app: FastAPI
) -> None:
    cid, mid, owner = _setup(db, client, app)
    r = client.get(_url(cid, mid), params={"since": T0, "till": T0 + DAY}, headers=owner.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    found = {(e["rule"], e["since"], e["till"], e["state"]) for e in body["events"]}
    assert ("gap", T0 + 40 * Q, T0 + 48 * Q, "open") in found
    assert ("spike", T0 + 70 * Q, T0 + 71 * Q, "open") in found
    assert body["completeness"]["expected"] == 96
    assert body["completeness"]["present"] == 88
    by_day = body["completeness"]["by_day"]  # T0 is not midnight: the window spans two days
    assert [d["day"] for d in by_day] == [T0 // DAY * DAY, T0 // DAY * DAY + DAY]
    assert sum(d["present"] for d in by_day) == 88
    assert sum(d["expected"] for d in by_day) == 96


def test_client_summary_worst_first_and_accepting_an_event(
    db: Database, client: TestClient, app: FastAPI
) -> None:
    cid, mid, owner = _setup(db, client, app)
    clean = make_sensor(db, cid, "clean")
    put(
        client,
        owner.headers,
        cid,
        clean,
        EA,
        {
            "time": [T0 + i * Q for i in range(96)],
            "value": [1.0 + (i % 7) * 0.01 for i in range(96)],
        },
    )
    neg = make_sensor(db, cid, "negative")
    put(
        client,
        owner.headers,
        cid,
        neg,
        EA,
        {
            "time": [T0 + i * Q for i in range(96)],
            "value": [-1.0 if i == 5 else 1.0 + (i % 7) * 0.01 for i in range(96)],
        },
    )
    _settle(app)
    window = {"since": T0, "till": T0 + DAY}
    r = client.get(f"/api/clients/{cid}/quality", params=window, headers=owner.headers)
    assert r.status_code == 200, r.text
    mids = [s["sensor_mid"] for s in r.json()["sensors"]]
    assert mids[0] == neg  # an error (negative energy) comes before warnings
    assert mid in mids
    assert clean not in mids

    events = client.get(_url(cid, mid), params=window, headers=owner.headers).json()["events"]
    spike = next(e for e in events if e["rule"] == "spike")
    url = _url(cid, mid, tail=f"quality/events/{spike['id']}/accept")
    r = client.post(
        url, json={"note": "heat pump defrost, confirmed on site"}, headers=owner.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "accepted"
    owner_login = r.json()["accepted_by"]
    assert owner_login == owner.login
    # a rerun keeps the accepted event and does not raise it again
    r = client.post(_url(cid, mid, tail="quality/run"), params=window, headers=owner.headers)
    assert r.status_code == 200, r.text
    spikes = [e for e in r.json()["events"] if e["rule"] == "spike"]
    assert [e["state"] for e in spikes] == ["accepted"]
    assert (
        client.post(
            url.replace(str(spike["id"]), "999999"), json={"note": "x"}, headers=owner.headers
        ).status_code
        == 404
    )


def test_estimate_fills_the_gap_as_origin_4_and_audits_it(
    db: Database, client: TestClient, app: FastAPI
) -> None:
    cid, mid, owner = _setup(db, client, app)
    window = {"since": T0, "till": T0 + DAY}
    r = client.post(
        _url(cid, mid, tail="quality/estimate"),
        params={**window, "reason": "AMI outage"},
        headers=owner.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["methods"] == {"linear": 8}
    data = get(client, owner.headers, cid, mid, EA, T0, T0 + DAY, get_last=True)["data"]
    by_origin = dict(zip(data["time"], data["origin"], strict=True))
    assert all(by_origin[T0 + i * Q] == 4 for i in range(40, 48))
    assert sum(1 for o in data["origin"] if o == 1) == 88  # measured values untouched
    # linear between the readings around the gap
    vals = dict(zip(data["time"], data["value"], strict=True))
    left, right = vals[T0 + 39 * Q], vals[T0 + 48 * Q]
    assert abs(vals[T0 + 44 * Q] - (left + (right - left) * 5 / 9)) < 1e-9
    audit = client.get(_url(cid, mid, tail="audit"), params=window, headers=owner.headers).json()
    [entry] = audit["entries"]
    assert entry["origin"] == 4
    assert entry["method"] == "linear"
    assert entry["reason"] == "AMI outage"
    assert entry["who"] == owner.login
    assert entry["acq_time"] == r.json()["acq_time"]
    events = client.get(_url(cid, mid), params=window, headers=owner.headers).json()["events"]
    assert next(e for e in events if e["rule"] == "gap")["state"] == "estimated"


def test_windows_vee_cannot_compute_are_4xx_and_change_nothing(
    db: Database, client: TestClient, app: FastAPI
) -> None:
    """An estimate's like days, holidays and profiles are calendar days (1900..2200: a window
    at 2**62 ms was a 500 after minutes); an estimate or a quality view over more days than
    max_window_days is a 413 (one ran minutes for -2**62..now, the other built a row per day
    into a 500); validation reads context around any window within ±2**62 (it asked for
    times before -2**62: 422 naming since)."""
    cid, mid, owner = _setup(db, client, app)
    est = _url(cid, mid, tail="quality/estimate")
    lo, hi = -(2**62), 2**62
    for since, till, name in ((lo, lo + DAY, "since"), (hi - DAY, hi, "till")):
        r = client.post(est, params={"since": since, "till": till}, headers=owner.headers)
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["query", name]
    r = client.post(est, params={"since": T0 - 4000 * DAY, "till": T0 + DAY}, headers=owner.headers)
    assert r.status_code == 413, r.text
    for since, till in ((lo, hi), (T0 - 4000 * DAY, T0 + DAY)):
        r = client.get(_url(cid, mid), params={"since": since, "till": till}, headers=owner.headers)
        assert r.status_code == 413, r.text
        assert "max_window_days" in r.json()["detail"]
    assert (
        get(client, owner.headers, cid, mid, EA, T0, T0 + DAY, signal_origin_id=4)["data"]["time"]
        == []
    )
    run = _url(cid, mid, tail="quality/run")
    for since, till in ((lo, T0 + DAY), (T0, hi)):
        r = client.post(run, params={"since": since, "till": till}, headers=owner.headers)
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("step", ["x", 1.5, -900_000, 10**30, 1e300])
def test_a_malformed_step_in_the_sensors_info_is_ignored(
    db: Database, client: TestClient, app: FastAPI, step: Any
) -> None:
    """`step_ms` of the sensor's info is used when it is whole ms up to a day; otherwise the
    readings' spacing stands (a string was a 500, 1.5 ran out of memory)."""
    cid, mid, owner = _setup(db, client, app)
    with db.transaction() as conn:
        info = json.dumps({"step_ms": step})
        conn.execute(update(sensors).where(sensors.c.mid == mid).values(info=info))
    r = client.post(
        _url(cid, mid, tail="quality/estimate"),
        params={"since": T0, "till": T0 + DAY},
        headers=owner.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["methods"] == {"linear": 8}


def test_an_estimate_of_more_intervals_than_it_may_fill_is_413(
    db: Database, client: TestClient, app: FastAPI
) -> None:
    """A step of 1 ms (the sensor's info says so) makes a day 86.4 million intervals, each
    compared with 56 days before it: the process ran out of memory; now a 413, nothing written."""
    cid, mid, owner = _setup(db, client, app)
    with db.transaction() as conn:
        conn.execute(
            update(sensors).where(sensors.c.mid == mid).values(info=json.dumps({"step_ms": 1}))
        )
    window = {"since": T0, "till": T0 + DAY}
    r = client.post(_url(cid, mid, tail="quality/estimate"), params=window, headers=owner.headers)
    assert r.status_code == 413, r.text
    assert "at most 400000" in r.json()["detail"]
    data = get(client, owner.headers, cid, mid, EA, T0, T0 + DAY, signal_origin_id=4)["data"]
    assert data["time"] == []


def test_a_correction_with_a_reason_is_audited(
    db: Database, client: TestClient, app: FastAPI
) -> None:
    cid, mid, owner = _setup(db, client, app)
    before = client.get("/api/time", params={"unit": "ms"}, headers=owner.headers).json()
    fix = {"time": [T0 + 70 * Q], "value": [1.2], "origin": [5]}
    put(client, owner.headers, cid, mid, EA, fix, reason="spike: meter reset")
    # the audit entry is stored with the write itself (no waiting for the worker)
    window = {"since": T0, "till": T0 + DAY}
    entries = client.get(_url(cid, mid, tail="audit"), params=window, headers=owner.headers)
    assert entries.status_code == 200, entries.text
    [entry] = entries.json()["entries"]
    assert entry["origin"] == 5
    assert entry["reason"] == "spike: meter reset"
    assert entry["method"] == "manual"
    assert entry["who"] == owner.login
    assert entry["acq_time"] >= before
    # the newest versions show the correction; as_of before it, the measured spike alone
    data = get(client, owner.headers, cid, mid, EA, T0 + 70 * Q, T0 + 71 * Q, get_last=True)
    pairs = zip(data["data"]["origin"], data["data"]["value"], strict=True)
    assert sorted(pairs) == [(1, 9.0), (5, 1.2)]
    old = get(
        client, owner.headers, cid, mid, EA, T0 + 70 * Q, T0 + 71 * Q, get_last=True, as_of=before
    )
    assert old["data"]["origin"] == [1]
    _settle(app)  # the rules rerun on the corrected window keep the event corrected
    events = client.get(_url(cid, mid), params=window, headers=owner.headers).json()["events"]
    assert next(e for e in events if e["rule"] == "spike")["state"] == "corrected"


def test_a_measured_rewrite_with_another_value_is_an_event(
    db: Database, client: TestClient, app: FastAPI
) -> None:
    cid, mid, owner = _setup(db, client, app)
    put(client, owner.headers, cid, mid, EA, {"time": [T0 + 10 * Q], "value": [3.0]})
    _settle(app)
    events = client.get(
        _url(cid, mid), params={"since": T0, "till": T0 + DAY}, headers=owner.headers
    ).json()["events"]
    rewrite = next(e for e in events if e["rule"] == "rewrite")
    assert rewrite["since"] == T0 + 10 * Q
    assert rewrite["detail"]["after"] == 3.0


def test_tenancy_roles_and_bad_input(db: Database, client: TestClient, app: FastAPI) -> None:
    cid, mid, owner = _setup(db, client, app)
    other_cid, stranger = make_tenant(db, Role.owner)
    reader = make_user(db, roles={cid: Role.read})
    window = {"since": T0, "till": T0 + DAY}
    for tail in ("quality", "audit"):
        assert (
            client.get(
                _url(cid, mid, tail=tail), params=window, headers=stranger.headers
            ).status_code
            == 404
        )
        assert (
            client.get(
                _url(cid, mid + 999, tail=tail), params=window, headers=owner.headers
            ).status_code
            == 404
        )
        assert (
            client.get(_url(cid, mid, tail=tail), params=window, headers=reader.headers).status_code
            == 200
        )
    assert (
        client.get(
            f"/api/clients/{cid}/quality", params=window, headers=stranger.headers
        ).status_code
        == 404
    )
    assert (
        client.get(_url(cid, mid, m=999_999), params=window, headers=owner.headers).status_code
        == 404
    )
    for tail in ("quality/estimate", "quality/run"):
        assert (
            client.post(
                _url(cid, mid, tail=tail), params=window, headers=reader.headers
            ).status_code
            == 403
        )
        assert (
            client.post(
                _url(cid, mid, tail=tail), params=window, headers=stranger.headers
            ).status_code
            == 404
        )
    bad = {"since": T0 + DAY, "till": T0}
    for tail in ("quality", "audit"):
        assert (
            client.get(_url(cid, mid, tail=tail), params=bad, headers=owner.headers).status_code
            == 422
        )
    r = client.post(_url(cid, mid, tail="quality/estimate"), params=bad, headers=owner.headers)
    assert r.status_code == 422
    assert (
        client.get(_url(cid, mid), params={"since": T0}, headers=owner.headers).status_code == 422
    )
    assert client.get(_url(cid, mid), params=window).status_code == 401
    # nothing was written by the failed calls
    data = get(client, owner.headers, cid, mid, EA, T0, T0 + DAY)
    assert set(data["data"]["origin"]) == {1}
    assert other_cid != cid
    register = client.post(
        _url(cid, mid, m=moid("A+"), tail="quality/estimate"), params=window, headers=owner.headers
    )
    assert register.status_code == 422  # registers are not estimated, their intervals are
    accept = _url(cid, mid, tail="quality/events/1/accept")
    assert client.post(accept, json={"note": "ok"}, headers=reader.headers).status_code == 403
    assert client.post(accept, json={"note": ""}, headers=owner.headers).status_code == 422


def test_thresholds_per_client_and_sensor_type(
    db: Database, client: TestClient, app: FastAPI
) -> None:
    cid, mid, owner = _setup(db, client, app)
    writer = make_user(db, roles={cid: Role.write})
    url = f"/api/clients/{cid}/quality/thresholds"
    r = client.put(url, json={"thresholds": {"spike_sigmas": 1000}}, headers=owner.headers)
    assert r.status_code == 200, r.text
    assert r.json()["overrides"] == {"0": {"spike_sigmas": 1000}}
    assert r.json()["defaults"]["flatline_hours"] == 24.0
    bad = client.put(url, json={"thresholds": {"nope": 1}}, headers=owner.headers)
    assert bad.status_code == 422
    denied = client.put(url, json={"thresholds": {"zero_hours": 1}}, headers=writer.headers)
    assert denied.status_code == 403
    window = {"since": T0, "till": T0 + DAY}
    r = client.post(_url(cid, mid, tail="quality/run"), params=window, headers=owner.headers)
    assert "spike" not in {e["rule"] for e in r.json()["events"]}  # the override applies
    assert client.get(url, headers=owner.headers).json()["overrides"] == {
        "0": {"spike_sigmas": 1000}
    }


@pytest.mark.parametrize(
    ("key", "raw"),
    [
        ("step_ms", "1" + "0" * 30),  # left int64 in the gap rule: every run a 500
        ("step_ms", "9223372036854775808"),
        ("flatline_rtol", "1e308"),
        ("meter_max_digits", "400"),  # 10.0**400 overflowed
        ("spike_half_window", "1000000"),  # a median over points x window
        ("gap_factor", "NaN"),
        ("high_factor", "Infinity"),
    ],
)
def test_threshold_overrides_the_rules_cannot_compute_with_are_422(
    db: Database, client: TestClient, app: FastAPI, key: str, raw: str
) -> None:
    """Overrides are finite and bounded (1e15; a spike window 1000, register digits 15): one
    beyond made the client's every validation fail (black-box pass after issue #14)."""
    cid, mid, owner = _setup(db, client, app)
    url = f"/api/clients/{cid}/quality/thresholds"
    body = f'{{"thresholds": {{"{key}": {raw}}}}}'
    headers = {**owner.headers, "content-type": "application/json"}
    r = client.put(url, content=body, headers=headers)
    assert r.status_code == 422, r.text
    assert client.get(url, headers=owner.headers).json()["overrides"] == {}
    edge = {"step_ms": 10**15, "spike_half_window": 1000, "meter_max_digits": 15}
    r = client.put(url, json={"thresholds": {key: edge.get(key, 1e15)}}, headers=owner.headers)
    assert r.status_code == 200, r.text
    window = {"since": T0, "till": T0 + DAY}
    r = client.post(_url(cid, mid, tail="quality/run"), params=window, headers=owner.headers)
    assert r.status_code == 200, r.text


def test_quality_routes_are_in_openapi(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    series = "/api/sensors/{client_cid}.{sensor_mid}/signals/{signal_type_moid}"
    for p in ("/quality", "/quality/estimate", "/quality/run", "/audit"):
        assert series + p in paths
    assert "/api/clients/{client_cid}/quality" in paths
    assert MIN == 60_000


def test_a_failing_queue_never_fails_the_write(
    db: Database, client: TestClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid, owner = make_tenant(db, Role.owner)
    mid = make_sensor(db, cid)

    def broken(*_args: object, **_kwargs: object) -> int:
        raise RuntimeError("queue unavailable")

    monkeypatch.setattr(vee_service, "enqueue", broken)
    monkeypatch.setattr(vee_service, "enqueue_apart", broken)
    put(client, owner.headers, cid, mid, EA, day_with_defects())
    _settle(app)
    data = get(client, owner.headers, cid, mid, EA, T0, T0 + DAY)
    assert len(data["data"]["time"]) == 88  # the points stand, unvalidated
    with db.transaction(write=False) as conn:
        assert vee_service.pending(conn) == 0


@contextmanager
def _queue_refusing(db: Database, allowed: str) -> Iterator[None]:
    """The database refuses every queue row but those where `allowed` (a condition on the
    `points` column) holds: a constraint on PostgreSQL, a trigger on SQLite, until the block
    ends."""
    pg = db.dialect == "postgresql"
    with db.transaction() as conn:
        conn.exec_driver_sql(
            f"ALTER TABLE vee_queue ADD CONSTRAINT refuse CHECK ({allowed}) NOT VALID"
            if pg
            else "CREATE TRIGGER refuse BEFORE INSERT ON vee_queue "
            f"WHEN NOT ({allowed.replace('points', 'NEW.points')}) "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    try:
        yield
    finally:
        with db.transaction() as conn:
            conn.exec_driver_sql(
                "ALTER TABLE vee_queue DROP CONSTRAINT refuse" if pg else "DROP TRIGGER refuse"
            )


def test_a_queue_insert_the_database_refuses_never_fails_the_write(
    db: Database, client: TestClient, app: FastAPI
) -> None:
    """The queue's INSERT fails in the database itself (on PostgreSQL that aborts the
    transaction unless its savepoint is rolled back): the points stand, nothing is queued."""
    cid, owner = make_tenant(db, Role.owner)
    mid = make_sensor(db, cid)
    with _queue_refusing(db, "points < 0"):  # every row
        put(client, owner.headers, cid, mid, EA, day_with_defects())
    _settle(app)
    data = get(client, owner.headers, cid, mid, EA, T0, T0 + DAY)
    assert len(data["data"]["time"]) == 88
    with db.transaction(write=False) as conn:
        assert vee_service.pending(conn) == 0
    quality = {"since": T0, "till": T0 + DAY}
    r = client.get(_url(cid, mid), params=quality, headers=owner.headers)
    assert r.json()["events"] == []  # never queued, never validated
    put(client, owner.headers, cid, mid, EA, day_with_defects())  # queued once it can be
    _settle(app)
    r = client.get(_url(cid, mid), params=quality, headers=owner.headers)
    assert r.json()["events"] != []


def test_a_live_writes_queue_rows_are_enqueues_rows(db: Database) -> None:
    """enqueue_apart (a live write's queue rows: on PostgreSQL one INSERT of arrays) stores
    what enqueue stores, row for row."""
    writer = Principal(user_id=7, login=None)
    writes = [
        vee_service.Written(3, 10 + i, moid("A+"), T0 + i, T0 + DAY, (1, 5) if i else (2,), i)
        for i in range(3)
    ]
    got = []
    for queue in (vee_service.enqueue, vee_service.enqueue_apart):
        with db.transaction() as conn:
            assert queue(conn, writer, writes, reason="why 'quoted'") == 3
            rows = conn.execute(select(vee_queue).order_by(vee_queue.c.id)).all()
            conn.execute(delete(vee_queue))
        got.append([r._asdict() | {"id": 0, "enqueued_at": 0} for r in rows])
    assert got[0] == got[1]
    assert got[0][1]["origins"] == "1,5"
    assert got[0][0]["who"] == "user 7"
    with db.transaction() as conn:
        assert vee_service.enqueue_apart(conn, writer, [], reason=None) == 0


def test_a_live_writes_queue_rows_refused_midway_leave_none_and_the_write_goes_on(
    db: Database,
) -> None:
    """The third of three rows refused by the database: enqueue_apart raises, the two rows
    before it are rolled back with its savepoint, and the write's transaction goes on."""
    writer = Principal(user_id=7, login=None)
    writes = [vee_service.Written(3, 10 + i, EA, T0, T0 + DAY, (1,), i) for i in range(3)]
    with _queue_refusing(db, "points <> 2"), db.transaction() as conn:
        with pytest.raises(Exception, match="refuse"):
            vee_service.enqueue_apart(conn, writer, writes, reason=None)
        assert vee_service.pending(conn) == 0
        assert vee_service.enqueue_apart(conn, writer, writes[:2], reason=None) == 2
    with db.transaction(write=False) as conn:
        assert vee_service.pending(conn) == 2  # committed: the transaction went on


def test_validation_after_writes_can_be_switched_off(db: Database, settings: Settings) -> None:
    off = create_app(settings.model_copy(update={"validate_after_write": False}))
    cid, owner = make_tenant(db, Role.owner)
    mid = make_sensor(db, cid)
    with TestClient(off) as c:
        put(c, owner.headers, cid, mid, EA, day_with_defects())
        r = c.get(_url(cid, mid), params={"since": T0, "till": T0 + DAY}, headers=owner.headers)
    assert r.json()["events"] == []
    assert r.json()["completeness"]["present"] == 88


def test_a_gap_fill_graph_run_is_audited_as_the_run(
    db: Database, client: TestClient, app: FastAPI
) -> None:
    cid, mid, owner = _setup(db, client, app)
    res = client.post(
        "/api/tasks/graphs/run/name",
        params={"graph_name": "gap_fill", "since": T0, "till": T0 + DAY},
        json={"client_cid": cid, "sensor_mid": mid, "moid": EA},
        headers=owner.headers,
    )
    assert res.status_code == 201, res.text
    run_id = res.json()["run_id"]
    window = {"since": T0, "till": T0 + DAY}
    entries = client.get(_url(cid, mid, tail="audit"), params=window, headers=owner.headers)
    [entry] = entries.json()["entries"]
    assert entry["origin"] == 4
    assert entry["points"] == 8
    assert entry["method"] == "gap_fill"
    assert entry["who"] == f"graph run {run_id} by {owner.login}"
    assert entry["acq_time"] == res.json()["run_time"]


def test_a_queued_window_is_claimed_once_and_again_when_its_claim_expires(db: Database) -> None:
    window = vee_service.Written(1, 2, EA, T0, T0 + Q, (1,), 1)
    with db.transaction() as conn:
        vee_service.enqueue(conn, ROBOT, [window])
        assert len(vee_service.claim(conn)) == 1
        assert vee_service.claim(conn) == []  # held by the first claim
        old = vee_service.CLAIM_EXPIRES_MS + 1
        conn.execute(update(vee_queue).values(claimed_at=vee_queue.c.claimed_at - old))
        [again] = vee_service.claim(conn)
        vee_service.done(conn, [int(again.id)])
        assert vee_service.pending(conn) == 0


def test_without_history_the_assigned_standard_profile_fills(
    db: Database, client: TestClient
) -> None:
    cid, owner = make_tenant(db, Role.owner)
    mid = make_sensor(db, cid)
    info = {"standard_profile": "H25", "annual_energy_kwh": 3650.0}
    with db.transaction() as conn:
        conn.execute(update(sensors).where(sensors.c.mid == mid).values(info=json.dumps(info)))
    day = T0 // DAY * DAY
    r = client.post(
        _url(cid, mid, tail="quality/estimate"),
        params={"since": day, "till": day + DAY},
        headers=owner.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["methods"] == {"profile": 96}
    data = get(client, owner.headers, cid, mid, EA, day, day + DAY, signal_origin_id=4)
    assert 5.0 < sum(data["data"]["value"]) < 20.0  # a day of a 3650 kWh/year household


def test_a_window_that_fails_validation_is_logged_and_dropped(db: Database) -> None:
    gone = vee_service.Written(999_999, 999_999, EA, T0, T0 + Q, (1,), 1)  # no such sensor
    with db.transaction() as conn:
        vee_service.enqueue(conn, ROBOT, [gone])
    assert process(db, SeriesStore(db.dialect), 10_000) == 0
    with db.transaction(write=False) as conn:
        assert vee_service.pending(conn) == 0


def _until(done: Callable[[], bool], what: str, tries: int = 400) -> None:
    """Poll a background outcome a bounded number of times (no bound on how long each takes)."""
    for _ in range(tries):
        if done():
            return
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def test_a_worker_drains_the_queue_at_start_and_by_its_periodic_look(
    db: Database, settings: Settings, client: TestClient
) -> None:
    """Points stored and windows queued by other processes (the API's, a bridge's) and
    nobody waking the worker: it validates what it finds at start and what comes later."""
    cid, owner = make_tenant(db, Role.owner)
    first, second = make_sensor(db, cid), make_sensor(db, cid, "second")
    store = SeriesStore(db.dialect)

    def stored_and_queued(mid: int) -> None:
        cols = columns.decode(json.loads(json.dumps(day_with_defects())))  # plain floats
        item = signals.WriteItem(cid, mid, EA, None, cols, ("test",))
        with db.transaction() as conn:
            signals.write(conn, store, ROBOT, [item])
            written = vee_service.written(cid, mid, EA, cols.time, cols.origin)
            assert written is not None
            vee_service.enqueue(conn, ROBOT, [written])

    def rules(c: TestClient, mid: int) -> set[str]:
        r = c.get(_url(cid, mid), params={"since": T0, "till": T0 + DAY}, headers=owner.headers)
        assert r.status_code == 200, r.text
        return {e["rule"] for e in r.json()["events"]}

    stored_and_queued(first)  # before the worker starts (a restart's leftovers)
    quick = settings.model_copy(
        update={"validate_poll_seconds": 0.05, "validate_delay_seconds": 0.0}
    )
    stop = threading.Event()
    worker = threading.Thread(target=serve, args=(db, quick, stop))
    worker.start()
    try:
        _until(lambda: {"gap", "spike"} <= rules(client, first), "the startup drain")
        stored_and_queued(second)  # while it runs, with nothing to kick it
        _until(lambda: {"gap", "spike"} <= rules(client, second), "a periodic drain")
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not worker.is_alive()
    with db.transaction(write=False) as conn:
        assert vee_service.pending(conn) == 0


def test_the_poll_interval_is_a_bounded_setting(settings: Settings) -> None:
    assert Settings(demo=False).validate_poll_seconds == 1.0
    for bad in (0, -1, 3601):
        with pytest.raises(ValueError, match="validate_poll_seconds"):
            Settings(demo=False, validate_poll_seconds=bad)


def test_under_writes_a_drain_is_followed_by_a_rest_in_proportion_to_it(
    db: Database, client: TestClient, settings: Settings
) -> None:
    """While writes keep coming, drains take at most validate_max_share of the worker's time:
    after one of d seconds none starts for d * (1 - share) / share; once writes pause, the
    next drains at once."""
    assert rest_after(1.0, 0.25) == 3.0
    assert rest_after(2.0, 0.5) == 2.0
    assert rest_after(5.0, 1.0) == 0.0
    assert Settings(demo=False).validate_max_share == 0.25
    for bad in (0, -0.1, 1.5):
        with pytest.raises(ValueError, match="validate_max_share"):
            Settings(demo=False, validate_max_share=bad)
    # A share of 1/100,000 rests ~10^5 times a drain: hours even for one of a few tens of
    # microseconds. No max lag: a drain under writes is due at once, but for the rest.
    cid, mid, _, sparing = _a_day_and_a_worker(
        db,
        client,
        settings,
        validate_delay_seconds=0.3,
        validate_max_lag_seconds=0.0,
        validate_max_share=1e-5,
    )
    try:
        with _bulk_load(db, cid, mid):
            assert sparing.kick().result() > 0  # the first under writes: no rest before it
            assert sparing.kick().result() == 0  # resting
            assert sparing.kick().result() == 0
        assert sparing.kick().result() > 0  # writes paused: the rest is not waited out
    finally:
        sparing.shutdown()


def _a_day_and_a_worker(
    db: Database, client: TestClient, settings: Settings, **update: float
) -> tuple[int, int, Actor, Worker]:
    """A tenant's day with defects PUT (its window queued), and a worker with `update` to
    the settings: (cid, mid, owner, worker)."""
    cid, owner = make_tenant(db, Role.owner)
    mid = make_sensor(db, cid)
    put(client, owner.headers, cid, mid, EA, day_with_defects())
    return cid, mid, owner, Worker(db, settings.model_copy(update=update))


@contextmanager
def _bulk_load(db: Database, cid: int, mid: int) -> Iterator[None]:
    """Windows queued every 20 ms by another thread while the block runs (a bulk load's
    requests, as the queue sees them)."""
    stop = threading.Event()
    one = vee_service.Written(cid, mid, EA, T0, T0 + Q, (1,), 1)

    def keep_queueing() -> None:
        while not stop.is_set():
            with db.transaction(settle=False) as conn:
                vee_service.enqueue(conn, ROBOT, [one])
            time.sleep(0.02)

    writer = threading.Thread(target=keep_queueing)
    writer.start()
    try:
        yield
    finally:
        stop.set()
        writer.join()


def _queued(db: Database) -> int:
    with db.transaction(write=False, settle=False) as conn:
        return vee_service.pending(conn)


def test_a_drain_waits_while_writes_keep_coming_and_runs_once_they_pause(
    db: Database, client: TestClient, settings: Settings
) -> None:
    """A drain whose delay saw the queue grow leaves it alone (a bulk load keeps the cores):
    the next one after the writes stop takes every window."""
    cid, mid, owner, patient = _a_day_and_a_worker(
        db, client, settings, validate_delay_seconds=0.5, validate_max_lag_seconds=600.0
    )
    try:
        with _bulk_load(db, cid, mid):
            assert patient.kick().result() == 0
            assert patient.kick().result() == 0
            left = _queued(db)
            assert left > 10  # the windows of a second of writes, none claimed
        assert patient.kick().result() >= left  # writes paused: all of them
        assert _queued(db) == 0
        r = client.get(
            _url(cid, mid), params={"since": T0, "till": T0 + DAY}, headers=owner.headers
        )
        assert {"gap", "spike"} <= {e["rule"] for e in r.json()["events"]}
    finally:
        patient.shutdown()


def test_under_writes_that_never_pause_a_drain_runs_once_the_oldest_window_waited_the_max_lag(
    db: Database, client: TestClient, settings: Settings
) -> None:
    cid, mid, _, lagging = _a_day_and_a_worker(
        db, client, settings, validate_delay_seconds=0.3, validate_max_lag_seconds=1.0
    )
    try:
        with _bulk_load(db, cid, mid):
            time.sleep(1.0)  # the PUT's window has waited the max lag
            assert lagging.kick().result() > 0  # while the writes go on
    finally:
        lagging.shutdown()


def test_a_workers_look_at_the_queue_merges_nothing_pending(
    db: Database, client: TestClient
) -> None:
    """The poll's look reads the queue alone: the points PUTs left in the write-ahead table
    stay there (merging them once a poll would run the merges beside a bulk load); the
    validation's read merges them, and sees them."""
    cid, owner = make_tenant(db, Role.owner)
    mid = make_sensor(db, cid)
    put(client, owner.headers, cid, mid, EA, day_with_defects())

    def pending_rows() -> int:
        with db.transaction(write=False, settle=False) as conn:
            return int(conn.execute(text("SELECT count(*) FROM pending")).scalar_one())

    assert pending_rows() == 1
    seen = look(db)
    assert seen.newest is not None
    assert seen.oldest_at is not None
    assert pending_rows() == 1
    assert process(db, SeriesStore(db.dialect), 10_000) == 1
    assert pending_rows() == 0
    r = client.get(_url(cid, mid), params={"since": T0, "till": T0 + DAY}, headers=owner.headers)
    assert {"gap", "spike"} <= {e["rule"] for e in r.json()["events"]}
    assert look(db).oldest_at is None  # nothing left to claim


def test_the_validation_max_lag_is_bounded() -> None:
    assert Settings(demo=False).validate_max_lag_seconds == 30.0
    for bad in (-1.0, 3601.0):
        with pytest.raises(ValueError, match="validate_max_lag_seconds"):
            Settings(demo=False, validate_max_lag_seconds=bad)


def test_zeros_inside_an_outage_marked_on_the_sensor_are_not_a_zero_run(
    db: Database, client: TestClient, app: FastAPI
) -> None:
    from sqlalchemy import update

    from besmart_server.server.sensors.tables import sensors

    cid, owner = make_tenant(db, Role.owner)
    mid = make_sensor(db, cid)
    zeros = {"time": [T0 + i * Q for i in range(2 * 96)], "value": [0.0] * (2 * 96)}
    put(client, owner.headers, cid, mid, EA, zeros)
    window = {"since": T0, "till": T0 + 2 * DAY}

    def rules_found() -> set[str]:
        r = client.post(_url(cid, mid, tail="quality/run"), params=window, headers=owner.headers)
        assert r.status_code == 200, r.text
        return {e["rule"] for e in r.json()["events"]}

    assert "zero_run" in rules_found()
    marked = json.dumps({"outages": [[T0, T0 + 2 * DAY], "not a pair", [5, 1]]})
    with db.transaction() as conn:
        conn.execute(update(sensors).where(sensors.c.mid == mid).values(info=marked))
    assert "zero_run" not in rules_found()
    half = json.dumps({"outages": [[T0, T0 + DAY // 2]]})  # 12 h marked: 36 h of zeros left
    with db.transaction() as conn:
        conn.execute(update(sensors).where(sensors.c.mid == mid).values(info=half))
    assert "zero_run" in rules_found()


def test_one_claim_takes_every_queued_window_of_a_bulk_load_in_one_statement(db: Database) -> None:
    # A bulk load queues a row per series and request: one drain claims them all (the old
    # claim took 200 a time, a statement each) so they merge into a window per series.
    days = [
        vee_service.Written(1, 2, EA, T0 + d * 96 * Q, T0 + (d + 1) * 96 * Q, (1,), 96)
        for d in range(250)
    ]
    with db.transaction() as conn:
        vee_service.enqueue(conn, ROBOT, days)
        rows = vee_service.claim(conn, CLAIM_ROWS)
        assert [int(r.since) for r in rows] == [w.since for w in days]  # in queue order
        assert vee_service.claim(conn, CLAIM_ROWS) == []
    merged = merged_windows(rows)  # 24,000 points: one window
    assert [(w.since, w.till, len(ids)) for w, ids in merged] == [(T0, T0 + 250 * 96 * Q, 250)]


def test_the_windows_of_a_multi_series_write_are_each_items_own() -> None:
    def item(mid: int, times: list[int], origins: list[int]) -> signals.WriteItem:
        body = {"time": times, "value": [1.0] * len(times), "origin": origins}
        return signals.WriteItem(1, mid, EA, None, columns.decode(body), ("body",))

    items = [
        item(10, [T0 + Q, T0], [1, 1]),
        item(11, [], []),  # no points: no window
        item(12, [T0, T0 + 3 * Q, T0 + Q], [5, 1, 1]),
    ]
    writes, edits = _windows(items)
    assert writes == [
        vee_service.written(1, 10, EA, items[0].columns.time, items[0].columns.origin),
        vee_service.written(1, 12, EA, items[2].columns.time, items[2].columns.origin),
    ]
    assert writes[1].origins == (1, 5)
    assert writes[1].till == T0 + 3 * Q + 1
    assert edits == [items[2]]  # origin 5 (corrected) is audited


def test_the_validation_delay_is_bounded() -> None:
    assert Settings(demo=False).validate_delay_seconds == 1.0
    for bad in (-1.0, 61.0):
        with pytest.raises(ValueError, match="validate_delay_seconds"):
            Settings(demo=False, validate_delay_seconds=bad)


def test_a_batch_of_windows_locks_its_series_in_id_order(db: Database) -> None:
    """Writes lock their series in id order; a drain's batch of keeps must too, or a write
    and a drain deadlock on PostgreSQL. A transaction holds the lower id; the batch (its
    windows in the other order) waits for it holding nothing, so the transaction still takes
    the higher id at once (NOWAIT; window order would have locked it first)."""
    if db.dialect != "postgresql":
        pytest.skip("PostgreSQL only: SQLite has one writer at a time")
    cid, _ = make_tenant(db, Role.owner)
    mids = [make_sensor(db, cid, f"batch{i}") for i in range(2)]
    store = SeriesStore(db.dialect)
    with db.transaction() as conn:
        ids = store.series_ids(conn, [(m, EA) for m in mids], create=True)
    low, high = sorted(ids.values())
    mid_of = {i: key[0] for key, i in ids.items()}
    windows = [vee_service.Window(cid, mid_of[i], EA, T0, T0 + Q) for i in (high, low)]
    failed: list[BaseException] = []

    def batch() -> None:
        try:
            with db.transaction() as conn:
                vee_service.keep_many(conn, store, [(w, []) for w in windows])
        except BaseException as exc:  # reported by the assertion below
            failed.append(exc)

    def waiting() -> bool:
        with db.transaction(write=False) as conn:
            return bool(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                ).scalar()
            )

    mine = select(series.c.id).where(series.c.id == low).with_for_update()
    with db.transaction() as conn:
        conn.execute(mine)
        worker = threading.Thread(target=batch)
        worker.start()
        _until(waiting, "the batch waiting for the lower id")
        taken = conn.execute(
            select(series.c.id).where(series.c.id == high).with_for_update(nowait=True)
        ).scalar()
        assert taken == high
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert failed == []


def _finding(rule: Rule, since: int, till: int) -> Finding:
    return Finding(since, till, rule, Severity.WARNING, {"why": "test"})


def _events(db: Database, sid: int) -> list[tuple[int, str, int, int, str]]:
    q = quality_events.c
    with db.transaction(write=False) as conn:
        rows = conn.execute(
            select(q.id, q.rule, q.since, q.till, q.state)
            .where(q.series_id == sid)
            .order_by(q.since, q.rule)
        )
        return [(int(r.id), r.rule, int(r.since), int(r.till), r.state) for r in rows]


def test_keeping_a_batch_is_keeping_its_windows_one_after_another(db: Database) -> None:
    """keep_many stores a batch's findings with a statement of each kind for all its windows;
    what it leaves is what keeping them one window after another leaves, two windows of one
    series included: an open event found again keeps its id, an open one not found again
    goes (one the batch's first window made and its second does not find too), an accepted
    one is not raised again, a series is made only for findings."""
    cid, _ = make_tenant(db, Role.owner)
    store = SeriesStore(db.dialect)
    A_MINUS = moid("EA-")

    def layout(prefix: str) -> tuple[int, list[tuple[vee_service.Window, list[Finding]]], int]:
        mid, bare = make_sensor(db, cid, f"{prefix}-a"), make_sensor(db, cid, f"{prefix}-b")
        with db.transaction() as conn:
            sid = store.series_ids(conn, [(mid, EA)], create=True)[(mid, EA)]
            conn.execute(
                quality_events.insert(),
                [
                    {
                        "series_id": sid,
                        "since": since,
                        "till": till,
                        "rule": rule,
                        "severity": "warning",
                        "detail": "{}",
                        "found_at": 1,
                        "state": state,
                    }
                    for rule, since, till, state in (
                        ("spike", T0, T0 + Q, "open"),  # found again: kept, same id
                        ("flatline", T0 + 2 * Q, T0 + 3 * Q, "open"),  # not found: goes
                        ("spike", T0 + 4 * Q, T0 + 5 * Q, "accepted"),  # never raised again
                        ("gap", T0 + 20 * Q, T0 + 21 * Q, "open"),  # outside both windows
                    )
                ],
            )
        first = [
            _finding(Rule.SPIKE, T0, T0 + Q),
            _finding(Rule.SPIKE, T0 + 4 * Q, T0 + 5 * Q),
            _finding(Rule.ZERO_RUN, T0 + 5 * Q, T0 + 6 * Q),  # the second window drops it
            _finding(Rule.HIGH, T0 + 3 * Q, T0 + 4 * Q),  # the second window does not touch
        ]
        second = [_finding(Rule.NEGATIVE, T0 + 7 * Q, T0 + 8 * Q)]
        batch = [
            (vee_service.Window(cid, mid, EA, T0, T0 + 6 * Q), first),
            (vee_service.Window(cid, mid, EA, T0 + 5 * Q, T0 + 8 * Q), second),
            (vee_service.Window(cid, bare, EA, T0, T0 + Q), []),  # no series, none made
            (vee_service.Window(cid, bare, A_MINUS, T0, T0 + Q), [_finding(Rule.GAP, T0, T0 + Q)]),
        ]
        return sid, batch, bare

    sid, batch, bare = layout("many")
    before = {(rule, since): i for i, rule, since, _, _ in _events(db, sid)}
    with db.transaction() as conn:
        got = vee_service.keep_many(conn, store, batch)
    with db.transaction(write=False) as conn:
        made = store.series_ids(conn, [(bare, EA), (bare, A_MINUS)], create=False)
    assert (bare, EA) not in made
    assert got == [sid, sid, None, made[(bare, A_MINUS)]]
    after = _events(db, sid)
    assert [(r, a - T0, b - T0, st) for _, r, a, b, st in after] == [
        ("spike", 0, Q, "open"),
        ("high", 3 * Q, 4 * Q, "open"),
        ("spike", 4 * Q, 5 * Q, "accepted"),
        ("negative", 7 * Q, 8 * Q, "open"),
        ("gap", 20 * Q, 21 * Q, "open"),
    ]
    assert after[0][0] == before[("spike", T0)]  # its id stays valid for an accept
    assert after[2][0] == before[("spike", T0 + 4 * Q)]
    assert [r for _, r, *_ in _events(db, made[(bare, A_MINUS)])] == ["gap"]

    one_sid, one_batch, _ = layout("one")
    for w, found in one_batch:
        with db.transaction() as conn:
            vee_service.keep(conn, store, w, found)
    assert [e[1:] for e in _events(db, one_sid)] == [e[1:] for e in after]


def test_keep_looks_up_again_an_id_the_store_remembers_for_a_deleted_series(
    db: Database,
) -> None:
    """A series id the store remembers whose row is gone (its sensor deleted, a sensor made
    again with another mid) is not written to: keep finds the window's series again."""
    cid, _ = make_tenant(db, Role.owner)
    mid = make_sensor(db, cid, "stale")
    store = SeriesStore(db.dialect)
    with db.transaction() as conn:
        old = store.series_ids(conn, [(mid, EA)], create=True)[(mid, EA)]
    with db.transaction() as conn:  # the row goes behind the store's back
        conn.execute(delete(series).where(series.c.id == old))
    w = vee_service.Window(cid, mid, EA, T0, T0 + Q)
    with db.transaction() as conn:
        sid = vee_service.keep(conn, store, w, [_finding(Rule.GAP, T0, T0 + Q)])
    assert sid is not None
    assert sid != old
    assert [e[1] for e in _events(db, sid)] == ["gap"]
    assert _events(db, old) == []
