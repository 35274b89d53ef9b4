"""The 15-minute push: every meter sends its newest reading, one point per series per request.

Day blocks make a write rewrite the blocks it touches, so the cheapest write for rows — one
point into each of thousands of series — is the dearest for blocks: each push decodes,
extends and re-encodes one block per series, growing from 1 to 96 points over the day. This
measures that case over real HTTP on both engines (a day of pushes, `besmart serve` as in
`bench.run`, the same multi-series PUT), so the price is known rather than assumed.

    .venv/bin/python -m bench.push                      # 400 meters x 5 signals = 2,000 series
    .venv/bin/python -m bench.push --sensors 20 --only sqlite
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import orjson

from bench.besmart import Backend, Besmart
from bench.workload import METER_SIGNALS, MS_15MIN, START_MS

PUSHES = 96  # one day


def push_bodies(cid: int, mids: Sequence[int], pushes: int = PUSHES) -> list[bytes]:
    """One multi-series PUT per quarter hour: one reading of every signal of every meter."""
    bodies = []
    for k in range(pushes):
        t = START_MS + k * MS_15MIN
        items = [
            {
                "client_cid": cid,
                "sensor_mid": mid,
                "signal_type_moid": moid,
                "data": {"time": [t], "value": [float(k + i)]},
            }
            for i, mid in enumerate(mids)
            for moid in METER_SIGNALS
        ]
        bodies.append(orjson.dumps(items))
    return bodies


def run(backend: Backend, sensors: int) -> str:
    """Time a day of pushes against a fresh server of one backend; one line of results."""
    with Besmart(backend) as server:
        mids = []
        for i in range(sensors):
            resp = server.http.post(
                "/api/sensors", params={"client_cid": server.cid, "name": f"m{i}"}
            )
            resp.raise_for_status()
            mids.append(int(resp.json()["sensor_mid"]))
        bodies = push_bodies(server.cid, mids)
        seconds = []
        for body in bodies:
            t0 = time.perf_counter()
            server.write(body)
            seconds.append(time.perf_counter() - t0)
    series = sensors * len(METER_SIGNALS)
    p50 = statistics.median(seconds)
    p95 = statistics.quantiles(seconds, n=20)[-1]
    last = statistics.median(seconds[-10:])
    return (
        f"besmart-{backend}: {series:,} series x 1 point per push, {len(bodies)} pushes: "
        f"p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, last 10 (blocks of ~90 points) "
        f"p50 {last * 1000:.1f} ms; {series / p50:,.0f} pts/s"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.push", description=__doc__)
    parser.add_argument("--sensors", type=int, default=400, help="meters (5 series each)")
    parser.add_argument("--only", default="sqlite,postgres", help="sqlite,postgres")
    opts = parser.parse_args(argv)
    for name in opts.only.split(","):
        backend: Backend = "sqlite" if name.strip() == "sqlite" else "postgres"
        print(run(backend, opts.sensors), flush=True)


if __name__ == "__main__":
    main()
