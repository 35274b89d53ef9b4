"""A new SQLite database file gets the server's page size; an existing one keeps its own."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from sqlalchemy import select

from besmart_server.server import migrate
from besmart_server.server.db import SQLITE_PAGE_SIZE, Database
from besmart_server.server.signals.tables import signal_types


def _page_size(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])


def test_a_new_database_gets_the_page_size(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    db = Database(f"sqlite:///{path}")
    try:
        migrate.upgrade(db)
    finally:
        db.dispose()
    assert SQLITE_PAGE_SIZE == 16384
    assert _page_size(path) == SQLITE_PAGE_SIZE


def test_an_existing_database_keeps_its_page_size(tmp_path: Path) -> None:
    """Changing an existing file's page size would need a VACUUM; opening it does not."""
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA page_size=4096")
        conn.execute("PRAGMA journal_mode=WAL")
    db = Database(f"sqlite:///{path}")
    try:
        migrate.upgrade(db)
        with db.transaction(write=False) as conn:
            assert conn.execute(select(signal_types.c.moid)).first() is not None
    finally:
        db.dispose()
    assert _page_size(path) == 4096
