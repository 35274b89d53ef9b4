"""The app in-process on a fresh database holding the benchmark's sensors, with a writer's
token, row 1's request bodies (100 series x 100 points, as bench.run sends them) and row
1d's pushes: what bench.vee_drain and bench.profile_write measure on."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.testclient import TestClient

from bench.besmart import put_body
from bench.scratch import client_with_sensors, scratch_database
from bench.workload import FULL, METER_SIGNALS, MS_15MIN, MS_DAY, generate
from besmart_server.schemas.users import Role
from besmart_server.server import migrate
from besmart_server.server.app import create_app
from besmart_server.server.config import Settings
from besmart_server.server.db import Database
from besmart_server.server.users import service as users

# Row 1's requests that write the meters' whole year (351: 35,040 quarter hours of each of
# the 100 series, 100 points of each a request); row 1d's pushes follow it.
YEAR = math.ceil(
    FULL.days * MS_DAY // MS_15MIN / (FULL.batch_points // (FULL.sensors * len(METER_SIGNALS)))
)


@dataclass(frozen=True)
class InProcess:
    app: FastAPI  # started: its state holds the database, the store and the write observers
    settings: Settings
    client: TestClient
    token: str
    bodies: list[bytes]  # multi-series PUT bodies, in the order row 1 sends them
    pushes: list[bytes]  # row 1d's pushes (one point of each series), after row 1's year

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}


@contextmanager
def bench_app(url: str | None, requests: int, prefix: str) -> Iterator[InProcess]:
    """A started app on a fresh database (SQLite in a temporary file when `url` is None, else
    a new database on that PostgreSQL server), and the first `requests` bodies of row 1."""
    wl = generate(FULL)
    with scratch_database(url, prefix) as db_url:
        db = Database(db_url)
        migrate.upgrade(db)
        with db.transaction() as conn:
            cid, mids = client_with_sensors(conn, "bench", wl.sensors)
            uid = users.create_user(conn, login="bench", password="bench bench bench")
            users.grant_role(conn, user_id=uid, client_cid=cid, role=Role.write)
            token = users.issue_token(conn, user_id=uid, ttl_seconds=3600).token
        db.dispose()
        settings = Settings(database_url=db_url, demo=False)
        app = create_app(settings)
        bodies = [put_body(batch, cid, mids) for batch in wl.ingest_batches("time")[:requests]]
        pushes = [put_body(batch, cid, mids) for batch in wl.push_batches()]
        with TestClient(app) as client:
            yield InProcess(app, settings, client, token, bodies, pushes)
