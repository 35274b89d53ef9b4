"""InfluxDB 1.x and VictoriaMetrics as peers, plus the process helpers every engine uses.

Each peer is installed from its Debian package when its binary is missing, started on a
free loopback port with its data in a temporary directory, fed the benchmark's points as
line protocol over HTTP, queried with the closest equivalents of besmart's reads, measured
on disk, and stopped. Every wait is a bounded loop.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from zoneinfo import ZoneInfo

import httpx
import orjson

from bench.workload import MS_DAY, Batch, Chunk, Query, Workload

LOOPBACK = "127.0.0.1"


class Skip(Exception):
    """A figure (or a whole engine) that cannot be measured here, with the reason."""


def free_port() -> int:
    """A free TCP port on the loopback address (bound and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def http_client(base_url: str, timeout_s: float = 120.0) -> httpx.Client:
    """A keep-alive client for loopback only (proxy variables from the environment ignored)."""
    if not base_url.startswith(f"http://{LOOPBACK}:"):
        raise ValueError(f"benchmark traffic stays on loopback, not {base_url}")
    return httpx.Client(base_url=base_url, timeout=timeout_s, trust_env=False)


def start(
    argv: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a server process in its own session, its output going to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """SIGTERM the process group we started (a server and its workers), SIGKILL if it hangs."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        proc.wait(timeout=timeout_s)


def wait_until(
    what: str,
    check: Callable[[], bool],
    *,
    timeout_s: float,
    interval_s: float = 0.1,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Poll ``check`` until it is true; a bounded loop in both count and time."""
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / interval_s) + 1):
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}{_tail(log)}")
        try:
            if check():
                return
        except (httpx.TransportError, OSError):
            pass
        if time.monotonic() >= deadline:
            break
        time.sleep(interval_s)
    raise TimeoutError(f"{what}: not ready within {timeout_s:.0f} s{_tail(log)}")


def _tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return "\n  " + "\n  ".join(text) if text else ""


