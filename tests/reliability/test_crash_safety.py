"""Crash safety: a real `besmart serve` is SIGKILLed at random moments while it takes writes.

Two writer threads PUT through the API without pause: single-series PUTs (v2 and the legacy
204 path) and multi-series PUTs over three sensors, some of them new versions of earlier
times. Each PUT carries values unique to it, and each answer is recorded: acknowledged (2xx)
or cut off by the kill (unknown). The server's whole process group is killed with SIGKILL
several times, at a random moment each time, and restarted on the same database. At the end,
every version is read back through the API and:

- every point of every acknowledged PUT is there exactly once (its own version);
- no point is there twice, acknowledged or not;
- every PUT, single or multi-series, is all there or not there at all (no half of one).

Runs on the test database's engine (SQLite file or PostgreSQL). BESMART_CRASH_KILLS sets the
kills (CI: 3); the seed is printed, BESMART_CRASH_SEED replays one.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from besmart_server.server.db import Database
from tests.api.signal_helpers import make_sensor, moid
from tests.factories import Actor, make_tenant
from tests.reliability.server import Server

pytestmark = pytest.mark.slow

KILLS = int(os.environ.get("BESMART_CRASH_KILLS", "3"))
SEED = int(os.environ.get("BESMART_CRASH_SEED", str(random.SystemRandom().randrange(10**9))))
T0 = 1_767_225_600_000
STEP = 1000  # ms between points
POINTS = 400  # points per series per PUT
SLOT = 10_000  # value = put_id * SLOT + k: unique per PUT and point


@dataclass
class Put:
    """One PUT: its id, the series it wrote and the times of its points."""

    put_id: int
    series: list[int]  # sensor mids
    start: int  # time of its first point
    acked: bool = False


@dataclass
class Ledger:
    """Every PUT sent, by id; guarded by a lock (two writer threads)."""

    puts: dict[int, Put] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_id: int = 1
    acked: int = 0
    unknown: int = 0

    def new(self, series: list[int], start: int) -> Put:
        with self.lock:
            p = Put(self.next_id, series, start)
            self.next_id += 1
            self.puts[p.put_id] = p
            return p


def _columns(p: Put) -> dict[str, list[Any]]:
    return {
        "time": [p.start + k * STEP for k in range(POINTS)],
        "value": [float(p.put_id * SLOT + k) for k in range(POINTS)],
    }


def _writer(
    base_url: str,
    actor: Actor,
    cid: int,
    mids: list[int],
    lane: int,
    ledger: Ledger,
    stop: threading.Event,
    r: random.Random,
    errors: list[str],
) -> None:
    """PUT until a request fails with a transport error (the kill) or `stop` is set."""
    p_plus = moid("P+")
    with httpx.Client(base_url=base_url, headers=actor.headers, timeout=30.0) as http:
        while not stop.is_set():
            # Fresh times mostly; one PUT in four rewrites earlier times (a newer version).
            slot = r.randrange(0, 40) if r.random() < 0.25 else r.randrange(40, 10**6)
            start = T0 + (lane * 10**6 + slot) * POINTS * STEP
            multi = r.random() < 0.5
            series = mids if multi else [r.choice(mids)]
            p = ledger.new(series, start)
            try:
                if multi:
                    body = [
                        {
                            "client_cid": cid,
                            "sensor_mid": mid,
                            "signal_type_moid": p_plus,
                            "data": _columns(p),
                        }
                        for mid in series
                    ]
                    res = http.put("/api/sensors/signals/data/v2", json=body)
                else:
                    url = f"/api/sensors/{cid}.{series[0]}/signals/{p_plus}/data"
                    res = http.put(url + r.choice(["/v2", ""]), json=_columns(p))
            except httpx.TransportError:
                with ledger.lock:
                    ledger.unknown += 1
                return
            if res.status_code not in (200, 204):
                errors.append(f"PUT {p.put_id}: {res.status_code} {res.text[:200]}")
                return
            with ledger.lock:
                p.acked = True
                ledger.acked += 1


def _read_all(base_url: str, actor: Actor, cid: int, mid: int) -> Counter[tuple[int, float]]:
    """Every stored version of the sensor's P+ series as a multiset of (time, value)."""
    url = f"/api/sensors/{cid}.{mid}/signals/{moid('P+')}/data"
    lo, hi = T0, T0 + 3 * 10**6 * POINTS * STEP
    res = httpx.get(
        base_url + url,
        params={"since": lo, "till": hi, "get_last": False},
        headers=actor.headers,
        timeout=120.0,
    )
    assert res.status_code == 200, res.text
    data = res.json()["data"]
    return Counter(zip(data["time"], data["value"], strict=True))


def test_acknowledged_writes_survive_sigkill(
    database_url: str, db: Database, tmp_path: Path
) -> None:
    r = random.Random(SEED)
    cid, actor = make_tenant(db)
    lanes = [[make_sensor(db, cid, f"crash-{lane}-{i}") for i in range(3)] for lane in range(2)]
    server = Server(
        database_url,
        tmp_path / "server.log",
        # Long windows: the final read spans every slot the writers may have used.
        env={"BESMART_MAX_WINDOW_DAYS": "100000", "BESMART_MAX_POINTS_PER_READ": "50000000"},
    )
    ledger = Ledger()
    errors: list[str] = []
    try:
        for _kill in range(KILLS):
            server.start()
            stop = threading.Event()
            threads = [
                threading.Thread(
                    target=_writer,
                    args=(server.url, actor, cid, mids, lane, ledger, stop, r, errors),
                )
                for lane, mids in enumerate(lanes)
            ]
            for t in threads:
                t.start()
            time.sleep(r.uniform(0.5, 2.0))  # a random moment, writes in flight
            server.kill()
            stop.set()
            for t in threads:
                t.join(timeout=60)
            assert not errors, errors
        server.start()
        stored = {mid: _read_all(server.url, actor, cid, mid) for mids in lanes for mid in mids}
    finally:
        server.kill()

    verified = 0
    for mid, points in stored.items():
        doubles = [tv for tv, n in points.items() if n > 1]
        assert not doubles, f"sensor {mid}: stored more than once: {doubles[:5]}"
    for p in ledger.puts.values():
        cols = _columns(p)
        wanted = list(zip(cols["time"], cols["value"], strict=True))
        present = {mid: sum(stored[mid][tv] for tv in wanted) for mid in p.series}
        counts = set(present.values())
        # One transaction: every point of every series, or none of any.
        assert len(counts) == 1, (p, present)
        assert counts <= {0, len(wanted)}, (p, present)
        if p.acked:
            assert counts == {len(wanted)}, f"acknowledged PUT {p.put_id} lost: {present}"
            verified += len(wanted) * len(p.series)
    multi_acked = sum(1 for p in ledger.puts.values() if p.acked and len(p.series) > 1)
    print(
        f"crash safety ({db.dialect}, seed {SEED}): {KILLS} SIGKILLs, {ledger.acked} PUTs "
        f"acknowledged ({multi_acked} multi-series), {ledger.unknown} cut off by a kill, "
        f"{verified} acknowledged points verified exactly once"
    )
    assert ledger.acked >= KILLS  # the test wrote something before each kill
