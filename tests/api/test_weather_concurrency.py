"""Concurrent first imports create one weather client and one grid point, on both engines."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from besmart_server.server.db import Database
from besmart_server.server.sensors.tables import sensors
from besmart_server.server.users.tables import clients
from besmart_server.server.weather import service


def test_concurrent_first_grid_points_create_one_client_and_one_point(db: Database) -> None:
    barrier = threading.Barrier(4)
    mids: list[int] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            barrier.wait(timeout=10)
            with db.transaction() as conn:
                mids.append(service.grid_point(conn, 50.06, 19.94))
        except BaseException as exc:  # collected: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(set(mids)) == 1
    with db.transaction(write=False) as conn:
        assert conn.scalar(select(func.count()).where(clients.c.is_system.is_(True))) == 1
        assert conn.scalar(select(func.count()).select_from(sensors)) == 1
