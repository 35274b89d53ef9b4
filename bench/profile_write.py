"""Where a 10,000-point multi-series write spends its time, in-process (no HTTP).

Row 1's requests of bench.run (20 meters x 5 signals x 100 points, each day block written
twice as its day fills, real values) through the multi-series PUT's own function
(`signals.router._write_many`: the body parsed, the token checked, the write, the validation
queue's rows, the commit) on a fresh database of either engine: the median wall and CPU time
per request, the time of each step (timed around the functions the route calls), then
cProfile's top functions by their own time.

    .venv/bin/python -m bench.profile_write                      # SQLite in a temporary file
    .venv/bin/python -m bench.profile_write postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python -m bench.profile_write --push [PG_URL]      # row 1d's pushes instead
    .venv/bin/python -m bench.profile_write [PG_URL] cumtime     # the profile by cumulative time

With --push, row 1's whole year is written first (not timed), then row 1d's pushes (one
point of each of the 100 series a request) are timed and profiled the same way.
"""

from __future__ import annotations

import cProfile
import dataclasses
import pstats
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

from bench.inproc import YEAR, InProcess, bench_app
from besmart_server.server.signals import blocks, router, service, store

WARM, TIMED, PROFILED = 20, 150, 40


def main(argv: list[str]) -> None:
    push = "--push" in argv
    argv = [a for a in argv if a not in ("--push", "cumtime")]
    requests = YEAR if push else WARM + TIMED + PROFILED
    with bench_app(argv[0] if argv else None, requests, "profile") as ip:
        _profile(ip, push)


def _profile(ip: InProcess, push: bool) -> None:
    state = ip.app.state
    spent: dict[str, float] = defaultdict(float)

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - t0

        return wrapper

    # Each module attribute the route's code looks up when it runs, replaced by a timed one.
    for module, name, label in (
        (router, "_parse_many", "parse"),
        (router, "token_user", "token check"),
        (service, "write", "write"),
        (blocks, "encode_batch", "  encode blocks"),
        (blocks, "decode_batch", "  decode stored blocks"),
        (store, "pack_runs", "  pack pending rows"),
    ):
        setattr(module, name, timed(label, getattr(module, name)))
    d = state.store._d  # the engine's bulk read and write of blocks
    state.store._d = dataclasses.replace(
        d,
        stamp_and_read=timed("  lock, stamp, read stored", d.stamp_and_read),
        put=timed("  put blocks", d.put),
        stamp_and_append=timed("  lock, stamp, append pending", d.stamp_and_append),
    )
    for observer in state.write_observers:
        observer.written = timed("validation queue", observer.written)
    transaction = state.db.transaction

    @contextmanager
    def commit_timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
        with transaction(*args, **kwargs) as conn:
            yield conn
            t0 = time.perf_counter()  # the block's body is done: what is left is the commit
        spent["commit"] += time.perf_counter() - t0

    state.db.transaction = commit_timed
    request: Any = SimpleNamespace(app=ip.app)  # all _write_many reads of its request
    bodies, what = ip.bodies, "10,000-point request"
    if push:
        for raw in ip.bodies:  # the year, as row 1 writes it (row 1d follows it)
            router._write_many(request, ip.token, raw, None)
        bodies, what = ip.pushes, "100-point push"
    walls, cpus = [], []
    for k, raw in enumerate(bodies[: WARM + TIMED]):
        if k == WARM:
            spent.clear()
        t0, c0 = time.perf_counter(), time.thread_time()
        router._write_many(request, ip.token, raw, None)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.thread_time() - c0)
    wall, cpu = statistics.median(walls[WARM:]), statistics.median(cpus[WARM:])
    print(
        f"{state.db.dialect}: median {wall * 1000:.1f} ms per {what} "
        f"({(100 if push else 10_000) / wall:,.0f} pts/s), {cpu * 1000:.1f} ms of this "
        "thread's CPU"
    )
    for name, total in spent.items():
        print(f"  {name:26} {total / TIMED * 1000:6.2f} ms per request")
    profile = cProfile.Profile()  # more requests: the profiler's cost not in the times above
    for raw in bodies[WARM + TIMED : WARM + TIMED + PROFILED]:
        profile.runcall(router._write_many, request, ip.token, raw, None)
    order = "cumtime" if "cumtime" in sys.argv else "tottime"  # `cumtime` as the last argument
    pstats.Stats(profile).sort_stats(order).print_stats(45)


if __name__ == "__main__":
    main(sys.argv[1:])
