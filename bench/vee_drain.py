"""What validation after writes costs per request of a bulk load, in-process: the benchmark's
multi-series PUTs (100 series, 10,000 points each, as row 1 of bench.run sends them) through
one app (which queues windows and validates none), and the validation queue they fill
drained by `vee.worker.process` every `--every` requests (as a validation worker would
between its rests), timed apart from the writes. CPU time of the drains per request, and per request
of the writes, median of `--runs` runs.

    .venv/bin/python -m bench.vee_drain [--requests 200] [--every 25] [--runs 3] [PG_URL]

Run it with another checkout's src first on PYTHONPATH to compare two versions of the code
(the script only calls `process(db, store, max_points)`).
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.besmart import PUT_MULTI
from bench.inproc import bench_app
from besmart_server.server.vee.worker import process


def one_run(url: str | None, requests: int, every: int) -> tuple[float, float]:
    """(write CPU s, drain CPU s) per request of one run on a fresh database."""
    with bench_app(url, requests, "veedrain") as ip:
        state = ip.app.state
        write_s = drain_s = 0.0
        for i, body in enumerate(ip.bodies, 1):
            t0 = time.process_time()
            r = ip.client.put(PUT_MULTI, content=body, headers=ip.headers)
            write_s += time.process_time() - t0
            assert r.status_code in (200, 204), r.text[:300]
            if i % every == 0 or i == len(ip.bodies):
                t0 = time.process_time()
                process(state.db, state.store, ip.settings.max_points_per_read)
                drain_s += time.process_time() - t0
        return write_s / requests, drain_s / requests


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pg_url", nargs="?", default=None, help="PostgreSQL server (else SQLite)")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--every", type=int, default=25, help="requests between drains")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    got = [one_run(a.pg_url, a.requests, a.every) for _ in range(a.runs)]
    write = statistics.median(w for w, _ in got)
    drain = statistics.median(d for _, d in got)
    print(
        f"{'postgres' if a.pg_url else 'sqlite'}: {a.requests} requests, a drain every "
        f"{a.every}: CPU per request: writes {write * 1000:.1f} ms, validation "
        f"{drain * 1000:.1f} ms (validation / writes {drain / write:.2f}; median of {a.runs})"
    )


if __name__ == "__main__":
    main()
