"""Mixed read/write load for a fixed time at a fixed concurrency, on loopback only.

    python -m loadtest.load --duration 60 --concurrency 16            # starts besmart serve
    python -m loadtest.load --url http://127.0.0.1:8000 --database-url sqlite:///data/x.db

Without --url it starts `besmart serve` on a free loopback port over a fresh SQLite file (or
--database-url), seeds one tenant with sensors and 30 days of 15-minute data, then runs
`concurrency` clients for `duration` seconds, each picking at random:

    read      GET one day of one series                                     35 %
    aggregate GET a week of one series, hourly (delta_t=60)                 15 %
    multiread POST five series, one day each                                15 %
    write     PUT one day (96 points) of one series, new times              20 %
    multiput  PUT five series, 96 points each, in one request               15 %

It prints requests, requests/s, p50/p95/p99 latency per kind and overall, and errors (any
answer but 2xx, or a transport error), and exits 1 on any error. Every request goes to
127.0.0.0/8 or ::1; the loop stops at the deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from besmart_server.schemas.users import Role
from besmart_server.server import migrate
from besmart_server.server.db import Database
from besmart_server.server.users import service as users

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
Q = 15 * 60_000
DAY = 86_400_000
SEED_DAYS = 30
MIX = [("read", 35), ("aggregate", 15), ("multiread", 15), ("write", 20), ("multiput", 15)]


def require_loopback(url: str) -> None:
    """Refuse any target that is not this machine's loopback."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise SystemExit(f"refusing to load {url!r}: only loopback targets (127.0.0.0/8, ::1)")


@dataclass
class Target:
    """The seeded tenant: who calls and which sensors it has."""

    cid: int
    token: str
    mids: list[int]
    moid: int


