"""SQLite's writers take turns in the WriterQueue (db.py): one at a time per file, across
threads and processes, each let in when the one before leaves, never waiting past the busy
timeout; the queue's file is made by the first write, not before."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from besmart_server.server.db import Database, WriterQueue

# Only a failing run waits this long: a passing one is ordered by events, not by time.
STUCK_S = 60


@pytest.fixture
def url(tmp_path: Path) -> str:
    db = Database(f"sqlite:///{tmp_path / 'q.db'}")
    with db.transaction() as conn:
        conn.execute(text("CREATE TABLE log (who TEXT NOT NULL)"))
    db.dispose()
    return f"sqlite:///{tmp_path / 'q.db'}"


def _logged(db: Database) -> list[str]:
    with db.transaction(write=False) as conn:
        return [str(r[0]) for r in conn.execute(text("SELECT who FROM log ORDER BY rowid"))]


def test_writers_of_two_handles_on_one_file_take_turns(url: str) -> None:
    """Two Database objects hold the queue's file open each, as two processes do: while one
    holds its turn (the queue's alone, no SQLite transaction open), the other's write waits,
    and goes in when the turn ends, seeing what was committed before it."""
    first, second = Database(url), Database(url)
    inside, leave, entered = threading.Event(), threading.Event(), threading.Event()
    seen: list[list[str]] = []

    def hold() -> None:
        with first.transaction() as conn:
            conn.execute(text("INSERT INTO log VALUES ('first')"))
        assert first.writers is not None
        with first.writers.turn():
            inside.set()
            assert leave.wait(STUCK_S)

    def follow() -> None:
        assert inside.wait(STUCK_S)
        with second.transaction() as conn:
            entered.set()
            seen.append([str(r[0]) for r in conn.execute(text("SELECT who FROM log"))])
            conn.execute(text("INSERT INTO log VALUES ('second')"))

    holder, follower = threading.Thread(target=hold), threading.Thread(target=follow)
    try:
        holder.start()
        follower.start()
        assert inside.wait(STUCK_S)
        assert not entered.wait(0.5)  # SQLite's lock is free: the queue holds it back
        leave.set()
        holder.join(STUCK_S)
        follower.join(STUCK_S)
        assert entered.is_set()
        assert seen == [["first"]]
        assert _logged(second) == ["first", "second"]
    finally:
        leave.set()
        first.dispose()
        second.dispose()


# Another process writes a row, then holds its turn in the queue (no SQLite transaction
# open) until the test writes a line to it.
_HOLDER = """
import sys
from sqlalchemy import text
from besmart_server.server.db import Database
db = Database(sys.argv[1])
with db.transaction() as conn:
    conn.execute(text("INSERT INTO log VALUES ('other process')"))
with db.writers.turn():
    print("inside", flush=True)
    sys.stdin.readline()
db.dispose()
"""


def test_a_writer_waits_for_another_process_s_turn(url: str) -> None:
    db = Database(url)
    done = threading.Event()

    def write() -> None:
        with db.transaction() as conn:
            conn.execute(text("INSERT INTO log VALUES ('this process')"))
        done.set()

    try:
        with subprocess.Popen(
            [sys.executable, "-c", _HOLDER, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as holder:
            assert holder.stdout is not None
            assert holder.stdin is not None
            assert holder.stdout.readline().strip() == "inside"
            writer = threading.Thread(target=write)
            writer.start()
            assert not done.wait(0.5)
            holder.stdin.write("go\n")
            holder.stdin.flush()
            assert done.wait(STUCK_S)
            writer.join(STUCK_S)
            assert holder.wait(STUCK_S) == 0
        assert _logged(db) == ["other process", "this process"]
    finally:
        db.dispose()


@pytest.mark.parametrize("holder", ["another process", "another thread"])
def test_a_writer_gives_up_at_the_timeout_and_writes_nothing(url: str, holder: str) -> None:
    """Past its timeout a waiting writer gets SQLite's own error, "database is locked",
    whether the turn is held through another handle of the file (as by another process) or
    by another thread of its own; the holder's write stands, and the next writer gets in
    once the holder has left (the wait given up included)."""
    queue = WriterQueue(url.removeprefix("sqlite:///"), timeout_s=0.3)
    other = Database(url)
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        if holder == "another process":
            with other.transaction() as conn:
                conn.execute(text("INSERT INTO log VALUES ('holder')"))
                inside.set()
                assert leave.wait(STUCK_S)
        else:
            with queue.turn():
                inside.set()
                assert leave.wait(STUCK_S)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert inside.wait(STUCK_S)
        t0 = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="database is locked"), queue.turn():
            pytest.fail("let in while another writer held its turn")
        assert time.monotonic() - t0 >= 0.25
    finally:
        leave.set()
        thread.join(STUCK_S)
    with queue.turn():
        pass
    assert _logged(other) == (["holder"] if holder == "another process" else [])
    queue.close()
    other.dispose()


def test_the_queue_file_is_made_by_the_first_write(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    db = Database(f"sqlite:///{path}")
    try:
        with db.transaction(write=False) as conn:
            conn.execute(text("SELECT 1"))
        assert not Path(f"{path}-writer").exists()
        with db.transaction() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
        assert Path(f"{path}-writer").exists()
    finally:
        db.dispose()


def test_an_in_memory_database_has_no_queue() -> None:
    db = Database("sqlite://")
    try:
        assert db.writers is None
        with db.transaction() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        db.dispose()
