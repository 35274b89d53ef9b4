"""SQLite WAL checkpoints on the server's own thread, off the requests' path."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from besmart_server.server.db import Database

ROWS = 6_000
BLOB = 1_000  # ~6 MB: beyond the 1,000 WAL pages (4 MB) at which SQLite would checkpoint


def _fill(db: Database) -> None:
    with db.transaction() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)"))
        conn.execute(text("INSERT INTO t (b) VALUES (randomblob(:n))"), [{"n": BLOB}] * ROWS)


def test_the_server_leaves_the_wal_to_its_thread_and_checkpoints_on_stop(
    tmp_path: Path,
) -> None:
    """With the thread's interval far away, no commit copies the WAL into the database
    (autocheckpoint is off, so the file stays small however big the WAL grows); stopping
    the thread checkpoints what is left."""
    path = tmp_path / "c.db"
    db = Database(f"sqlite:///{path}", sqlite_checkpoint_seconds=3600)
    with db.transaction(write=False) as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    _fill(db)
    assert os.path.getsize(path) < ROWS * BLOB / 10
    assert os.path.getsize(f"{path}-wal") > ROWS * BLOB
    db.dispose()
    assert os.path.getsize(path) > ROWS * BLOB


def test_the_thread_checkpoints_within_its_interval(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    db = Database(f"sqlite:///{path}", sqlite_checkpoint_seconds=0.05)
    try:
        _fill(db)
        deadline = time.monotonic() + 10
        while os.path.getsize(path) < ROWS * BLOB and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.getsize(path) > ROWS * BLOB
    finally:
        db.dispose()


@pytest.mark.parametrize("seconds", [0.0, 1.0])
def test_commands_and_zero_keep_sqlites_own_autocheckpoint(tmp_path: Path, seconds: float) -> None:
    """Only a server asks for the thread (the CLI keeps the default 0); with 0 SQLite
    checkpoints inside commits, every 1,000 pages, as it always did."""
    db = Database(f"sqlite:///{tmp_path / 'c.db'}", sqlite_checkpoint_seconds=seconds)
    try:
        with db.transaction(write=False) as conn:
            pages = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        assert pages == (1000 if seconds == 0 else 0)
    finally:
        db.dispose()
