"""A throwaway database for in-process measurements, removed afterwards, and the client and
sensors a measurement writes into."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy import Connection, insert
from sqlalchemy.engine import make_url

from besmart_server.server.db import now_ms, psycopg_dsn
from besmart_server.server.sensors.tables import sensors
from besmart_server.server.users import service as users


@contextmanager
def scratch_database(url: str | None, prefix: str) -> Iterator[str]:
    """The URL of a fresh database: a SQLite file in a temporary folder when `url` is None,
    else a new database on that PostgreSQL server, dropped on exit."""
    if url is None:
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / f'{prefix}.db'}"
        return
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = psycopg_dsn(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def client_with_sensors(
    conn: Connection, client: str, names: Iterable[str]
) -> tuple[int, dict[str, int]]:
    """A new client and a sensor of it per name: (client_cid, each name's sensor_mid)."""
    cid = users.create_client(conn, name=client)
    mids: dict[str, int] = {}
    for name in names:
        row = insert(sensors).values(client_cid=cid, name=name, created_at=now_ms())
        mids[name] = int(conn.execute(row.returning(sensors.c.mid)).scalar_one())
    return cid, mids
