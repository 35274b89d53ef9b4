"""The server's own VACUUM of PostgreSQL tables while autovacuum is off (db.PgVacuumer).

This machine's PostgreSQL runs with autovacuum off (and a session cannot turn it on), so
what the thread does with it on is covered by the decision alone (`tables_to_vacuum`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from besmart_server.server.app import create_app
from besmart_server.server.config import Settings
from besmart_server.server.db import (
    PG_VACUUM_LOCK_KEY,
    PG_VACUUM_SCALE_FACTOR,
    PG_VACUUM_THRESHOLD,
    Database,
    PgVacuumer,
    TableStats,
    psycopg_dsn,
    tables_to_vacuum,
)
from besmart_server.server.signals.pipeline import Frame
from besmart_server.server.signals.store import SeriesStore
from besmart_server.wire import TYPE_DBL
from tests.api.signal_helpers import make_sensor, moid
from tests.factories import make_client

DAY = 86_400_000
D0 = 1_699_920_000_000  # a UTC midnight
DAYS = 1_500  # day blocks rewritten once: 1,500 dead rows > 1,000 + 5 % of 1,500 live
# Only a failing run waits this long: a passing one ends as soon as the stats show it.
STUCK_S = 60


def pg_only(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("PostgreSQL only: the vacuum thread starts on PostgreSQL alone")


def wait_for(done: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + STUCK_S
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def blocks_stats(db: Database) -> tuple[int, int, int]:
    """`blocks`' (live, dead, manual vacuums) in pg_stat_user_tables, read afresh."""
    with db.reads() as conn:
        row = conn.execute(
            text(
                "SELECT n_live_tup, n_dead_tup, vacuum_count FROM pg_stat_user_tables"
                " WHERE schemaname = current_schema() AND relname = 'blocks'"
            )
        ).one()
    return int(row[0]), int(row[1]), int(row[2])


def past_threshold(db: Database) -> bool:
    live, dead, _ = blocks_stats(db)
    return dead > PG_VACUUM_THRESHOLD + PG_VACUUM_SCALE_FACTOR * live


def began_before(db: Database, moment: object) -> int:
    """Transactions of the whole cluster still open that began before `moment`: any of them,
    in any database, may still see the rows a later commit left dead, and a VACUUM then keeps
    them (the other test process's transactions, on this machine)."""
    with db.reads() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE pid <> pg_backend_pid() AND xact_start < :moment"
                ),
                {"moment": moment},
            ).scalar_one()
        )


def committed_at(db: Database) -> object:
    with db.reads() as conn:
        return conn.execute(text("SELECT clock_timestamp()")).scalar_one()


def rewrite_day_blocks(db: Database) -> None:
    """One point on each of DAYS days, then a second one on each: every block is written
    twice through the store, so the first version of each is left dead."""
    store = SeriesStore(db.dialect)
    mid = make_sensor(db, make_client(db))
    with db.transaction() as conn:
        sid = store.series_ids(conn, [(mid, moid("A+"))], create=True)[(mid, moid("A+"))]
    for offset in (0, 60_000):
        times = D0 + np.arange(DAYS, dtype=np.int64) * DAY + offset
        n = len(times)
        frame = Frame.from_columns(times, [1] * n, [0] * n, [TYPE_DBL] * n, [1.0] * n)
        with db.transaction() as conn:
            store.insert(conn, np.full(n, sid, dtype=np.int64), frame)


def vacuum_backends(db: Database) -> int:
    with db.reads() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name = 'besmart-vacuum'"
                )
            ).scalar_one()
        )


def vacuum_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "pg-vacuum"]


EDGE = int(PG_VACUUM_THRESHOLD + PG_VACUUM_SCALE_FACTOR * 20_000)  # 2,000 at 20,000 live


@pytest.mark.parametrize(
    ("autovacuum", "dead", "vacuumed"),
    [
        ("off", EDGE, False),  # at the threshold: not yet
        ("off", EDGE + 1, True),
        ("on", EDGE + 1, False),  # autovacuum does it
        ("on", 10**9, False),
    ],
)
def test_a_table_is_vacuumed_past_threshold_plus_scale_factor_with_autovacuum_off(
    autovacuum: str, dead: int, vacuumed: bool
) -> None:
    small = TableStats("users", live=10, dead=PG_VACUUM_THRESHOLD)  # the floor: never alone
    stats = [small, TableStats("blocks", live=20_000, dead=dead)]
    assert tables_to_vacuum(autovacuum, stats) == (["blocks"] if vacuumed else [])