def tree_bytes(path: Path) -> int:
    """Bytes allocated on disk to every regular file under ``path`` (as ``du``: sparse,
    preallocated files count what they use, not their length)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:  # a part merged away while we walk
                continue
    return total


def settle_size(path: Path, *, stable_s: float, timeout_s: float) -> int:
    """The size of ``path`` once it has not changed for ``stable_s`` (or at the timeout)."""
    deadline = time.monotonic() + timeout_s
    last, since = tree_bytes(path), time.monotonic()
    for _ in range(int(timeout_s / 0.5) + 1):
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
        now = tree_bytes(path)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= stable_s:
            break
    return last


def package_version(package: str) -> str:
    """The installed Debian package's version (Debian's VictoriaMetrics reports none itself)."""
    try:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except OSError:
        return ""
    return done.stdout.decode(errors="replace").strip() if done.returncode == 0 else ""


def which_or_install(binary: str, package: str) -> str:
    """The path of ``binary``, installing Debian's ``package`` first when it is missing.

    Maintainer scripts would start the packaged service on its default (all-interface)
    port; a ``policy-rc.d`` that denies every start is put in place for the install when the
    machine has none, and removed afterwards.
    """
    found = shutil.which(binary)
    if found:
        return found
    if os.geteuid() != 0:
        raise Skip(f"{binary} missing; install the Debian package {package!r} as root")
    policy = Path("/usr/sbin/policy-rc.d")
    created = not policy.exists()
    if created:
        policy.write_text("#!/bin/sh\n# bench: keep packaged services from starting\nexit 101\n")
        policy.chmod(0o755)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    try:
        done = subprocess.run(install, env=env, capture_output=True, timeout=600, check=False)
        if done.returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, timeout=600, check=False)
            done = subprocess.run(install, env=env, capture_output=True, timeout=600, check=False)
    finally:
        if created:
            policy.unlink(missing_ok=True)
    found = shutil.which(binary)
    if not found:
        err = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise Skip(f"could not install {package}: {' '.join(err)}")
    return found


@dataclass(frozen=True)
class Read:
    """One prepared read: ``send`` does the request (timed), ``count`` checks its answer."""

    send: Callable[[], bytes]
    count: Callable[[bytes], int]


def line_protocol(chunk: Chunk, *, acq_field: bool) -> str:
    """InfluxDB line protocol (ms precision) for one chunk; tags sorted by key.

    A version carries its acquisition stamp as the tag ``ver`` (so versions are separate
    series and do not overwrite each other) and, when ``acq_field``, also as the integer
    field ``acq`` that InfluxQL's ``max()`` selector needs to pick the newest one.
    """
    s = chunk.series
    tags = f"moid={s.moid},sensor={s.sensor}"
    extra = ""
    if s.version is not None:
        tags += f",ver={s.acq_ms}"
        if acq_field:
            extra = f",acq={s.acq_ms}i"
    prefix = f"{s.measurement},{tags} value="
    times, values = chunk.time.tolist(), chunk.value.tolist()
    return "".join([f"{prefix}{v}{extra} {t}\n" for t, v in zip(times, values, strict=True)])


def _check(resp: httpx.Response, *ok: int) -> httpx.Response:
    if resp.status_code not in ok:
        raise RuntimeError(
            f"{resp.request.method} {resp.request.url.path}: {resp.status_code} {resp.text[:300]}"
        )
    return resp


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.3f}"


class Served:
    """A server the benchmark starts on entry and stops on exit, even if starting fails."""

    def _start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Peer(Served):
    """Start/stop plumbing shared by the two peers."""

    name = ""
    durability = ""
    version = ""

    def __init__(self) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-"))
        self.port = free_port()
        self.log = self._tmp / "server.log"
        self.store = self._tmp / "store"  # everything the peer keeps, and nothing else
        self._proc: subprocess.Popen[bytes] | None = None
        self.http = http_client(f"http://{LOOPBACK}:{self.port}")

    def _start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.http.close()
        if self._proc is not None:
            stop(self._proc)
            self._proc = None
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _launch(self, argv: Sequence[str], ready_path: str, timeout_s: float = 60) -> None:
        self._proc = start(argv, self.log)
        wait_until(
            f"{self.name} on port {self.port}",
            lambda: self.http.get(ready_path, timeout=2).status_code in (200, 204),
            timeout_s=timeout_s,
            proc=self._proc,
            log=self.log,
        )

    def prepare(self, batches: Sequence[Batch]) -> list[bytes]:
        return [
            "".join(line_protocol(c, acq_field=self._acq_field) for c in b.chunks).encode()
            for b in batches
        ]

    _acq_field = False

    def setup(self, workload: Workload) -> None:
        """Nothing to create: series come into being with their first point."""

    def write(self, body: bytes) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Make every acknowledged write visible to reads (a no-op where it already is)."""

    def settle(self) -> float | None:
        """Nothing runs after a write here that the benchmark waits for."""
        return None

    def read(self, kind: str, q: Query) -> Read:
        raise NotImplementedError

    def storage_bytes(self) -> int:
        raise NotImplementedError

    def compacted_bytes(self) -> int | None:
        """None: `storage_bytes` is measured after the peer's own compaction already."""
        return None

    def stored_points(self) -> int | None:
        """Not counted back: the workload's points are what was written."""
        return None

    def describe(self) -> str:
        return f"{self.name} {self.version}".strip()


