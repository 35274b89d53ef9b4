"""The distributed executor with a real worker: `besmart graph worker` consuming dramatiq
messages from the Redis broker, running a graph over several sensors against the test
database. The worker process is bounded in time and stopped in `finally`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from besmart_server.schemas.users import Role
from besmart_server.server.app import create_app
from besmart_server.server.config import Settings
from besmart_server.server.db import Database
from tests.api.signal_helpers import get, make_sensor, moid, put
from tests.factories import make_tenant

REDIS = ("127.0.0.1", 6379)
BROKER_URL = "redis://127.0.0.1:6379/0"
T0 = 1_782_864_000_000  # 2026-07-01T00:00:00Z
DAY = 86_400_000
EA_PLUS = 1011
SENSORS = 4
WORKER_START_S = 60
RUN_TIMEOUT_S = 120


def _redis_up() -> bool:
    try:
        with socket.create_connection(REDIS, timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def queue() -> Iterator[str]:
    """A queue of this test's own (tests run in parallel); its Redis keys removed after."""
    if not _redis_up():
        pytest.fail(
            "Redis is not running on 127.0.0.1:6379; start it with: redis-server --daemonize yes "
            '--bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no'
        )
    name = f"besmart-test-{uuid.uuid4().hex[:10]}"
    yield name
    import redis

    client = redis.Redis.from_url(BROKER_URL)
    try:
        keys = list(client.scan_iter(match=f"dramatiq:{name}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _besmart() -> list[str]:
    exe = Path(sys.executable).parent / "besmart"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from besmart_server.cli import main; main()"]


@pytest.fixture
def worker(database_url: str, queue: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`besmart graph worker` on the test database and queue; stopped (SIGTERM, then kill)."""
    env = {
        **os.environ,
        "BESMART_DATABASE_URL": database_url,
        "BESMART_BROKER_URL": BROKER_URL,
        "BESMART_BROKER_QUEUE": queue,
    }
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [*_besmart(), "graph", "worker", "--threads", "2"], env=env, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + WORKER_START_S
        while b"graph worker on" not in (tmp_path / "worker.log").read_bytes():
            assert proc.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.1)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def test_a_graph_over_several_sensors_runs_on_a_real_worker(
    database_url: str, db: Database, queue: str, worker: subprocess.Popen[bytes]
) -> None:
    settings = Settings(
        database_url=database_url,
        demo=False,
        executor="dramatiq",
        broker_url=BROKER_URL,
        broker_queue=queue,
    )
    cid, actor = make_tenant(db, Role.write)
    with TestClient(create_app(settings)) as client:
        mids = []
        for i in range(SENSORS):
            mid = make_sensor(db, cid, f"coarse {i}")
            readings = [100.0 + i, 110.0 + 2 * i, 125.0 + 3 * i, 131.0 + 4 * i]
            times = [T0 + k * DAY for k in range(4)]
            put(client, actor.headers, cid, mid, moid("A+"), {"time": times, "value": readings})
            mids.append(mid)
        body = [
            {
                "client_cid": cid,
                "sensor_mid": mid,
                "profile_signal_moid": EA_PLUS,
                "zone_signals_freq_minutes": 1440,
                "signal_discrepancy_tolerance_kWh": 0.1,
                "params": {"type": None},
            }
            for mid in mids
        ]
        res = client.post(
            "/api/tasks/graphs/run/name",
            params={
                "graph_name": "estimation",
                "since": T0 + DAY,
                "till": T0 + 3 * DAY,
                "task_async": True,
            },
            json=body,
            headers=actor.headers,
        )
        assert res.status_code == 202, res.text
        run_id = res.json()["run_id"]
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while True:
            status = client.get(f"/api/tasks/runs/{run_id}", headers=actor.headers).json()
            if status["state"] in ("done", "failed"):
                break
            assert worker.poll() is None, "the worker died"
            assert time.monotonic() < deadline, f"run still {status['state']}"
            time.sleep(0.2)
        assert status["state"] == "done", status
        assert status["executor"] == "dramatiq"
        record = status["record"]
        assert record["items"] == SENSORS
        assert record["points_written"] == {f"{cid}.{m}/{EA_PLUS}/4": 2 * 96 for m in mids}
        for i, mid in enumerate(mids):
            data = get(client, actor.headers, cid, mid, EA_PLUS, T0 + DAY, T0 + 3 * DAY)["data"]
            assert len(data["time"]) == 2 * 96
            assert set(data["origin"]) == {4}
            assert set(data["acq_time"]) == {record["run_time"]}
            assert sum(data["value"]) == pytest.approx(
                (125.0 + 3 * i) - (110.0 + 2 * i) + (131.0 + 4 * i) - (125.0 + 3 * i)
            )


def test_a_run_failing_on_a_real_worker_is_recorded_failed_and_writes_nothing(
    database_url: str, db: Database, queue: str, worker: subprocess.Popen[bytes]
) -> None:
    """The second of its two targets cannot be stored: the worker records the run as failed,
    and the first target's points, flushed in the same transaction, are not kept either."""
    settings = Settings(
        database_url=database_url,
        demo=False,
        executor="dramatiq",
        broker_url=BROKER_URL,
        broker_queue=queue,
    )
    cid, actor = make_tenant(db, Role.owner)
    with TestClient(create_app(settings)) as client:
        mid = make_sensor(db, cid, "meter")
        times = [T0 + k * 900_000 for k in range(97)]
        put(client, actor.headers, cid, mid, moid("A+"), {"time": times, "value": list(range(97))})
        read = {"client_cid": cid, "sensor_mid": mid, "moid": moid("A+"), "delta_t": 15}
        target = {"client_cid": cid, "sensor_mid": mid, "origin": 3}
        graph = {
            "nodes": [
                {"function": "signals", "params": {**read, "energy_per_interval": True}},
                {"function": "write", "params": {**target, "moid": EA_PLUS}},
                {"function": "write", "params": {**target, "moid": 99999}},
            ],
            "edges": [{"from": 0, "to": 1}, {"from": 0, "to": 2}],
        }
        stored = client.put(
            "/api/tasks/graphs/two", params={"client_cid": cid}, json=graph, headers=actor.headers
        )
        assert stored.status_code == 201, stored.text
        res = client.post(
            "/api/tasks/graphs/run/name",
            params={"graph_name": "two", "since": T0, "till": T0 + DAY, "task_async": True},
            json={},
            headers=actor.headers,
        )
        assert res.status_code == 202, res.text
        run_id = res.json()["run_id"]
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while True:
            status = client.get(f"/api/tasks/runs/{run_id}", headers=actor.headers).json()
            if status["state"] in ("done", "failed"):
                break
            assert worker.poll() is None, "the worker died"
            assert time.monotonic() < deadline, f"run still {status['state']}"
            time.sleep(0.2)
        assert status["state"] == "failed", status
        assert "99999" in status["error"]
        assert status["finished_at"] is not None
        data = get(client, actor.headers, cid, mid, EA_PLUS, T0, T0 + DAY)["data"]
        assert data["time"] == []