@dataclass
class Stats:
    """Latencies (s) per kind, and errors."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, kind: str, seconds: float) -> None:
        self.latencies.setdefault(kind, []).append(seconds)


def _pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))] if s else float("nan")


def seed(base_url: str, database_url: str, sensors: int) -> Target:
    """A tenant, an owner token and `sensors` sensors with SEED_DAYS of 15-minute P+ data."""
    db = Database(database_url)
    try:
        migrate.upgrade(db)
        with db.transaction() as conn:
            cid = users.create_client(conn, name=f"load-{time.time_ns()}")
            uid = users.create_user(
                conn, login=f"load-{time.time_ns()}", password=f"pw-{time.time_ns()}"
            )
            users.grant_role(conn, user_id=uid, client_cid=cid, role=Role.owner)
            token = users.issue_token(conn, user_id=uid, ttl_seconds=86_400).token
    finally:
        db.dispose()
    h = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, headers=h, timeout=60) as http:
        types = http.get("/api/sensors/signals/types").json()
        moid = next(t["signal_type_moid"] for t in types if t["symbol"] == "P+")
        mids = []
        n = SEED_DAYS * 96
        for i in range(sensors):
            s = http.post("/api/sensors", params={"client_cid": cid, "name": f"load-{i}"})
            s.raise_for_status()
            mid = int(s.json()["sensor_mid"])
            body = {
                "time": [T0 + k * Q for k in range(n)],
                "value": [round(random.uniform(0, 50), 3) for _ in range(n)],
            }
            http.put(
                f"/api/sensors/{cid}.{mid}/signals/{moid}/data/v2", json=body
            ).raise_for_status()
            mids.append(mid)
    return Target(cid, token, mids, moid)


def _day(r: random.Random) -> int:
    return T0 + r.randrange(SEED_DAYS) * DAY


async def _one(http: httpx.AsyncClient, t: Target, kind: str, r: random.Random) -> httpx.Response:
    mid = r.choice(t.mids)
    data = f"/api/sensors/{t.cid}.{mid}/signals/{t.moid}/data"
    if kind == "read":
        since = _day(r)
        return await http.get(data, params={"since": since, "till": since + DAY, "get_last": True})
    if kind == "aggregate":
        since = T0 + r.randrange(SEED_DAYS - 7) * DAY
        params = {"since": since, "till": since + 7 * DAY, "delta_t": 60, "get_last": True}
        return await http.get(data, params=params)
    if kind == "multiread":
        items = [
            {
                "client_cid": t.cid,
                "sensor_mid": m,
                "signal_type_moid": t.moid,
                "since": (s := _day(r)),
                "till": s + DAY,
                "last_acq": True,
            }
            for m in r.sample(t.mids, min(5, len(t.mids)))
        ]
        return await http.post("/api/sensors/signals/data/v2", json=items)
    # Writes go to days after the seeded month, so reads keep their size.
    start = T0 + (SEED_DAYS + r.randrange(3650)) * DAY
    cols = {
        "time": [start + k * Q for k in range(96)],
        "value": [round(r.uniform(0, 50), 3) for _ in range(96)],
    }
    if kind == "write":
        return await http.put(data + "/v2", json=cols)
    items = [
        {"client_cid": t.cid, "sensor_mid": m, "signal_type_moid": t.moid, "data": cols}
        for m in r.sample(t.mids, min(5, len(t.mids)))
    ]
    return await http.put("/api/sensors/signals/data/v2", json=items)


async def _client(
    base_url: str, t: Target, deadline: float, stats: Stats, r: random.Random
) -> None:
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    headers = {"Authorization": f"Bearer {t.token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as http:
        while time.monotonic() < deadline:
            kind = r.choices(kinds, weights)[0]
            t0 = time.perf_counter()
            try:
                res = await _one(http, t, kind, r)
            except httpx.HTTPError as exc:
                stats.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
                continue
            stats.add(kind, time.perf_counter() - t0)
            if not res.is_success:
                stats.errors.append(f"{kind}: {res.status_code} {res.text[:200]}")


async def run_load(
    base_url: str, target: Target, *, duration: float, concurrency: int, seed: int = 1
) -> dict[str, Any]:
    """Run the mix; returns the report (also what main prints)."""
    require_loopback(base_url)
    stats = Stats()
    started = time.monotonic()
    deadline = started + duration
    await asyncio.gather(
        *(
            _client(base_url, target, deadline, stats, random.Random(seed * 1000 + i))
            for i in range(concurrency)
        )
    )
    elapsed = time.monotonic() - started
    every = [x for xs in stats.latencies.values() for x in xs]
    kinds: dict[str, Any] = {}
    for k, xs in sorted(stats.latencies.items()):
        kinds[k] = {
            "requests": len(xs),
            "p50_ms": round(_pct(xs, 50) * 1000, 1),
            "p95_ms": round(_pct(xs, 95) * 1000, 1),
        }
    return {
        "duration_s": round(elapsed, 1),
        "concurrency": concurrency,
        "requests": len(every) + len(stats.errors),
        "requests_per_s": round(len(every) / elapsed, 1),
        "p50_ms": round(_pct(every, 50) * 1000, 1),
        "p95_ms": round(_pct(every, 95) * 1000, 1),
        "p99_ms": round(_pct(every, 99) * 1000, 1),
        "errors": len(stats.errors),
        "first_errors": stats.errors[:5],
        "kinds": kinds,
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load (at most 600)")
    p.add_argument("--concurrency", type=int, default=16, help="concurrent clients (at most 256)")
    p.add_argument("--sensors", type=int, default=20)
    p.add_argument("--workers", type=int, default=1, help="server worker processes")
    p.add_argument("--url", help="an already running server (loopback); needs --database-url")
    p.add_argument("--database-url", help="default: a fresh SQLite file in a temporary folder")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    args = p.parse_args(argv)
    duration = min(max(args.duration, 1.0), 600.0)
    concurrency = min(max(args.concurrency, 1), 256)
    from tests.reliability.server import Server  # the same launcher the tests use

    with tempfile.TemporaryDirectory() as tmp:
        database_url = args.database_url or f"sqlite:///{Path(tmp) / 'load.db'}"
        server = None
        if args.url:
            if not args.database_url:
                raise SystemExit("--url needs --database-url (the tenant is seeded there)")
            require_loopback(args.url)
            base_url = args.url
        else:
            server = Server(database_url, Path(tmp) / "server.log", workers=args.workers)
            server.start()
            base_url = server.url
        try:
            target = seed(base_url, database_url, args.sensors)
            report = asyncio.run(
                run_load(base_url, target, duration=duration, concurrency=concurrency)
            )
        finally:
            if server is not None:
                server.stop()
    report["engine"] = database_url.split(":", 1)[0]
    report["server_workers"] = args.workers
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"{report['requests']} requests in {report['duration_s']} s at concurrency "
            f"{concurrency} ({report['engine']}, {args.workers} worker(s)): "
            f"{report['requests_per_s']} req/s, p50 {report['p50_ms']} ms, "
            f"p95 {report['p95_ms']} ms, p99 {report['p99_ms']} ms, {report['errors']} errors"
        )
        for k, v in report["kinds"].items():
            print(
                f"  {k:10} {v['requests']:6} requests  p50 {v['p50_ms']} ms  p95 {v['p95_ms']} ms"
            )
        for e in report["first_errors"]:
            print(f"  error: {e}")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
