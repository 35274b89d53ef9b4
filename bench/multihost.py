"""Mixed load through the multi-host deployment's load balancer (deploy/multihost.py), and
its throughput with 1, 2 and 3 API hosts.

    python -m bench.multihost                       # 1, 2, 3 hosts; 3 rounds of 20 s each
    python -m bench.multihost --hosts 1,3 --seconds 10 --repeats 1

Each request is one of: a write of one sensor-day (96 quarter-hour A+ readings, a day no
other request writes, so that every acknowledged write can be found and counted afterwards),
a read of a day written before, or (with `graph_every`) a queued graph run over a written
day. `drive` is also what tests/deploy/test_multihost.py loads the deployment with. Bounded by
a request count and a time; it stops by itself.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z
DAY = 86_400_000
Q = 900_000
A_PLUS = 32  # kWh register (a counter)
EA_PLUS = 1011  # kWh per interval, what the graph writes
POINTS = 96


@dataclass(frozen=True)
class Target:
    """Where the load goes: the balancer's URL, a user with the owner role on a client."""

    url: str
    login: str
    password: str
    client_cid: int


@dataclass
class Load:
    """What happened; writes and runs as (sensor_mid, day number)."""

    writes_acked: list[tuple[int, int]] = field(default_factory=list)
    writes_unacked: list[tuple[int, int]] = field(default_factory=list)
    reads_ok: int = 0
    runs_acked: list[tuple[int, int, int]] = field(default_factory=list)  # run_id, mid, day
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def requests(self) -> int:
        return len(self.writes_acked) + self.reads_ok + len(self.runs_acked)


def login(client: httpx.Client, target: Target) -> dict[str, str]:
    res = client.post("/api/users/token", json={"login": target.login, "password": target.password})
    res.raise_for_status()
    return {"Authorization": f"Bearer {res.json()['token']}"}


def graph_name(mid: int) -> str:
    return f"mh-energy-{mid}"


def prepare(target: Target, sensors: int) -> list[int]:
    """Sensors of the target's client, and a stored graph per sensor (A+ readings to
    energy per interval, written as origin 3); their mids."""
    with httpx.Client(base_url=target.url, timeout=60) as client:
        headers = login(client, target)
        mids = []
        for i in range(sensors):
            res = client.post(
                "/api/sensors",
                params={"client_cid": target.client_cid, "name": f"load {i}"},
                headers=headers,
            )
            res.raise_for_status()
            mid = int(res.json()["sensor_mid"])
            read = {"client_cid": target.client_cid, "sensor_mid": mid, "moid": A_PLUS}
            graph = {
                "nodes": [
                    {
                        "function": "signals",
                        "params": {**read, "delta_t": 15, "energy_per_interval": True},
                    },
                    {
                        "function": "write",
                        "params": {**read, "moid": EA_PLUS, "origin": 3},
                    },
                ],
                "edges": [{"from": 0, "to": 1}],
            }
            res = client.put(
                f"/api/tasks/graphs/{graph_name(mid)}",
                params={"client_cid": target.client_cid},
                json=graph,
                headers=headers,
            )
            res.raise_for_status()
            mids.append(mid)
        return mids


def day_points(day: int) -> dict[str, list[Any]]:
    """A day of a register's readings, decimals with 3 places."""
    times = [T0 + day * DAY + i * Q for i in range(POINTS)]
    base = day * 100.0
    return {
        "time": times,
        "value": [round(base + i * 0.25 + 0.001 * (i % 7), 3) for i in range(POINTS)],
    }


