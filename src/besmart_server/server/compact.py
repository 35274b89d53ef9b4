"""Compaction: the database's files rewritten without the space that rewrites and deletions
left free, as `besmart db compact` does in a maintenance window.

A write replaces a day block whole, so both engines keep free space behind: SQLite pages
split by rows that grew (its B-tree leaves end ~86 % full under the benchmark's ingest) and
pages freed by deletions; PostgreSQL dead rows until a vacuum marks them free, and pages only
a rewrite returns to the file system. The server's own upkeep (SQLite's checkpoints,
PostgreSQL's vacuum) reuses that space but never shrinks the files; this does, as InfluxDB's
full compaction and VictoriaMetrics' force-merge do for theirs.

Both hold the tables they rewrite exclusively while they run (SQLite: its one write lock,
readers go on; PostgreSQL: VACUUM FULL of each of the schema's tables in turn, reads of it
wait too; never the cluster's shared catalogs, which every new connection reads) and
need free disk for a copy of what they rewrite.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from besmart_server.server.db import Database, normalize_url


@dataclass(frozen=True, slots=True)
class Compacted:
    before: int  # bytes of the database (SQLite: the file and its WAL)
    after: int


def database_bytes(db: Database) -> int:
    """The database's size on disk: SQLite's file with its WAL, PostgreSQL's database."""
    if db.dialect == "sqlite":
        path = _sqlite_path(db)
        wal = path.with_name(path.name + "-wal")
        return sum(p.stat().st_size for p in (path, wal) if p.exists())
    with db.engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one())


def compact(db: Database) -> Compacted:
    """Rewrite every table without its free space; statistics refreshed on PostgreSQL."""
    before = database_bytes(db)
    if db.dialect == "sqlite":
        # Its own connection: the engine's begin every statement in a transaction, and
        # VACUUM runs in none.
        with closing(sqlite3.connect(_sqlite_path(db), timeout=60, isolation_level=None)) as c:
            c.execute("VACUUM")
            # In WAL mode VACUUM writes the new pages to the WAL: copy them home, empty it.
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        with db.engine.connect() as conn:
            auto = conn.execution_options(isolation_level="AUTOCOMMIT")
            # The schema's own tables, named: a VACUUM FULL of the whole database rewrites
            # the cluster's shared catalogs too (pg_authid, pg_database), whose locks stop
            # every new connection to every database on the server while it runs.
            names = auto.exec_driver_sql(
                "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables"
                " WHERE schemaname = current_schema() ORDER BY tablename"
            ).scalars()
            for name in list(names):
                auto.exec_driver_sql(f"VACUUM (FULL, ANALYZE) {name}")
    return Compacted(before, database_bytes(db))


def _sqlite_path(db: Database) -> Path:
    database = make_url(normalize_url(db.url)).database
    if not database or database == ":memory:":
        raise ValueError("an in-memory SQLite database has no file to compact")
    return Path(database)
