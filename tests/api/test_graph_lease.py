"""Graph run leases and the reaper (issue #18): a run whose worker died (SIGKILL, a lost
host) does not stay `running` forever. Its lease runs out, the reaper queues it again (or
fails it after the last attempt), the next worker runs it once, and a worker that comes back
late with a taken-over run stores nothing."""

from __future__ import annotations

import os
import socket
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
from besmart_server.server.graphs.tables import graph_runs
from besmart_server.server.signals.tables import blocks
from tests.api.signal_helpers import make_sensor, moid, put
from tests.factories import Actor, make_tenant

T0 = 1_782_864_000_000  # 2026-07-01T00:00:00Z
DAY = 86_400_000
EA_PLUS = 1011


class Collector:
    """An executor that only remembers what it was given (the test runs them itself)."""

    kind = "dramatiq"

    def __init__(self) -> None:
        self.sent: list[tuple[int, Principal]] = []

    def submit(self, run_id: int, principal: Principal) -> None:
        self.sent.append((run_id, principal))


def _queued_run(client: TestClient, db: Database, cid: int, actor: Actor) -> tuple[int, Any]:
    """A queued run of a one-day graph over a sensor with a day of A+ readings."""
    mid = make_sensor(db, cid, "meter")
    times = [T0 + k * 900_000 for k in range(97)]
    put(client, actor.headers, cid, mid, moid("A+"), {"time": times, "value": list(range(97))})
    read = {"client_cid": cid, "sensor_mid": mid, "moid": moid("A+"), "delta_t": 15}
    graph = {
        "nodes": [
            {"function": "signals", "params": {**read, "energy_per_interval": True}},
            {
                "function": "write",
                "params": {"client_cid": cid, "sensor_mid": mid, "origin": 3, "moid": EA_PLUS},
            },
        ],
        "edges": [{"from": 0, "to": 1}],
    }
    res = client.put(
        "/api/tasks/graphs/lease", params={"client_cid": cid}, json=graph, headers=actor.headers
    )
    assert res.status_code == 201, res.text
    who = service.principal_from_json({"user_id": actor.user_id, "roles": {cid: "owner"}})
    executor = Collector()
    run_id = service.submit(db, who, executor, "lease", T0, T0 + DAY, {})
    assert executor.sent == [(run_id, who)]
    return run_id, who


def _row(db: Database, run_id: int) -> Any:
    with db.transaction(write=False) as conn:
        return conn.execute(select(graph_runs).where(graph_runs.c.id == run_id)).one()


def _points_written(db: Database) -> int:
    """Points (every version) of origin 3, the run's target: it wrote once, or not at all."""
    with db.transaction(write=False) as conn:
        return int(
            conn.execute(
                select(func.coalesce(func.sum(blocks.c.n), 0)).where(blocks.c.origin == 3)
            ).scalar_one()
        )


def _die_while_running(db: Database, run_id: int, lease_ms: int) -> int:
    """What a SIGKILLed worker leaves: the run claimed (`running`, a lease) and never ended.
    Its attempt number."""
    row, attempt = service._claim(db, run_id, lease_ms)
    assert attempt is not None
    assert row.state == "queued"
    return attempt


@pytest.fixture
def owner(db: Database) -> tuple[int, Actor]:
    return make_tenant(db, Role.owner)


