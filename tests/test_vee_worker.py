"""The validation worker in processes of its own: `besmart serve` starts one beside the API
and stops it with the API (killed or not), starts another when it dies; with
BESMART_VALIDATE_IN_SERVE=0 the API starts none and a `besmart vee worker` run elsewhere
validates what the API queued."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from besmart_server.schemas.users import Role
from besmart_server.server.db import Database
from besmart_server.server.vee import service as vee_service
from tests.api.signal_helpers import T0, Q, data_url, make_sensor, moid
from tests.factories import Actor, make_tenant

DAY = 86_400_000
EA = moid("EA+")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(done: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {timeout_s:g} s: {what}")
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by its parent, is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _vee_children(pid: int) -> list[int]:
    """The live `besmart vee worker` processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        if ppid == pid and b"vee" in argv and b"worker" in argv and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BESMART_")}
    return {
        **env,
        "BESMART_DATABASE_URL": database_url,
        "BESMART_DEMO": "0",
        "BESMART_VALIDATE_DELAY_SECONDS": "0.2",
        "BESMART_VALIDATE_POLL_SECONDS": "0.2",
        **extra,
    }


class Served:
    """`besmart serve` in a process of its own, its log in a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = _free_port()
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "besmart_server", "serve", "--port", str(self.port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.base = f"http://127.0.0.1:{self.port}"
        _until(self._up, f"serve on {self.port}: {log.read_text()[-2000:]}")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"serve exited: {self.log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.base}/openapi.json", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)


@pytest.fixture
def served(database_url: str, db: Database, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(**extra: str) -> Served:
        s = Served(_env(database_url, **extra), tmp_path / f"serve-{len(started)}.log")
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop(signal.SIGKILL)
        for child in _vee_children(s.proc.pid):
            os.kill(child, signal.SIGKILL)


def _day_with_defects() -> dict[str, Any]:
    """A day of quarter-hours with a 2-hour gap and a spike."""
    slots = [i for i in range(96) if not 40 <= i < 48]
    values = [round(1.0 + 0.5 * float(np.sin(2 * np.pi * i / 96)), 6) for i in slots]
    values[slots.index(70)] = 9.0
    return {"time": [T0 + i * Q for i in slots], "value": values}


def _write(s: Served, owner: Actor, cid: int, mid: int) -> None:
    r = httpx.put(s.base + data_url(cid, mid, EA), json=_day_with_defects(), headers=owner.headers)
    assert r.status_code == 200, r.text


def _rules(s: Served, owner: Actor, cid: int, mid: int) -> set[str]:
    r = httpx.get(
        f"{s.base}/api/sensors/{cid}.{mid}/signals/{EA}/quality",
        params={"since": T0, "till": T0 + DAY},
        headers=owner.headers,
    )
    assert r.status_code == 200, r.text
    return {e["rule"] for e in r.json()["events"]}


def _pending(db: Database) -> int:
    with db.transaction(write=False) as conn:
        return vee_service.pending(conn)


def _one_worker(s: Served) -> int:
    """The pid of the one validation worker `s` started."""
    _until(lambda: len(_vee_children(s.proc.pid)) == 1, "serve's validation worker")
    (worker,) = _vee_children(s.proc.pid)
    return worker


def _validated(db: Database, s: Served) -> None:
    """A day with a gap and a spike written through `s` comes out validated."""
    cid, owner = make_tenant(db, Role.owner)
    mid = make_sensor(db, cid)
    _write(s, owner, cid, mid)
    _until(lambda: {"gap", "spike"} <= _rules(s, owner, cid, mid), "the write validated")
    assert _pending(db) == 0


def test_serve_validates_in_a_worker_process_that_stops_with_it(
    db: Database, served: Callable[..., Served]
) -> None:
    s = served()
    worker = _one_worker(s)
    _validated(db, s)
    s.stop(signal.SIGTERM)
    assert s.proc.returncode == -signal.SIGTERM, s.log.read_text()[-2000:]
    assert not _alive(worker)  # stopped by serve before it exited, not left behind


def test_a_killed_serve_leaves_no_worker_and_a_dead_worker_is_started_again(
    db: Database, served: Callable[..., Served]
) -> None:
    s = served()
    first = _one_worker(s)
    os.kill(first, signal.SIGKILL)
    _until(lambda: _vee_children(s.proc.pid) not in ([], [first]), "another worker")
    second = _one_worker(s)
    _validated(db, s)  # by the new worker
    assert "killed by the kernel with its parent" in s.log.read_text()
    s.stop(signal.SIGKILL)  # no chance to stop its worker: the kernel kills it too, at once
    _until(lambda: not _alive(second), "the orphaned worker to die", timeout_s=0.5)


def test_without_a_worker_in_serve_a_worker_elsewhere_validates_the_queue(
    db: Database, served: Callable[..., Served], database_url: str, tmp_path: Path
) -> None:
    cid, owner = make_tenant(db, Role.owner)
    mid = make_sensor(db, cid)
    s = served(BESMART_VALIDATE_IN_SERVE="0")
    _write(s, owner, cid, mid)
    time.sleep(1.0)  # five polls' worth: nobody drains
    assert _vee_children(s.proc.pid) == []
    assert _pending(db) == 1
    assert _rules(s, owner, cid, mid) == set()
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "besmart_server", "vee", "worker"],
            env=_env(database_url),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _until(lambda: {"gap", "spike"} <= _rules(s, owner, cid, mid), "the queue validated")
        assert _pending(db) == 0
    finally:
        worker.terminate()
        code = worker.wait(timeout=60)
    assert code == 0, log.read_text()[-2000:]
    assert "validation worker" in log.read_text()


def test_a_worker_refuses_to_run_with_validation_off(database_url: str, db: Database) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "besmart_server", "vee", "worker"],
        env=_env(database_url, BESMART_VALIDATE_AFTER_WRITE="0"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "BESMART_VALIDATE_AFTER_WRITE" in done.stderr