def test_an_empty_table_needs_more_dead_rows_than_the_floor() -> None:
    assert tables_to_vacuum("off", [TableStats("q", live=0, dead=PG_VACUUM_THRESHOLD)]) == []
    assert tables_to_vacuum("off", [TableStats("q", live=0, dead=PG_VACUUM_THRESHOLD + 1)]) == ["q"]


def test_the_thread_vacuums_blocks_once_its_dead_rows_pass_the_threshold(
    db: Database, database_url: str
) -> None:
    pg_only(db)
    vacuumer = Database(database_url, pg_vacuum_seconds=0.1)
    try:
        before = blocks_stats(db)[2]
        rewrite_day_blocks(db)
        assert wait_for(lambda: blocks_stats(db)[2] > before), "blocks was not vacuumed"
        live, dead, _ = blocks_stats(db)
        assert live >= DAYS
        assert dead <= PG_VACUUM_THRESHOLD + PG_VACUUM_SCALE_FACTOR * live
    finally:
        vacuumer.dispose()


def test_a_tick_while_another_process_holds_the_lock_vacuums_nothing(
    db: Database, database_url: str
) -> None:
    """The advisory lock is what keeps two servers on one database from vacuuming at once:
    a tick that cannot take it is skipped, and the next one vacuums."""
    pg_only(db)
    rewrite_day_blocks(db)
    rewritten = committed_at(db)
    # Backends flush their counts to pg_stat within about a second of a commit.
    assert wait_for(lambda: past_threshold(db)), "blocks' dead rows never showed in pg_stat"
    before = blocks_stats(db)[2]
    vacuumer = PgVacuumer(psycopg_dsn(database_url), 3600)  # ticks only when called
    try:
        with psycopg.connect(psycopg_dsn(database_url), autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", (PG_VACUUM_LOCK_KEY,))
            assert vacuumer.vacuum_once() is None
            assert blocks_stats(db)[2] == before
        assert wait_for(lambda: began_before(db, rewritten) == 0), "a transaction stays open"
        done = vacuumer.vacuum_once()  # `other` closed: its lock went with its session
        assert done is not None
        assert "blocks" in done
        assert wait_for(lambda: blocks_stats(db)[2] > before)
        assert not past_threshold(db)
    finally:
        vacuumer.stop()


def test_dispose_stops_the_thread_and_closes_its_connection(
    db: Database, database_url: str
) -> None:
    pg_only(db)
    others = vacuum_threads()
    vacuumer = Database(database_url, pg_vacuum_seconds=0.05)
    try:
        assert len(vacuum_threads()) == len(others) + 1
        assert wait_for(lambda: vacuum_backends(db) == 1), "the thread never connected"
    finally:
        vacuumer.dispose()
    assert vacuum_threads() == others
    assert wait_for(lambda: vacuum_backends(db) == 0), "its connection outlived dispose()"


@pytest.mark.parametrize(("env", "threads"), [("0.05", 1), ("0", 0)])
def test_the_server_runs_the_thread_from_its_setting(
    db: Database, database_url: str, monkeypatch: pytest.MonkeyPatch, env: str, threads: int
) -> None:
    pg_only(db)
    monkeypatch.setenv("BESMART_PG_VACUUM_SECONDS", env)
    settings = Settings(database_url=database_url, demo=False)
    others = vacuum_threads()
    with TestClient(create_app(settings)):
        assert len(vacuum_threads()) == len(others) + threads
        if threads:
            assert wait_for(lambda: vacuum_backends(db) == 1), "the thread never connected"
    assert vacuum_threads() == others


def test_a_failing_tick_is_logged_and_the_thread_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing listens on port 1: every tick fails to connect, and the next one tries again."""
    caplog.set_level(logging.WARNING, logger="besmart_server.server.db")
    others = vacuum_threads()
    vacuumer = PgVacuumer("postgresql://postgres@127.0.0.1:1/none?connect_timeout=5", 0.05)
    try:
        failed = lambda: len([r for r in caplog.records if "vacuum tick" in r.message])  # noqa: E731
        assert wait_for(lambda: failed() >= 2)
    finally:
        vacuumer.stop()
    assert vacuum_threads() == others


def test_sqlite_starts_no_vacuum_thread(db: Database, database_url: str) -> None:
    if db.dialect != "sqlite":
        pytest.skip("SQLite only")
    others = vacuum_threads()
    other = Database(database_url, pg_vacuum_seconds=1.0)
    try:
        assert vacuum_threads() == others
    finally:
        other.dispose()
