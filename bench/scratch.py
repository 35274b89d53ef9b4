"""A throwaway database for in-process measurements, removed afterwards."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from besmart_server.server.db import psycopg_dsn


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
