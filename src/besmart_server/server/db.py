"""Engines per dialect and the one transaction scope every request and command uses."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import psycopg
from psycopg import sql
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

# Page size of a NEW SQLite file. SQLite fixes it when it first writes the file (switching
# to WAL does), so this applies before the first table; an existing file keeps its own size
# (the PRAGMA is a no-op there) unless rebuilt with VACUUM in rollback-journal mode.
# 16 KiB rather than SQLite's 4 KiB: a 1-minute day block (~2.2 KB) fits in a leaf cell
# instead of spilling into an overflow page of its own, and the WITHOUT ROWID blocks table
# copies far fewer whole rows into interior cells (bench/README.md, "page size").
SQLITE_PAGE_SIZE = 16384

# How long an SQLite writer waits for the write lock before "database is locked": SQLite's
# own busy timeout, and the writers' queue's (WriterQueue).
SQLITE_BUSY_TIMEOUT_S = 30

# When PostgreSQL's autovacuum is off, the server's own vacuum thread (PgVacuumer) vacuums a
# table once its dead tuples exceed THRESHOLD + SCALE_FACTOR * its live tuples: autovacuum's
# own rule (autovacuum_vacuum_threshold + _scale_factor, 50 and 0.2 by default). The floor
# keeps a small busy table from being vacuumed every tick for a few rows; the factor keeps a
# large one from being vacuumed every few seconds for a handful of them, each VACUUM reading
# its indexes whole. 0.05 rather than 0.2: nearly every write leaves a dead row in `blocks`
# (a rewritten day block), and at 0.2 up to a fifth of its rows could be dead ones.
PG_VACUUM_THRESHOLD = 1000
PG_VACUUM_SCALE_FACTOR = 0.05
# The session advisory lock a vacuuming server holds ("besmVACU"), so that of the servers
# and hosts on one database only one vacuums at a time (advisory locks are per database).
PG_VACUUM_LOCK_KEY = 0x6265_736D_5641_4355

log = logging.getLogger(__name__)


def now_ms() -> int:
    """Server clock as UTC unix milliseconds."""
    return time.time_ns() // 1_000_000


def dbapi_connection(conn: Connection) -> Any:
    """The DB-API connection under the SQLAlchemy one, in the same transaction."""
    return conn.connection.driver_connection


def pg_array(items: Iterable[object]) -> str:
    """A PostgreSQL array literal of integers (or of strings already quoted), for a
    parameter the statement casts (`%s::int[]`): psycopg dumps a list parameter element by
    element in Python (0.7 ms for the seven columns of 100 validation queue rows), a string
    as it is."""
    return "{" + ",".join(map(str, items)) + "}"


def normalize_url(url: str) -> str:
    """Map plain postgresql:// URLs to the psycopg 3 driver SQLAlchemy should use."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def psycopg_dsn(url: str) -> str:
    """The libpq URL psycopg connects to for a postgresql:// database URL."""
    return (
        make_url(normalize_url(url))
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


def create_db_engine(
    url: str, *, sqlite_synchronous: str = "NORMAL", sqlite_autocheckpoint: bool = True
) -> Engine:
    """An engine with the pragmas and transaction behaviour this service relies on;
    without `sqlite_autocheckpoint`, SQLite connections leave WAL checkpoints to the caller."""
    sa_url = make_url(normalize_url(url))
    if sa_url.get_backend_name() == "sqlite":
        database = sa_url.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            sa_url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
            # In-memory databases are per connection; a file pool is cheap and safe with WAL.
            poolclass=NullPool if database in (None, "", ":memory:") else None,
        )
        _configure_sqlite(engine, sqlite_synchronous, sqlite_autocheckpoint)
        return engine
    if sa_url.get_backend_name() == "postgresql":
        return create_engine(sa_url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    raise ValueError(f"unsupported database URL: {url!r} (use sqlite:/// or postgresql://)")


def _configure_sqlite(engine: Engine, synchronous: str, autocheckpoint: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event issue BEGIN itself (pysqlite's implicit BEGIN is lazy
        # and deferred, which turns concurrent writers into "database is locked" errors).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")  # before WAL writes the header
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        if not autocheckpoint:
            cur.execute("PRAGMA wal_autocheckpoint=0")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the lock up front so they queue on busy_timeout instead of failing.
        write = conn.get_execution_options().get(_WRITE_OPTION, True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Settler(Protocol):
    """What makes the points writes left in the write-ahead table readable (signals/store.py,
    "Write-ahead"): `pending` says whether any are left (the newest row's id) on a DB-API
    connection, `settle` merges the rows up to that id in write transactions of its own."""

    def pending(self, raw: Any) -> int | None: ...

    def settle(self, db: Database, upto: int, *, alone: bool) -> None: ...


class _Open(threading.local):
    """The transactions this thread has open, of any Database: a merge started with none
    (`alone`) holds no lock another merge could wait for, so it may wait for that one."""

    def __init__(self) -> None:
        self.n = 0


_open = _Open()


@contextmanager
def _counted() -> Iterator[None]:
    _open.n += 1
    try:
        yield
    finally:
        _open.n -= 1


class Database:
    """Owns the engine; hands out one transaction per unit of work."""

    # Set by signals.store when it is imported, so in every process that can read blocks:
    # a transaction first merges what deferring writes left pending (unless `settle=False`:
    # those writes themselves, and the merges), so that it sees every acknowledged point.
    settler: ClassVar[Settler | None] = None

    def __init__(
        self,
        url: str,
        *,
        sqlite_synchronous: str = "NORMAL",
        sqlite_checkpoint_seconds: float = 0.0,
        pg_vacuum_seconds: float = 0.0,
    ) -> None:
        self.url = url
        database = make_url(normalize_url(url)).database
        on_file = self._is_sqlite_file(url, database)
        background = on_file and sqlite_checkpoint_seconds > 0
        self.engine = create_db_engine(
            url, sqlite_synchronous=sqlite_synchronous, sqlite_autocheckpoint=not background
        )
        self.dialect = self.engine.dialect.name
        self._checkpointer: WalCheckpointer | None = None
        if background and database:
            self._checkpointer = WalCheckpointer(database, sqlite_checkpoint_seconds)
        # An SQLite file's writers take turns (WriterQueue); None: PostgreSQL, or in memory.
        self.writers = WriterQueue(database) if on_file and database else None
        self._vacuumer: PgVacuumer | None = None
        if self.dialect == "postgresql" and pg_vacuum_seconds > 0:
            self._vacuumer = PgVacuumer(psycopg_dsn(url), pg_vacuum_seconds)

    @staticmethod
    def _is_sqlite_file(url: str, database: str | None) -> bool:
        backend = make_url(normalize_url(url)).get_backend_name()
        return backend == "sqlite" and database not in (None, "", ":memory:")

    @contextmanager
    def transaction(self, *, write: bool = True, settle: bool = True) -> Iterator[Connection]:
        """Commit on success, roll back on any exception. On an SQLite file a writer first
        takes its turn in the WriterQueue. `settle`: what writes left pending is merged first
        (Database.settler), before BEGIN: the merge runs in transactions of its own (taking
        the writers' turn itself); with nothing to merge, one statement on this connection."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(**{_WRITE_OPTION: write})
            if settle:
                self._settle(conn)
            queued = self.writers.turn() if write and self.writers is not None else nullcontext()
            with queued, conn.begin(), _counted():
                yield conn

    @contextmanager
    def reads(self) -> Iterator[Connection]:
        """A connection for work that only reads, each statement seeing what is committed when
        it starts. On PostgreSQL that is what a READ COMMITTED transaction gives anyway, so
        the statements run in autocommit: no BEGIN and COMMIT, two round trips of a read's
        six. On SQLite a read transaction (one snapshot for all of them, at no cost there)."""
        if self.dialect != "postgresql":
            with self.transaction(write=False) as conn:
                yield conn
            return
        with self.engine.connect() as conn:
            auto = conn.execution_options(isolation_level="AUTOCOMMIT")
            self._settle(auto)
            with _counted():
                yield auto

    def settle(self, *, unless_newer_than: int | None = None) -> int | None:
        """Merge what writes left pending now (a worker's tick; transactions do it anyway);
        with `unless_newer_than`, only if nothing was appended since that row (writes have
        paused). The newest pending row's id it saw (None: none)."""
        with self.engine.connect() as conn:
            return self._settle(conn, unless_newer_than)

    def _settle(self, conn: Connection, unless_newer_than: int | None = None) -> int | None:
        """Merge what is pending, `conn` in no transaction: its look runs in autocommit."""
        settler = Database.settler
        if settler is None:
            return None
        raw = dbapi_connection(conn)
        if self.dialect == "postgresql" and not raw.autocommit:
            raw.autocommit = True  # psycopg's own: no statement, and SQLAlchemy began nothing
            try:
                upto = settler.pending(raw)
            finally:
                raw.autocommit = False
        else:
            upto = settler.pending(raw)  # SQLite's driver runs it in autocommit (no BEGIN)
        if upto is not None and (unless_newer_than is None or upto <= unless_newer_than):
            settler.settle(self, upto, alone=_open.n == 0)
        return upto

    def dispose(self) -> None:
        """Close every pooled connection (and stop the checkpointer or vacuumer)."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
        if self._vacuumer is not None:
            self._vacuumer.stop()
        if self.writers is not None:
            self.writers.close()
        self.engine.dispose()


class WriterQueue:
    """The writers of one SQLite file, every thread of every process, take turns here before
    BEGIN IMMEDIATE: a thread lock within the process, then an exclusive `flock` of
    `<database>-writer` between processes (serve's workers, the validation worker, graph
    workers).

    SQLite lets one writer in at a time and makes the others retry in its busy handler,
    which sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100 ms between tries: the lock is
    often free for most of a sleep. A writer waiting on the flock is woken by the kernel the
    moment the holder lets go (bench/README.md, "Writers take turns": 4 writers into 2
    server processes, row 1c, +9 to +35 % in five pairs of runs; trying the flock every
    0.5 ms instead gained little). The queue only orders writers: SQLite's own lock still
    guards the file, so a writer that bypasses it (a migration) or an edge of the queue
    costs time, never data.
    The wait is bounded as SQLite's is (SQLITE_BUSY_TIMEOUT_S, then "database is locked"),
    by a helper thread that blocks on the flock while the writer waits on an event. The
    file is opened at the first write, never before: a command that must not create a
    database makes none. A process makes its own Database (uvicorn's workers are spawned,
    not forked; `serve` disposes of its own before they start): a forked child sharing the
    parent's open file would share its turn."""

    def __init__(self, database: str, timeout_s: float = SQLITE_BUSY_TIMEOUT_S) -> None:
        self._path = f"{database}-writer"
        self._timeout_s = timeout_s
        self._thread_lock = threading.Lock()
        self._fd = -1

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the turn for the body of the `with`."""
        deadline = time.monotonic() + self._timeout_s
        if not self._thread_lock.acquire(timeout=self._timeout_s):
            raise sqlite3.OperationalError("database is locked (by a writer of this process)")
        try:
            if self._fd < 0:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
            self._flock(self._fd, deadline)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    @staticmethod
    def _flock(fd: int, deadline: float) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        got = threading.Event()
        guard = threading.Lock()
        gave_up = False

        def wait() -> None:
            # OSError: the file was closed meanwhile (the database disposed of): nothing held.
            with suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX)
                with guard:
                    if gave_up:  # the writer left with its error: let the next one in
                        fcntl.flock(fd, fcntl.LOCK_UN)
                    else:
                        got.set()

        threading.Thread(target=wait, name="sqlite-writer-turn", daemon=True).start()
        if got.wait(max(0.0, deadline - time.monotonic())):
            return
        with guard:
            if got.is_set():
                return
            gave_up = True
        raise sqlite3.OperationalError("database is locked (by a writer of another process)")

    def close(self) -> None:
        """Close the lock file, once a turn held now has ended (or the timeout has passed:
        closing the file gives the flock up)."""
        held = self._thread_lock.acquire(timeout=self._timeout_s)
        try:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        finally:
            if held:
                self._thread_lock.release()


class WalCheckpointer:
    """SQLite WAL checkpoints on a thread of their own instead of in a committing request.

    With its default autocheckpoint, SQLite copies the WAL into the database inside the
    commit that takes the WAL over 1,000 pages: every few large writes, one request pays for
    the copy and its fsync (0.6-1.6 ms per 10,000-point write on average, measured with
    `python -m bench.profile_write`). Here a daemon thread runs a PASSIVE checkpoint — the
    autocheckpoint's own kind, which never blocks readers or writers — every `interval_s`
    on its own connection; the sqlite3 module releases the GIL while SQLite works.
    """

    def __init__(self, path: str, interval_s: float) -> None:
        self._path = path
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, timeout=30, isolation_level=None)
        try:
            while not self._stop.wait(self._interval_s):
                self.checkpoint(conn)
            self.checkpoint(conn)
        finally:
            conn.close()

    @staticmethod
    def checkpoint(conn: sqlite3.Connection) -> tuple[int, int, int]:
        """One PASSIVE checkpoint: (busy, WAL frames, frames copied into the database)."""
        row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return (int(row[0]), int(row[1]), int(row[2]))

    def stop(self) -> None:
        """Checkpoint once more and end the thread."""
        self._stop.set()
        self._thread.join(timeout=30)


@dataclass(frozen=True)
class TableStats:
    """A table's row of pg_stat_user_tables (tuple counts as of the last stats flush)."""

    name: str
    live: int
    dead: int


def tables_to_vacuum(autovacuum: str, tables: Iterable[TableStats]) -> list[str]:
    """The tables the server vacuums itself, given `current_setting('autovacuum')`: none
    when autovacuum is on (it does the job), else those past the threshold above."""
    if autovacuum == "on":
        return []
    return [
        t.name for t in tables if t.dead > PG_VACUUM_THRESHOLD + PG_VACUUM_SCALE_FACTOR * t.live
    ]


class PgVacuumer:
    """VACUUM of the PostgreSQL tables the server churns, when autovacuum is off.

    Every write of a day block rewrites its row (signals/tables.py `blocks`), leaving a dead
    tuple; with autovacuum off nothing reclaims them and `blocks` grows to about twice its
    live size. A daemon thread looks every `interval_s` and, while `autovacuum` is off,
    vacuums the current schema's tables past the threshold (`tables_to_vacuum`), holding
    PG_VACUUM_LOCK_KEY (a tick another process holds it for is skipped). Its connection is
    its own, outside the engine's pool, in autocommit (VACUUM cannot run in a transaction);
    after an error it is closed (which releases the lock) and opened again on the next tick.
    """

    def __init__(self, dsn: str, interval_s: float) -> None:
        self._dsn = dsn
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self._conn_lock = threading.Lock()  # stop() cancels a running VACUUM through it
        self._thread = threading.Thread(target=self._run, name="pg-vacuum", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self._interval_s):
                try:
                    self.vacuum_once()
                except Exception:
                    if not self._stop.is_set():  # a VACUUM cancelled by stop() is no news
                        log.warning("vacuum tick failed", exc_info=True)
                    self._close()
        finally:
            self._close()

    def _connect(self) -> psycopg.Connection[Any]:
        conn = self._conn  # only this thread sets it; stop() reads it under the lock
        if conn is None or conn.closed:
            conn = psycopg.connect(self._dsn, autocommit=True, application_name="besmart-vacuum")
            with self._conn_lock:
                self._conn = conn
        return conn

    def _close(self) -> None:
        with self._conn_lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def vacuum_once(self) -> list[str] | None:
        """One tick: the tables vacuumed, or None when another process holds the lock."""
        conn = self._connect()
        row = conn.execute("SELECT current_setting('autovacuum')").fetchone()
        autovacuum = str(row[0]) if row else "off"
        if autovacuum == "on":  # neither the lock nor the stats are needed
            return []
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (PG_VACUUM_LOCK_KEY,)).fetchone()
        if not (got and got[0]):
            return None
        try:
            # Read under the lock, so a tick right after another server's VACUUM sees the
            # counts that VACUUM reported, not the ones that made it vacuum.
            rows = conn.execute(
                "SELECT schemaname, relname, n_live_tup, n_dead_tup FROM pg_stat_user_tables"
                " WHERE schemaname = current_schema()"
            ).fetchall()
            schema = {str(r[1]): str(r[0]) for r in rows}
            stats = [TableStats(str(r[1]), int(r[2] or 0), int(r[3] or 0)) for r in rows]
            names = tables_to_vacuum(autovacuum, stats)
            done: list[str] = []
            for name in names:
                if self._stop.is_set():
                    break
                table = sql.Identifier(schema[name], name)
                conn.execute(sql.SQL("VACUUM (SKIP_LOCKED) {}").format(table))
                done.append(name)
            if done:
                log.debug("vacuumed %s", ", ".join(done))
            return done
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (PG_VACUUM_LOCK_KEY,))

    def stop(self) -> None:
        """End the thread, cancelling a VACUUM in progress (dispose need not wait for it)."""
        self._stop.set()
        with self._conn_lock:
            conn = self._conn
        if conn is not None:
            # Closed meanwhile, or the server is gone: nothing to cancel.
            with suppress(Exception):
                conn.cancel_safe()
        self._thread.join(timeout=30)
