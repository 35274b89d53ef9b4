"""Engines per dialect and the one transaction scope every request and command uses."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

# One MetaData for every table module; migrations are written by hand against it.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

_WRITE_OPTION = "besmart_write"


def now_ms() -> int:
    """Server clock as UTC unix milliseconds."""
    return time.time_ns() // 1_000_000


def normalize_url(url: str) -> str:
    """Map plain postgresql:// URLs to the psycopg 3 driver SQLAlchemy should use."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def create_db_engine(url: str, *, sqlite_synchronous: str = "NORMAL") -> Engine:
    """An engine with the pragmas and transaction behaviour this service relies on."""
    sa_url = make_url(normalize_url(url))
    if sa_url.get_backend_name() == "sqlite":
        database = sa_url.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            sa_url,
            connect_args={"check_same_thread": False, "timeout": 30},
            # In-memory databases are per connection; a file pool is cheap and safe with WAL.
            poolclass=NullPool if database in (None, "", ":memory:") else None,
        )
        _configure_sqlite(engine, sqlite_synchronous)
        return engine
    if sa_url.get_backend_name() == "postgresql":
        return create_engine(sa_url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    raise ValueError(f"unsupported database URL: {url!r} (use sqlite:/// or postgresql://)")


def _configure_sqlite(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event issue BEGIN itself (pysqlite's implicit BEGIN is lazy
        # and deferred, which turns concurrent writers into "database is locked" errors).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the lock up front so they queue on busy_timeout instead of failing.
        write = conn.get_execution_options().get(_WRITE_OPTION, True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Database:
    """Owns the engine; hands out one transaction per unit of work."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "NORMAL") -> None:
        self.url = url
        self.engine = create_db_engine(url, sqlite_synchronous=sqlite_synchronous)
        self.dialect = self.engine.dialect.name

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Connection]:
        """Commit on success, roll back on any exception."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(**{_WRITE_OPTION: write})
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