def test_a_run_whose_worker_died_is_queued_again_and_runs_once(
    client: TestClient, db: Database, settings: Settings, owner: tuple[int, Actor]
) -> None:
    cid, actor = owner
    run_id, who = _queued_run(client, db, cid, actor)
    _die_while_running(db, run_id, lease_ms=60_000)
    assert service.reap(db, max_attempts=3) == []  # the lease holds: nobody takes it over
    assert _row(db, run_id).state == "running"
    again = service.reap(db, max_attempts=3, now=now_ms() + 61_000)
    assert again == [(run_id, who)]
    assert _row(db, run_id).state == "queued"
    assert service.reap(db, max_attempts=3, now=now_ms() + 61_000) == []  # queued: not reaped
    record = service.execute(db, run_id, who, settings=settings)
    assert record is not None
    row = _row(db, run_id)
    assert (row.state, row.attempts, row.lease_until) == ("done", 2, None)
    assert row.claimed_by == f"{socket.gethostname()}:{os.getpid()}"
    # the message of the first attempt delivered again (dramatiq redelivers a dead worker's
    # messages): the run is done, it does not run a second time
    assert service.execute(db, run_id, who, settings=settings) is None
    assert _row(db, run_id).state == "done"


def test_a_late_worker_of_a_taken_over_run_stores_nothing(
    client: TestClient, db: Database, settings: Settings, owner: tuple[int, Actor]
) -> None:
    """Attempt 1 stalls past its lease (a paused VM, a partitioned host); attempt 2 runs it.
    Attempt 1's final transaction is fenced by its attempt number: it cannot mark the run
    done, nor fail it, and its points roll back with it."""
    cid, actor = owner
    run_id, who = _queued_run(client, db, cid, actor)
    first = _die_while_running(db, run_id, lease_ms=1)
    assert service.reap(db, max_attempts=3, now=now_ms() + 10) == [(run_id, who)]
    record = service.execute(db, run_id, who, settings=settings)
    written = _points_written(db)
    assert written > 0, record
    with db.transaction() as conn:
        late = conn.execute(
            update(graph_runs).where(service._mine(run_id, first)).values(state="failed")
        )
        assert late.rowcount == 0
    row = _row(db, run_id)
    assert (row.state, row.attempts) == ("done", 2)
    assert _points_written(db) == written


def test_a_run_is_failed_after_its_last_attempt(
    client: TestClient, db: Database, owner: tuple[int, Actor]
) -> None:
    cid, actor = owner
    run_id, who = _queued_run(client, db, cid, actor)
    for attempt in (1, 2):
        assert _die_while_running(db, run_id, lease_ms=1) == attempt
        assert service.reap(db, max_attempts=3, now=now_ms() + 10) == [(run_id, who)]
    _die_while_running(db, run_id, lease_ms=1)
    assert service.reap(db, max_attempts=3, now=now_ms() + 10) == []
    row = _row(db, run_id)
    assert (row.state, row.attempts, row.lease_until) == ("failed", 3, None)
    assert row.error == "its worker stopped (attempt 3 of 3)"
    assert _points_written(db) == 0


def test_a_request_run_whose_server_died_is_failed_not_queued(
    client: TestClient, db: Database, owner: tuple[int, Actor]
) -> None:
    """Nobody waits for a request's (or the CLI's) run once its process is gone."""
    cid, actor = owner
    run_id, _ = _queued_run(client, db, cid, actor)
    with db.transaction() as conn:
        conn.execute(update(graph_runs).where(graph_runs.c.id == run_id).values(executor="request"))
    _die_while_running(db, run_id, lease_ms=1)
    assert service.reap(db, max_attempts=3, now=now_ms() + 10) == []
    assert _row(db, run_id).state == "failed"


def test_a_running_run_renews_its_lease(
    client: TestClient, db: Database, owner: tuple[int, Actor]
) -> None:
    cid, actor = owner
    run_id, _ = _queued_run(client, db, cid, actor)
    attempt = _die_while_running(db, run_id, lease_ms=300)
    first = int(_row(db, run_id).lease_until)
    beat = service._Heartbeat(db, run_id, attempt, 300)
    try:
        deadline = time.monotonic() + 30  # a bound, not a timing: one renewal is enough
        while int(_row(db, run_id).lease_until) == first:
            assert time.monotonic() < deadline, "the lease was never renewed"
            time.sleep(0.05)
    finally:
        beat.stop()
    assert int(_row(db, run_id).lease_until) > first