def drive(
    target: Target,
    mids: list[int],
    *,
    threads: int,
    max_requests: int,
    max_seconds: float,
    graph_every: int = 0,
    first_day: int = 0,
    stop: threading.Event | None = None,
    load: Load | None = None,
) -> Load:
    """Mixed load from `threads` clients until `max_requests` were sent, `max_seconds` went
    by or `stop` is set: of every 10 requests 3 are reads, 1 is a graph run when
    `graph_every` (every `graph_every`-th request instead), the rest writes. Pass `load` to
    watch it while it runs."""
    load = load if load is not None else Load()
    out = load
    counter = itertools.count()
    stop = stop or threading.Event()
    deadline = time.monotonic() + max_seconds
    written: list[tuple[int, int]] = []  # acknowledged, for reads and runs to use

    def one(client: httpx.Client, headers: dict[str, str], k: int) -> None:
        mid = mids[k % len(mids)]
        day = first_day + k
        with load.lock:
            have = list(written[-50:])
        if graph_every and k % graph_every == graph_every - 1 and have:
            run_mid, run_day = have[k % len(have)]
            res = client.post(
                "/api/tasks/graphs/run/name",
                params={
                    "graph_name": graph_name(run_mid),
                    "since": T0 + run_day * DAY,
                    "till": T0 + (run_day + 1) * DAY,
                    "task_async": True,
                },
                json={},
                headers=headers,
            )
            if res.status_code == 202:
                with load.lock:
                    load.runs_acked.append((int(res.json()["run_id"]), run_mid, run_day))
            else:
                load.errors[f"run {res.status_code}"] += 1
            return
        if k % 10 in (3, 6) and have:
            read_mid, read_day = have[k % len(have)]
            res = client.get(
                f"/api/sensors/{target.client_cid}.{read_mid}/signals/{A_PLUS}/data",
                params={"since": T0 + read_day * DAY, "till": T0 + (read_day + 1) * DAY},
                headers=headers,
            )
            if res.status_code == 200 and len(res.json()["data"]["time"]) == POINTS:
                with load.lock:
                    load.reads_ok += 1
            else:
                load.errors[f"read {res.status_code}"] += 1
            return
        try:
            res = client.put(
                f"/api/sensors/{target.client_cid}.{mid}/signals/{A_PLUS}/data/v2",
                json=day_points(day),
                headers=headers,
            )
        except httpx.HTTPError:
            with load.lock:
                load.writes_unacked.append((mid, day))
            raise
        with load.lock:
            if res.status_code == 200:
                load.writes_acked.append((mid, day))
                written.append((mid, day))
            else:
                load.writes_unacked.append((mid, day))
                load.errors[f"write {res.status_code}"] += 1

    def worker() -> None:
        with httpx.Client(base_url=target.url, timeout=60) as client:
            headers = login(client, target)
            while not stop.is_set() and time.monotonic() < deadline:
                k = next(counter)
                if k >= max_requests:
                    return
                try:
                    one(client, headers, k)
                except httpx.HTTPError as exc:  # a host died under the request
                    load.errors[type(exc).__name__] += 1

    started = time.monotonic()
    pool = [threading.Thread(target=worker, name=f"load-{i}") for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.seconds = time.monotonic() - started
    return out


def measure(
    hosts: int,
    *,
    seconds: float,
    repeats: int,
    threads: int,
    net: int,
    port: int,
    first_day: int = 0,
) -> list[dict[str, float]]:
    """One deployment with `hosts` API hosts (and one graph worker); `repeats` timed runs."""
    from deploy import multihost

    state = multihost.up(api=hosts, workers=1, net=net, port=port)
    try:
        target = Target(state.base_url, state.login, state.password, state.client_cid)
        mids = prepare(target, sensors=20)
        out = []
        for r in range(repeats):
            load = drive(
                target,
                mids,
                threads=threads,
                max_requests=10**7,
                max_seconds=seconds,
                first_day=first_day + r * 10**5,
            )
            out.append(
                {
                    "requests_per_s": load.requests / load.seconds,
                    "points_per_s": len(load.writes_acked) * POINTS / load.seconds,
                    "errors": float(sum(load.errors.values())),
                }
            )
        return out
    finally:
        multihost.down(net=net)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", default="1,2,3", help="API host counts (default 1,2,3)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8, help="client threads")
    parser.add_argument("--net", type=int, default=79)
    parser.add_argument("--port", type=int, default=18179)
    args = parser.parse_args()
    counts = [int(x) for x in args.hosts.split(",")]
    runs: dict[int, list[dict[str, float]]] = {n: [] for n in counts}
    loads = [os.getloadavg()[0]]
    # rounds outermost: each row's runs spread over the whole measurement, so a change in
    # the machine's other load weighs on every row alike
    for r in range(args.repeats):
        for n in counts:
            found = measure(
                n,
                seconds=args.seconds,
                repeats=1,
                threads=args.threads,
                net=args.net,
                port=args.port,
                first_day=r * 10**6,
            )
            runs[n] += found
            loads.append(os.getloadavg()[0])
            print(f"round {r + 1}, {n} host(s): {found}", flush=True)
    rows = [(n, runs[n]) for n in counts]
    print(f"\nload average (1 min) during the runs: {min(loads):.1f} to {max(loads):.1f}")
    base = statistics.median(x["requests_per_s"] for x in rows[0][1])
    print(f"\n{args.threads} client threads, {args.seconds:.0f} s x {args.repeats}, medians:\n")
    print("| API hosts | requests/s | points written/s | vs first row | errors |")
    print("|---|---|---|---|---|")
    for n, row in rows:
        rps = statistics.median(x["requests_per_s"] for x in row)
        pps = statistics.median(x["points_per_s"] for x in row)
        errs = sum(x["errors"] for x in row)
        print(f"| {n} | {rps:,.0f} | {pps:,.0f} | {rps / base:.2f}x | {errs:.0f} |")


if __name__ == "__main__":
    main()
