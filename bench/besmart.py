"""besmart-server under test: started as a real ``besmart serve`` process on loopback.

On SQLite (a file in a temporary directory) or on PostgreSQL (a fresh database created on
the server of ``pg_url`` and dropped afterwards). A client and a user with the write role
are made with the CLI, sensors through the API; points go in through the multi-series PUT
and come back through the documented reads.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import orjson
import psycopg

from bench.peers import (
    LOOPBACK,
    Read,
    Served,
    Skip,
    free_port,
    http_client,
    start,
    stop,
    wait_until,
)
from bench.workload import T_AIR, WEATHER_AT, Batch, Query, WeatherPoint, Workload

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
BLOCKS_TABLE = "blocks"  # day blocks: every stored point lives in one (see signals/blocks.py)
PUT_MULTI = "/api/sensors/signals/data/v2"
GET_ONE = "/api/sensors/{client_cid}.{sensor_mid}/signals/{signal_type_moid}/data"
WEATHER = "/api/weather/{lat}/{lon}/{signal_type_moid}/data"

Backend = Literal["sqlite", "postgres"]


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def check_loopback_url(url: str) -> str:
    host = urlsplit(url).hostname
    if host not in (LOOPBACK, "localhost"):
        raise ValueError(f"the benchmark's PostgreSQL must be on loopback, not {host!r}")
    return url


def put_body(batch: Batch, cid: int, mids: dict[str, int]) -> bytes:
    """A multi-series PUT body: one item per chunk of the batch, columnar data with origin 1."""
    items = [
        {
            "client_cid": cid,
            "sensor_mid": mids[c.series.sensor],
            "signal_type_moid": c.series.moid,
            "data": {"time": c.time, "value": c.value, "origin": np.ones(len(c), dtype=np.int8)},
        }
        for c in batch.chunks
    ]
    return orjson.dumps(items, option=orjson.OPT_SERIALIZE_NUMPY)


class Besmart(Served):
    """One besmart-server process and its database, for the life of the ``with`` block."""

    def __init__(self, backend: Backend, *, workers: int = 1, pg_url: str = DEFAULT_PG_URL):
        self.backend = backend
        self.name = f"besmart-{backend}"
        self.workers = workers
        self._pg_admin = check_loopback_url(pg_url)
        self._tmp = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-"))
        self.log = self._tmp / "server.log"
        self.port = free_port()
        self.http = http_client(f"http://{LOOPBACK}:{self.port}")
        self._proc: subprocess.Popen[bytes] | None = None
        self._pg_db: str | None = None
        self.version = ""
        self.durability = ""
        self.cid = 0
        self.mids: dict[str, int] = {}
        self._paths: dict[str, Any] = {}
        self._no_weather = "weather grid not loaded"
        if backend == "sqlite":
            self.db_path = self._tmp / "besmart.db"
            self.url = f"sqlite:///{self.db_path}"
        else:
            self._pg_db = f"bench_{uuid.uuid4().hex[:12]}"
            self.url = _with_database(self._pg_admin, self._pg_db)

    # -- lifecycle -----------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "BESMART_DATABASE_URL": self.url,
            "BESMART_DEMO": "0",
            "BESMART_LOGIN_MAX_FAILURES": "1000",
        }

    def _cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "besmart_server", *args],
            env=self._env(),
            capture_output=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"besmart {' '.join(args[:2])}: {done.stderr.decode()[-500:]}")
        return done.stdout.decode()

    def _start(self) -> None:
        if self.backend == "postgres":
            with psycopg.connect(self._pg_admin, autocommit=True, connect_timeout=10) as conn:
                conn.execute(f'CREATE DATABASE "{self._pg_db}"')
                row = conn.execute("SHOW server_version").fetchone()
                fsync = conn.execute("SHOW fsync").fetchone()
                sync = conn.execute("SHOW synchronous_commit").fetchone()
            self.version = f"PostgreSQL {row[0] if row else '?'}"
            self.durability = (
                f"commit per request, fsync={fsync[0] if fsync else '?'}, "
                f"synchronous_commit={sync[0] if sync else '?'}"
            )
        else:
            level = os.environ.get("BESMART_SQLITE_SYNCHRONOUS", "NORMAL")
            self.version = f"SQLite {sqlite3.sqlite_version}"
            self.durability = f"commit per request, WAL, synchronous={level}"
        self._cli("db", "upgrade")  # only db upgrade, serve and demo create a database
        self.cid = int(self._cli("client", "add", "bench").strip().splitlines()[-1])
        password = secrets.token_urlsafe(18)
        self._cli(
            "user", "add", "bench", "--password", password,
            "--client", str(self.cid), "--role", "write",
        )  # fmt: skip
        serve = ["serve", "--host", LOOPBACK, "--port", str(self.port)]
        self._proc = start(
            [sys.executable, "-m", "besmart_server", *serve, "--workers", str(self.workers)],
            self.log,
            env=self._env(),
        )
        wait_until(
            f"{self.name} on port {self.port}",
            lambda: self.http.get("/openapi.json", timeout=2).status_code == 200,
            timeout_s=90,
            proc=self._proc,
            log=self.log,
        )
        paths: dict[str, Any] = self.http.get("/openapi.json").json().get("paths", {})
        self._paths = paths
        missing = [
            f"{verb.upper()} {path}"
            for path, verb in (("/api/sensors", "post"), (PUT_MULTI, "put"), (PUT_MULTI, "post"))
            if verb not in paths.get(path, {})
        ] + ([f"GET {GET_ONE}"] if "get" not in paths.get(GET_ONE, {}) else [])
        if missing:
            raise Skip(f"routes not served yet: {', '.join(missing)} (issues 3 and 4)")
        resp = self.http.post("/api/users/token", json={"login": "bench", "password": password})
        if resp.status_code != 200:
            raise RuntimeError(f"login: {resp.status_code} {resp.text[:200]}")
        self.http.headers["Authorization"] = f"Bearer {resp.json()['token']}"

    def close(self) -> None:
        self.http.close()
        if self._proc is not None:
            stop(self._proc)
            self._proc = None
        if self._pg_db is not None:
            try:
                with psycopg.connect(self._pg_admin, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{self._pg_db}" WITH (FORCE)')
            except psycopg.Error as exc:
                print(f"warning: could not drop {self._pg_db}: {exc}", file=sys.stderr)
            self._pg_db = None
        shutil.rmtree(self._tmp, ignore_errors=True)

    def describe(self) -> str:
        return f"{self.version}, {self.workers} worker(s)"

    # -- data ----------------------------------------------------------------------------

    def setup(self, workload: Workload) -> None:
        """One besmart sensor per workload sensor; the weather grid through the CLI."""
        for name in workload.sensors:
            resp = self.http.post("/api/sensors", params={"client_cid": self.cid, "name": name})
            if resp.status_code != 201:
                raise RuntimeError(f"create sensor {name}: {resp.status_code} {resp.text[:200]}")
            self.mids[name] = int(resp.json()["sensor_mid"])
        self._load_weather(workload.weather)

    def _load_weather(self, grid: Sequence[WeatherPoint]) -> None:
        """``besmart weather import`` of one EPW file per grid point (when both exist).

        The first import runs alone: it creates the system weather client, and concurrent
        first imports on PostgreSQL each create one of their own (then reads answer 404).
        The rest run side by side.
        """
        if "get" not in self._paths.get(WEATHER, {}):
            self._no_weather = "weather route not served yet"
            return
        files = []
        for i, point in enumerate(grid):
            path = self._tmp / f"grid{i}.epw"
            path.write_text(epw(point))
            files.append(path)
        errors = self._imports(files[:1]) or self._imports(files[1:])
        self._no_weather = f"weather grid could not be loaded: {errors[0]}" if errors else ""

    def _imports(self, files: Sequence[Path]) -> list[str]:
        """Run one import per file at once; their errors."""
        runs = [
            subprocess.Popen(
                [sys.executable, "-m", "besmart_server", "weather", "import", str(path)],
                env=self._env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for path in files
        ]
        errors = []
        for proc in runs:
            try:
                _out, err = proc.communicate(timeout=300)
            except subprocess.TimeoutExpired:
                proc.kill()
                _out, err = proc.communicate()
            if proc.returncode != 0:
                errors.append(err.decode(errors="replace").strip()[-300:])
        return errors

    def prepare(self, batches: Sequence[Batch]) -> list[bytes]:
        return [put_body(batch, self.cid, self.mids) for batch in batches]

    def write(self, body: bytes) -> None:
        resp = self.http.put(PUT_MULTI, content=body, headers={"Content-Type": "application/json"})
        if resp.status_code not in (200, 204):
            raise RuntimeError(f"PUT {PUT_MULTI}: {resp.status_code} {resp.text[:300]}")

    def flush(self) -> None:
        """Writes are committed before the PUT answers."""

    def settle(self, timeout_s: float = 900.0) -> float:
        """Wait until the validation queue and the write-ahead table are empty (the windows
        every write queued, validated by the validation worker `besmart serve` starts, and the
        points merged into their blocks, both after the write answered); the seconds waited."""
        sql = "SELECT (SELECT count(*) FROM vee_queue) + (SELECT count(*) FROM pending)"
        t0 = time.perf_counter()
        while True:
            left = self._scalar(sql)
            waited = time.perf_counter() - t0
            if not left:
                return waited
            if waited > timeout_s:
                raise RuntimeError(
                    f"{left} windows queued for validation or rows pending after {waited:.0f} s"
                )
            time.sleep(0.5)

    # -- reads ---------------------------------------------------------------------------

    @staticmethod
    def _count_one(body: bytes) -> int:
        answer: dict[str, Any] = orjson.loads(body)
        return len(answer["data"]["time"])

    @staticmethod
    def _count_many(body: bytes) -> int:
        answer: list[dict[str, Any]] = orjson.loads(body)
        errors = [item["error"] for item in answer if item.get("error")]
        if errors:
            raise RuntimeError(f"multi-series read: {errors[0]}")
        return sum(len(item["data"]["time"]) for item in answer)

    def _get(self, q: Query, **extra: str | int | None) -> Read:
        s = q.series[0]
        path = GET_ONE.format(
            client_cid=self.cid, sensor_mid=self.mids[s.sensor], signal_type_moid=s.moid
        )
        params: dict[str, str | int | None] = {"since": q.since, "till": q.till, **extra}

        def send() -> bytes:
            resp = self.http.get(path, params=params)
            if resp.status_code != 200:
                raise RuntimeError(f"GET {path}: {resp.status_code} {resp.text[:300]}")
            return resp.content

        return Read(send, self._count_one)

    def read(self, kind: str, q: Query) -> Read:
        if kind == "raw":
            return self._get(q)
        if kind == "last":
            return self._get(q, get_last="true")
        if kind == "daily":
            return self._get(q, delta_t=q.delta_t_min)
        if kind == "daily_tz":
            return self._get(q, delta_t=q.delta_t_min, tz=q.tz)
        if kind == "monthly":
            return self._get(q, delta_t="month", tz=q.tz)
        if kind == "multi":
            body = orjson.dumps(
                [
                    {
                        "client_cid": self.cid,
                        "sensor_mid": self.mids[s.sensor],
                        "signal_type_moid": s.moid,
                        "since": q.since,
                        "till": q.till,
                    }
                    for s in q.series
                ]
            )

            def send() -> bytes:
                resp = self.http.post(
                    PUT_MULTI, content=body, headers={"Content-Type": "application/json"}
                )
                if resp.status_code != 200:
                    raise RuntimeError(f"POST {PUT_MULTI}: {resp.status_code} {resp.text[:300]}")
                return resp.content

            return Read(send, self._count_many)
        if kind == "weather":
            if self._no_weather:
                raise Skip(self._no_weather)
            path = WEATHER.format(lat=WEATHER_AT[0], lon=WEATHER_AT[1], signal_type_moid=T_AIR)
            params = {"since": q.since, "till": q.till, "delta_t": q.delta_t_min}

            def send_weather() -> bytes:
                resp = self.http.get(path, params=params)
                if resp.status_code != 200:
                    raise RuntimeError(f"GET {path}: {resp.status_code} {resp.text[:300]}")
                return resp.content

            return Read(send_weather, self._count_one)
        raise Skip("no such read")

    # -- size ----------------------------------------------------------------------------

    def stored_points(self) -> int:
        """Points held in the blocks (every version): the workload's plus the weather grid's."""
        return self._scalar(f"SELECT coalesce(sum(n), 0) FROM {BLOCKS_TABLE}")

    def _scalar(self, sql: str) -> int:
        """The integer one-row, one-column query `sql` answers on the server's database, read
        beside the server (SQLite read-only); 0 for no row or NULL."""
        if self.backend == "sqlite":
            with closing(sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)) as conn:
                row = conn.execute(sql).fetchone()
        else:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as pg:
                row = pg.execute(sql).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def compacted_bytes(self) -> int | None:
        """`storage_bytes` after `besmart db compact` (SQLite VACUUM, PostgreSQL VACUUM FULL),
        run as an operator would, beside the idle server: row 7 as InfluxDB's and
        VictoriaMetrics' are measured, after their own compaction."""
        subprocess.run(
            [sys.executable, "-m", "besmart_server", "db", "compact"],
            env={**os.environ, "BESMART_DATABASE_URL": self.url},
            check=True,
            capture_output=True,
            timeout=600,
        )
        return self.storage_bytes()

    def storage_bytes(self) -> int:
        """Bytes of the blocks table: on SQLite its pages (WITHOUT ROWID: the primary key is the
        table, no index besides); on PostgreSQL with its TOAST and primary-key index (and all
        partitions, were it partitioned)."""
        if self.backend == "sqlite":
            return _sqlite_blocks_bytes(self.db_path)
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            # A plain table has no partition tree; a partitioned one has size 0 itself.
            row = conn.execute(
                "SELECT pg_total_relation_size(%(t)s::regclass) + coalesce(("
                " SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree(%(t)s::regclass)"
                " WHERE relid <> %(t)s::regclass), 0)",
                {"t": BLOCKS_TABLE},
            ).fetchone()
        return int(row[0]) if row else 0


