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

import httpx
import pytest

from besmart_server.schemas.users import Role
from besmart_server.server.db import Database
from besmart_server.server.vee import service as vee_service
from besmart_server.server.vee.cli import RESTART_MAX_S, RESTART_S, restart_pauses
from tests.api.signal_helpers import T0, data_url, day_with_defects, make_sensor, moid
from tests.factories import Actor, make_tenant
from tests.processes import alive, children, wait_for
from tests.reliability.server import Server

DAY = 86_400_000
EA = moid("EA+")
# Workers that look and drain five times a second, for tests that wait on them
QUICK = {"BESMART_VALIDATE_DELAY_SECONDS": "0.2", "BESMART_VALIDATE_POLL_SECONDS": "0.2"}


def _vee_children(pid: int) -> list[int]:
    """The live `besmart vee worker` processes whose parent is `pid`."""
    found = []
    for child in children(pid):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # exited meanwhile
        if b"vee" in argv and b"worker" in argv and alive(child):
            found.append(child)
    return found


@pytest.fixture
def served(database_url: str, db: Database, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(**extra: str) -> Server:
        s = Server(database_url, tmp_path / f"serve-{len(started)}.log", env={**QUICK, **extra})
        started.append(s)
        s.start()
        return s

    yield start
    for s in started:
        s.kill()  # its worker dies with it


def _write(s: Server, owner: Actor, cid: int, mid: int) -> None:
    r = httpx.put(s.url + data_url(cid, mid, EA), json=day_with_defects(), headers=owner.headers)
    assert r.status_code == 200, r.text


def _rules(s: Server, owner: Actor, cid: int, mid: int) -> set[str]:
    r = httpx.get(
        f"{s.url}/api/sensors/{cid}.{mid}/signals/{EA}/quality",
        params={"since": T0, "till": T0 + DAY},
        headers=owner.headers,
    )
    assert r.status_code == 200, r.text
    return {e["rule"] for e in r.json()["events"]}


def _pending(db: Database) -> int:
    with db.transaction(write=False) as conn:
        return vee_service.pending(conn)


def _worker_env(database_url: str, **extra: str) -> dict[str, str]:
    """A `besmart vee worker` started by the test on the test database."""
    return {**os.environ, "BESMART_DATABASE_URL": database_url, **QUICK, **extra}


def _serve_pid(s: Server) -> int:
    assert s.proc is not None
    return s.proc.pid


def _one_worker(s: Server) -> int:
    """The pid of the one validation worker `s` started."""
    wait_for(lambda: len(_vee_children(_serve_pid(s))) == 1, 60, "serve's validation worker")
    (worker,) = _vee_children(_serve_pid(s))
    return worker


def _validated(db: Database, s: Server) -> None:
    """A day with a gap and a spike written through `s` comes out validated."""
    cid, owner = make_tenant(db, Role.owner)
    mid = make_sensor(db, cid)
    _write(s, owner, cid, mid)
    wait_for(lambda: {"gap", "spike"} <= _rules(s, owner, cid, mid), 60, "the write validated")
    assert _pending(db) == 0


def test_serve_validates_in_a_worker_process_that_stops_with_it(
    db: Database, served: Callable[..., Server]
) -> None:
    s = served()
    worker = _one_worker(s)
    _validated(db, s)
    proc = s.proc
    assert proc is not None
    s.stop()  # SIGTERM
    assert proc.returncode == -signal.SIGTERM, s.log.read_text()[-2000:]
    assert not alive(worker)  # stopped by serve before it exited, not left behind


def test_a_killed_serve_leaves_no_worker_and_a_dead_worker_is_started_again(
    db: Database, served: Callable[..., Server]
) -> None:
    s = served()
    first = _one_worker(s)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: _vee_children(_serve_pid(s)) not in ([], [first]), 60, "another worker")
    second = _one_worker(s)
    _validated(db, s)  # by the new worker
    assert "killed by the kernel with its parent" in s.log.read_text()
    s.kill()  # no chance to stop its worker: the kernel kills it too, at once
    wait_for(lambda: not alive(second), 0.5, "the orphaned worker to die")


def test_without_a_worker_in_serve_a_worker_elsewhere_validates_the_queue(
    db: Database, served: Callable[..., Server], database_url: str, tmp_path: Path
) -> None:
    cid, owner = make_tenant(db, Role.owner)
    mid = make_sensor(db, cid)
    s = served(BESMART_VALIDATE_IN_SERVE="0")
    _write(s, owner, cid, mid)
    time.sleep(1.0)  # five polls' worth: nobody drains
    assert _vee_children(_serve_pid(s)) == []
    assert _pending(db) == 1
    assert _rules(s, owner, cid, mid) == set()
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "besmart_server", "vee", "worker"],
            env=_worker_env(database_url),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: {"gap", "spike"} <= _rules(s, owner, cid, mid), 60, "the queue validated")
        assert _pending(db) == 0
    finally:
        worker.terminate()
        code = worker.wait(timeout=60)
    assert code == 0, log.read_text()[-2000:]
    assert "validation worker" in log.read_text()


def test_a_worker_refuses_to_run_with_validation_off(database_url: str, db: Database) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "besmart_server", "vee", "worker"],
        env=_worker_env(database_url, BESMART_VALIDATE_AFTER_WRITE="0"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "BESMART_VALIDATE_AFTER_WRITE" in done.stderr


def test_the_restart_pause_doubles_while_workers_die_young_and_starts_over() -> None:
    """A worker dying at once waits 1, 2, 4 … up to 30 s before the next start; one that ran
    30 s or more was well, so its exit waits 1 s again."""
    waits, pause = [], RESTART_S
    for _ in range(7):
        wait, pause = restart_pauses(pause, 0.5)
        waits.append(wait)
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert restart_pauses(pause, RESTART_MAX_S) == (RESTART_S, 2 * RESTART_S)
    assert restart_pauses(pause, RESTART_MAX_S - 1) == (RESTART_MAX_S, RESTART_MAX_S)
