"""The benchmark's multi-series PUTs against one `besmart serve`, timed, with the server's
CPU per request (/proc/PID/stat, every thread) and optionally a py-spy profile of it.

    .venv/bin/python -m bench.served_ingest sqlite|postgres [N] [py-spy raw output file] [--push]

20 requests warm the server, then N (default 300, at most 388) are timed one at a time, as
row 1 of bench.run sends them. With --push, the meters' year is written first (not timed)
and the N requests timed are row 1d's live pushes (one point of each of the 100 series a
request; N at most 268). The CPU of the validation worker `besmart serve` starts (a process of
its own) is counted apart; BENCH_NO_SETTLE=1 skips the waits for the validation queue.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.besmart import Backend, Besmart
from bench.workload import FULL, generate

PY_SPY = Path(sys.executable).with_name("py-spy")


def main(argv: list[str]) -> None:
    push = "--push" in argv
    argv = [a for a in argv if a != "--push"]
    backend: Backend = "postgres" if argv[0] == "postgres" else "sqlite"
    n = int(argv[1]) if len(argv) > 1 else 300
    spy = argv[2] if len(argv) > 2 else ""
    settle = not os.environ.get("BENCH_NO_SETTLE")
    wl = generate(FULL)
    with Besmart(backend) as b:
        for name in wl.sensors:
            r = b.http.post("/api/sensors", params={"client_cid": b.cid, "name": name})
            b.mids[name] = int(r.json()["sensor_mid"])
        if push:
            for body in b.prepare(wl.ingest_batches("time")):
                b.write(body)
            bodies = b.prepare(wl.push_batches()[: n + 20])
        else:
            bodies = b.prepare(wl.ingest_batches("time")[: n + 20])
        n = len(bodies) - 20  # row 1 has 408 requests, row 1d 288
        for body in bodies[:20]:
            b.write(body)
        if settle:
            b.settle()
        assert b._proc is not None
        kids = [
            int(k)
            for k in subprocess.run(
                ["pgrep", "-P", str(b._proc.pid)], capture_output=True, text=True, check=False
            ).stdout.split()
        ]
        vee = [k for k in kids if b"vee" in Path(f"/proc/{k}/cmdline").read_bytes().split(b"\0")]
        served = [k for k in kids if k not in vee]  # uvicorn's worker, when it starts one
        pid = served[0] if served else b._proc.pid
        recorder = None
        if spy:
            args = ["record", "-r", "200", "-p", str(pid), "-o", spy, "-f", "raw", "--threads"]
            recorder = subprocess.Popen(
                [str(PY_SPY), *args],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)

        def cpu(p: int) -> float:
            return cpu_of(f"/proc/{p}/stat")

        def vee_cpu() -> float:
            return sum(cpu(p) for p in vee)

        def loop_cpu() -> float:  # the event loop's thread: HTTP, routing, the JSON answer
            return cpu_of(f"/proc/{pid}/task/{pid}/stat")

        c0, v0, l0, seconds = cpu(pid), vee_cpu(), loop_cpu(), []
        for body in bodies[20:]:
            t0 = time.perf_counter()
            b.write(body)
            seconds.append(time.perf_counter() - t0)
        c1, l1 = cpu(pid), loop_cpu()
        waited = b.settle() if settle else 0.0
        c2, v2 = cpu(pid), vee_cpu()
        if recorder is not None:
            recorder.send_signal(2)
            recorder.wait()
    print(
        f"{backend}: {n} PUTs median {statistics.median(seconds) * 1000:.2f} ms, "
        f"mean {statistics.mean(seconds) * 1000:.2f} ms, p99 "
        f"{statistics.quantiles(seconds, n=100)[98] * 1000:.1f} ms, slowest "
        f"{max(seconds) * 1000:.1f} ms; server CPU "
        f"{1000 * (c1 - c0) / n:.1f} ms a request during the writes "
        f"(the event loop's thread {1000 * (l1 - l0) / n:.1f}), "
        f"{1000 * (c2 - c0) / n:.1f} until the queue was empty ({waited:.1f} s later); "
        f"validation worker CPU {1000 * (v2 - v0) / n:.1f} ms a request"
    )


def cpu_of(stat: str) -> float:
    """User and system CPU seconds of a process or thread (its /proc stat file)."""
    fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main(sys.argv[1:])
