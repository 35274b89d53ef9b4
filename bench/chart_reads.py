"""The chart route over a year of 1-minute power (525,600 points, max_points=2000), as the
browser test measures it (tests/browser/test_web_browser.py::_reduced_chart_ms): a real
``besmart serve`` on loopback, median of the calls after a warm-up, JSON included.

    .venv/bin/python -m bench.chart_reads                              # both engines
    .venv/bin/python -m bench.chart_reads --engines sqlite --reps 7 --rounds 5
    .venv/bin/python -m bench.chart_reads --peer-src /tmp/besmart-main/src   # beside a peer

`--peer-src` names the `src` folder of another checkout (with its `migrations` beside it),
e.g. `git archive main src migrations | tar -x -C /tmp/besmart-main`: that code is served
too, on its own database with the same points, and the two servers take turns call by call
(round by round the first one alternates), so load from anything else on the machine weighs
on both alike. Rows: the chart without `as_of` (the blocks' hour summaries where the code
has them) and with an `as_of` after every write (which always decodes); per row the median
time a script sees, the median of the route's own `time_tstorage` and `time_other`, and the
ratio of the medians, ours / peer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.besmart import DEFAULT_PG_URL, Backend, Besmart

YEAR0 = 1_767_225_600_000  # 2026-01-01T00:00Z
YEAR_POINTS = 525_600
MIN = 60_000
P_PLUS = 1001
AFTER_EVERY_WRITE = 4_000_000_000_000  # as_of in 2096: every version, decoded


class _Served(Besmart):
    """besmart serve of the code under `src` (this checkout's when None)."""

    def __init__(self, backend: Backend, src: Path | None, pg_url: str) -> None:
        super().__init__(backend, pg_url=pg_url)
        self.src = src

    def _env(self) -> dict[str, str]:
        env = super()._env()
        if self.src is not None:
            env["PYTHONPATH"] = str(self.src)
        return env

    def load_year(self) -> str:
        """A sensor with the year of 1-minute power the browser test writes; its chart URL."""
        resp = self.http.post("/api/sensors", params={"client_cid": self.cid, "name": "year"})
        resp.raise_for_status()
        mid = int(resp.json()["sensor_mid"])
        t = YEAR0 + np.arange(YEAR_POINTS, dtype=np.int64) * MIN
        day = np.arange(YEAR_POINTS) / 1440 * 2 * np.pi
        v = np.round(5 + 3 * np.sin(day) + np.random.default_rng(1).normal(0, 0.5, len(t)), 3)
        url = f"/api/sensors/{self.cid}.{mid}/signals/{P_PLUS}"
        for i in range(0, YEAR_POINTS, 131_400):
            part = {"time": t[i : i + 131_400].tolist(), "value": v[i : i + 131_400].tolist()}
            self.http.put(f"{url}/data/v2", json=part).raise_for_status()
        return f"{url}/chart"


def _call(s: _Served, url: str, params: dict[str, Any]) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    resp = s.http.get(url, params=params)
    body = resp.json()
    took = (time.perf_counter() - t0) * 1000
    resp.raise_for_status()
    assert body["series"][0]["points"] == YEAR_POINTS, body["series"][0]["points"]
    assert len(body["series"][0]["time"]) <= params["max_points"]
    return took, body["time_tstorage"] * 1000, body["time_other"] * 1000


def run_engine(
    backend: Backend, peer_src: Path | None, pg_url: str, reps: int, rounds: int
) -> list[str]:
    names = ["ours", *(["peer"] if peer_src is not None else [])]
    servers: dict[str, _Served] = {}
    try:
        for name in names:
            servers[name] = _Served(backend, peer_src if name == "peer" else None, pg_url)
            servers[name].__enter__()
        urls = {name: s.load_year() for name, s in servers.items()}
        base = {"since": YEAR0, "till": YEAR0 + 365 * 86_400_000, "max_points": 2000}
        rows: list[str] = []
        reads: tuple[tuple[str, dict[str, int]], ...] = (
            ("chart", {}),
            ("chart as_of (decodes)", {"as_of": AFTER_EVERY_WRITE}),
        )
        for label, extra in reads:
            params = {**base, **extra}
            got: dict[str, list[tuple[float, float, float]]] = {n: [] for n in names}
            for n in names:  # warm-up
                _call(servers[n], urls[n], params)
            for r in range(rounds):
                order = names if r % 2 == 0 else names[::-1]
                for _ in range(reps):
                    for n in order:
                        got[n].append(_call(servers[n], urls[n], params))
            med = {n: [statistics.median(c) for c in zip(*got[n], strict=True)] for n in names}
            for n in names:
                total, storage, other = med[n]
                ratio = ""
                if n == "ours" and "peer" in med:
                    ratio = f" | {total / med['peer'][0]:.2f}"
                rows.append(
                    f"| {backend} | {label} | {n} | {total:.1f} | {storage:.1f} | {other:.1f}"
                    f"{ratio or ' | '} |"
                )
        return rows
    finally:
        for s in servers.values():
            s.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--engines", default="sqlite,postgres")
    ap.add_argument("--peer-src", type=Path, default=None)
    ap.add_argument("--pg-url", default=os.environ.get("BESMART_BENCH_PG_URL", DEFAULT_PG_URL))
    ap.add_argument("--reps", type=int, default=7, help="calls per server per round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    lines = [
        f"chart of {YEAR_POINTS:,} points, max_points=2000: medians of "
        f"{args.reps * args.rounds} calls per row (ms)",
        "| engine | read | code | server ms | time_tstorage | time_other | ours/peer |",
        "|---|---|---|---|---|---|---|",
    ]
    for engine in args.engines.split(","):
        backend: Backend = "postgres" if engine.startswith("postg") else "sqlite"
        lines += run_engine(backend, args.peer_src, args.pg_url, args.reps, args.rounds)
        print("\n".join(lines), flush=True)
        lines = []


if __name__ == "__main__":
    main()