class InfluxDB(_Peer):
    """InfluxDB 1.x (Debian's ``influxdb``, 1.6.7): database ``bench``, measurement per set.

    Series: ``sig`` (meters), ``minute``, ``ver`` with tags ``sensor``, ``moid`` (and
    ``ver`` for versions), field ``value`` (and ``acq`` for versions).
    """

    name = "influxdb"
    durability = "WAL fsync on every write (wal-fsync-delay 0s, the default)"
    _acq_field = True

    def _config(self, *, settle: bool) -> Path:
        # Defaults everywhere but the paths, loopback addresses, no limits on body and rows,
        # no telemetry and no internal monitor database. `settle` (for measuring size only)
        # snapshots and fully compacts idle shards quickly instead of after 10 min / 4 h.
        cold = (
            '  cache-snapshot-write-cold-duration = "2s"\n'
            '  compact-full-write-cold-duration = "5s"\n'
            if settle
            else ""
        )
        conf = self._tmp / "influxdb.conf"
        conf.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "{LOOPBACK}:{self._rpc_port}"\n'
            "[meta]\n"
            f'  dir = "{self.store}/meta"\n'
            "[data]\n"
            f'  dir = "{self.store}/data"\n'
            f'  wal-dir = "{self.store}/wal"\n'
            "  query-log-enabled = false\n"
            f"{cold}"
            "[monitor]\n"
            "  store-enabled = false\n"
            "[http]\n"
            "  enabled = true\n"
            f'  bind-address = "{LOOPBACK}:{self.port}"\n'
            "  log-enabled = false\n"
            "  max-row-limit = 0\n"
            "  max-body-size = 0\n"
            "[continuous_queries]\n"
            "  enabled = false\n"
            "[subscriber]\n"
            "  enabled = false\n"
        )
        return conf

    def _start(self) -> None:
        self._bin = which_or_install("influxd", "influxdb")
        self._rpc_port = free_port()
        self._launch([self._bin, "-config", str(self._config(settle=False))], "/ping")
        self.version = self.http.get("/ping").headers.get("X-Influxdb-Version", "")
        self._query("CREATE DATABASE bench", post=True)

    def _query(self, q: str, *, post: bool = False) -> bytes:
        params = {"db": "bench", "epoch": "ms", "q": q}
        resp = (
            self.http.post("/query", params=params)
            if post
            else self.http.get("/query", params=params)
        )
        return _check(resp, 200).content

    def write(self, body: bytes) -> None:
        _check(
            self.http.post("/write", params={"db": "bench", "precision": "ms"}, content=body), 204
        )

    @staticmethod
    def _count(body: bytes) -> int:
        answer: dict[str, Any] = orjson.loads(body)
        n = 0
        for result in answer["results"]:
            if "error" in result:
                raise RuntimeError(f"influxdb: {result['error']}")
            n += sum(len(s["values"]) for s in result.get("series", []))
        return n

    def _read(self, q: str) -> Read:
        return Read(lambda: self._query(q), self._count)

    @staticmethod
    def _where(q: Query) -> str:
        s = q.series[0]
        return (
            f"sensor = '{s.sensor}' AND moid = '{s.moid}' "
            f"AND time >= {q.since}ms AND time < {q.till}ms"
        )

    def read(self, kind: str, q: Query) -> Read:
        if kind == "weather":
            raise Skip("no equivalent (weather is a besmart feature)")
        where = self._where(q)
        if kind == "raw":
            return self._read(f"SELECT value FROM sig WHERE {where}")
        if kind == "last":
            # The `max(acq)` selector returns the `value` of the newest version in each
            # 15-minute bucket, i.e. at each capture time.
            return self._read(
                f"SELECT max(acq), value FROM ver WHERE {where} GROUP BY time(15m) fill(none)"
            )
        if kind == "daily":
            return self._read(
                f"SELECT mean(value) FROM minute WHERE {where} GROUP BY time(1d) fill(none)"
            )
        if kind == "daily_tz":
            return self._read(
                f"SELECT mean(value) FROM minute WHERE {where} GROUP BY time(1d) fill(none) "
                f"tz('{q.tz}')"
            )
        if kind == "monthly":
            # InfluxQL has no calendar months: local days, summed to months by the client
            # (inside the timed send).
            days = f"SELECT sum(value) FROM decade WHERE {where} GROUP BY time(1d) fill(none) "
            query, zone = days + f"tz('{q.tz}')", ZoneInfo(q.tz or "UTC")
            return Read(lambda: _local_months(self._query(query), zone), self._count)
        if kind == "multi":
            sensors = "|".join(dict.fromkeys(s.sensor for s in q.series))
            return self._read(
                f"SELECT value FROM sig WHERE sensor =~ /^({sensors})$/ "
                f"AND time >= {q.since}ms AND time < {q.till}ms GROUP BY sensor, moid"
            )
        raise Skip("no equivalent")

    def storage_bytes(self) -> int:
        """Data + WAL once idle shards are snapshot and fully compacted (restart to settle)."""
        if self._proc is not None:
            stop(self._proc)
        self._launch([self._bin, "-config", str(self._config(settle=True))], "/ping", 120)
        return settle_size(self.store, stable_s=8, timeout_s=120)