def _sqlite_blocks_bytes(path: Path) -> int:
    """Pages of the blocks table and any index on it (dbstat), else the whole file with WAL."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE tbl_name = ?", (BLOCKS_TABLE,)
            )
        ]
        if not names:
            raise Skip(f"no {BLOCKS_TABLE!r} table in the SQLite database")
        try:
            marks = ",".join("?" * len(names))
            row = conn.execute(
                f"SELECT sum(pgsize) FROM dbstat WHERE name IN ({marks})", names
            ).fetchone()
            return int(row[0] or 0) if row else 0
        except sqlite3.OperationalError:  # no dbstat in this SQLite build
            wal = path.with_name(path.name + "-wal")
            return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


_EPW_HEAD = (
    "LOCATION,Bench grid,-,-,besmart benchmark,000000,{lat:.4f},{lon:.4f},0.0,220.0\n"
    "DESIGN CONDITIONS,0\n"
    "TYPICAL/EXTREME PERIODS,0\n"
    "GROUND TEMPERATURES,0\n"
    "HOLIDAYS/DAYLIGHT SAVINGS,No,0,0,0\n"
    "COMMENTS 1,Synthetic values generated by bench/workload.py\n"
    "COMMENTS 2,-\n"
    "DATA PERIODS,1,1,Data,Sunday, 1/ 1,12/31\n"
)
_EPW_FLAGS = "?9?9?9?9E0?9?9?9?9?9?9?9?9?9?9?9?9?9?9?9*9*9?9?9?9"


def epw(point: WeatherPoint) -> str:
    """An EnergyPlus weather file (UTC, hours 1-24) of one grid point."""
    rows = [_EPW_HEAD.format(lat=point.lat, lon=point.lon)]
    for t, temp, ghi, wind in zip(
        point.time.tolist(),
        point.temp_c.tolist(),
        point.ghi_wm2.tolist(),
        point.wind_ms.tolist(),
        strict=True,
    ):
        start = dt.datetime.fromtimestamp(t / 1000 - 3600, tz=dt.UTC)  # the hour's start
        dew = temp - 4.0
        rows.append(
            f"{start.year},{start.month},{start.day},{start.hour + 1},0,{_EPW_FLAGS},"
            f"{temp:.1f},{dew:.1f},75,98500,0,0,300,{ghi:.0f},{ghi * 0.6:.0f},{ghi * 0.4:.0f},"
            f"0,0,0,0,240,{wind:.1f},5,4,20,77777,9,999999999,15,0.1,0,88,0.2,0,0\n"
        )
    return "".join(rows)