class VictoriaMetrics(_Peer):
    """VictoriaMetrics single-node (Debian's ``victoria-metrics``, 1.79.5), Influx line
    protocol on ``/write``: metric names ``sig_value``, ``minute_value``, ``ver_value``."""

    name = "victoriametrics"
    durability = "acknowledged from memory, on disk within about a second"

    def _start(self) -> None:
        binary = which_or_install("victoria-metrics", "victoria-metrics")
        self._launch(
            [
                binary,
                f"-storageDataPath={self.store}",
                f"-httpListenAddr={LOOPBACK}:{self.port}",
                "-retentionPeriod=100y",  # the workload lies in the past
                "-search.disableCache",  # every repetition is computed, not served from cache
                "-search.maxPointsPerTimeseries=10000000",  # a year of 15-min steps
                "-loggerLevel=WARN",
            ],
            "/health",
        )
        found = re.search(r'short_version="([^"]+)"', self.http.get("/metrics").text)
        self.version = found.group(1) if found else package_version("victoria-metrics")

    def write(self, body: bytes) -> None:
        _check(self.http.post("/write", params={"precision": "ms"}, content=body), 204)

    def flush(self) -> None:
        _check(self.http.get("/internal/force_flush"), 200)

    @staticmethod
    def _count_export(body: bytes) -> int:
        return sum(len(orjson.loads(line)["values"]) for line in body.splitlines() if line)

    @staticmethod
    def _count_range(body: bytes) -> int:
        answer: dict[str, Any] = orjson.loads(body)
        if answer.get("status") != "success":
            raise RuntimeError(f"victoriametrics: {answer}")
        return sum(len(r["values"]) for r in answer["data"]["result"])

    def _export(self, match: str, q: Query) -> Read:
        params = {"match[]": match, "start": _seconds(q.since), "end": _seconds(q.till - 1)}
        return Read(
            lambda: _check(self.http.get("/api/v1/export", params=params), 200).content,
            self._count_export,
        )

    def _range(self, expr: str, start_ms: int, end_ms: int, step_s: int) -> Read:
        params = {
            "query": expr,
            "start": _seconds(start_ms),
            "end": _seconds(end_ms),
            "step": str(step_s),
            "nocache": "1",
        }
        return Read(
            lambda: _check(self.http.get("/api/v1/query_range", params=params), 200).content,
            self._count_range,
        )

    def read(self, kind: str, q: Query) -> Read:
        if kind == "weather":
            raise Skip("no equivalent (weather is a besmart feature)")
        s = q.series[0]
        sel = f'{{sensor="{s.sensor}",moid="{s.moid}"}}'
        if kind == "raw":
            return self._export(f"sig_value{sel}", q)
        if kind == "last":
            # At each 15-minute step keep the series whose `ver` label (the acquisition
            # stamp) is the largest, then fold the versions into one series.
            ver = f'label_value(ver_value{sel}, "ver")'
            expr = (
                f"sum without (ver) (ver_value{sel} if "
                f"({ver} == on(sensor, moid) group_left max by (sensor, moid) ({ver})))"
            )
            return self._range(expr, q.since, q.till - 1, 900)
        if kind in ("daily_tz", "monthly"):
            raise Skip("no local-time buckets (MetricsQL steps are UTC-aligned)")
        if kind == "daily":
            # The window (t - 1d, t] ending at g + 1d - 1 ms is the bucket [g, g + 1d).
            expr = f"avg_over_time(minute_value{sel}[1d])"
            return self._range(expr, q.since + MS_DAY - 1, q.till - 1, 86_400)
        if kind == "multi":
            sensors = "|".join(dict.fromkeys(x.sensor for x in q.series))
            return self._export(f'sig_value{{sensor=~"{sensors}"}}', q)
        raise Skip("no equivalent")

    def storage_bytes(self) -> int:
        """Data and index once flushed and merged into final parts."""
        self.flush()
        _check(self.http.get("/internal/force_merge", timeout=300), 200)
        return settle_size(self.store, stable_s=5, timeout_s=90)


def _local_months(body: bytes, zone: ZoneInfo) -> bytes:
    """An InfluxDB answer of local days (epoch ms) summed to the local months of `zone`, in
    the same answer's shape."""
    answer: dict[str, Any] = orjson.loads(body)
    for result in answer["results"]:
        for series in result.get("series", []):
            months: dict[tuple[int, int], list[float]] = {}
            for t, v in series["values"]:
                local = dt.datetime.fromtimestamp(t / 1000, zone)
                cell = months.setdefault((local.year, local.month), [t, 0.0])
                cell[1] += v
            series["values"] = list(months.values())
    return orjson.dumps(answer)


PEERS: dict[str, type[_Peer]] = {"influxdb": InfluxDB, "victoriametrics": VictoriaMetrics}
