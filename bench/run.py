"""The benchmark's one command.

    python -m bench.run [--quick] [--workers N] [--only sqlite,postgres,influxdb,victoriametrics]
                        [--ingest-only]

Each engine in turn is started, fed the same points, read the same way, measured on disk and
stopped; last, each engine is started afresh for the concurrent writers' row (besmart with
`CONCURRENT_WORKERS` server workers). Then ONE table is printed (and written as Markdown and
JSON under bench/results/). `--ingest-only` measures the ingest rows alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol

import numpy as np
import orjson

from bench.besmart import DEFAULT_PG_URL, Backend, Besmart, check_loopback_url
from bench.peers import InfluxDB, Read, Skip, VictoriaMetrics, wait_until
from bench.workload import CALENDAR_TZ, FULL, QUICK, Batch, Layout, Query, Spec, Workload, generate

ENGINES: tuple[str, ...] = ("sqlite", "postgres", "influxdb", "victoriametrics")
COLUMN = {
    "sqlite": "besmart-sqlite",
    "postgres": "besmart-postgres",
    "influxdb": "influxdb",
    "victoriametrics": "victoriametrics",
}
OURS = ("sqlite", "postgres")
PEERS = ("influxdb", "victoriametrics")
SHORT = {"sqlite": "sqlite", "postgres": "pg", "influxdb": "influx", "victoriametrics": "vm"}
READS = ("raw", "last", "daily", "multi", "weather")
RESULTS_DIR = Path(__file__).resolve().parent / "results"
# The concurrent writers' row: client threads, each writing its own sensors' series, into a
# server with this many worker processes (the peers have no such setting).
CONCURRENT_THREADS = 4
CONCURRENT_WORKERS = 2


class Engine(Protocol):
    """What the runner needs of besmart and of each peer."""

    name: str
    durability: str

    def __enter__(self) -> Engine: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    def describe(self) -> str: ...
    def setup(self, workload: Workload) -> None: ...
    def prepare(self, batches: Sequence[Batch]) -> list[bytes]: ...
    def write(self, body: bytes) -> None: ...
    def flush(self) -> None: ...
    def settle(self) -> float | None: ...
    def read(self, kind: str, q: Query) -> Read: ...
    def storage_bytes(self) -> int: ...
    def compacted_bytes(self) -> int | None: ...
    def stored_points(self) -> int | None: ...


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    unit: str  # "pts/s", "ms", "x" (a ratio), "B/pt"
    higher_is_better: bool


@dataclass
class Result:
    engine: str
    describe: str = ""
    durability: str = ""
    values: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # why a figure is missing
    skipped: str = ""  # why the whole engine cannot be measured here (not a failure)
    error: str = ""  # why the whole engine failed


@dataclass(frozen=True)
class Options:
    spec: Spec
    quick: bool
    layout: Layout
    workers: int
    pg_url: str
    warmup: int
    reps: int
    budget_s: float  # per read: stop repeating once this is spent (after 5 samples)
    ingest_only: bool = False  # only the ingest rows: no reads, no size on disk


def rows(workload: Workload) -> list[Row]:
    """The table's rows, labelled with this run's sizes."""
    spec = workload.spec
    raw = workload.raw_query().expected_points
    multi = workload.multi_query()
    minute = len(workload.minute)
    weather = workload.weather_query().expected_points
    decade = 0 if workload.decade is None else len(workload.decade)
    return [
        Row("ingest", "1 ingest, multi-series PUT (first versions)", "pts/s", True),
        Row("reingest", f"1b ingest, versions 2-{spec.versions} of the same points", "pts/s", True),
        Row(
            "push",
            f"1d ingest, live pushes: 1 point x {len(workload.pushed)} series a request, "
            f"{spec.push_steps} requests",
            "pts/s",
            True,
        ),
        Row(
            "concurrent",
            f"1c ingest, {CONCURRENT_THREADS} writer threads, disjoint series "
            f"({CONCURRENT_WORKERS} server workers)",
            "pts/s",
            True,
        ),
        Row("raw_p50", f"2 raw read, {raw:,} pts of 15-min data, p50", "ms", False),
        Row("raw_p95", "2 raw read, p95", "ms", False),
        Row("last_p50", f"3 get_last over {spec.versions} versions/point, p50", "ms", False),
        Row("last_p95", "3 get_last, p95", "ms", False),
        Row("last_ratio", "3 get_last p50 / raw read p50", "x", False),
        Row("daily_p50", f"4 delta_t=1440 over {minute:,} 1-min pts, p50", "ms", False),
        Row("daily_p95", "4 delta_t=1440, p95", "ms", False),
        Row("daily_tz_p50", f"4b the same in local days, tz={CALENDAR_TZ}, p50", "ms", False),
        Row("daily_tz_ratio", "4c local days p50 / UTC days p50, read in turns", "x", False),
        Row(
            "monthly_p50",
            f"4d local months, tz={CALENDAR_TZ}, over {decade:,} 15-min pts, p50",
            "ms",
            False,
        ),
        Row("monthly_p95", "4d local months, p95", "ms", False),
        Row(
            "multi_p50",
            f"5 multi-series POST, {len(multi.series)} series x 1 day, p50",
            "ms",
            False,
        ),
        Row("multi_p95", "5 multi-series POST, p95", "ms", False),
        Row("weather_p50", f"6 weather T_AIR at a point, {weather:,} h (IDW), p50", "ms", False),
        Row("weather_p95", "6 weather point query, p95", "ms", False),
        Row("bytes_per_point", "7 bytes on disk per stored point", "B/pt", False),
        Row("bytes_compacted", "7b the same after compaction (peers: as 7)", "B/pt", False),
    ]


# -- targets of issue 5 (judged on the full sizes only) -----------------------------------

# Issue 18's bytes per point, per engine (issue 5 asked <= 16 on SQLite).
_SIZE_LIMITS: dict[str, float] = {"sqlite": 2.5, "postgres": 4.0}

TARGETS: dict[
    str, tuple[str, Callable[[dict[str, Result], str], float | None], float | dict[str, float], str]
] = {
    # key: (text, the figure for one of our engines, limit (or one per engine), "ge" or "le")
    "ingest": (">= 1.0x influxdb", lambda r, e: _ratio(r, e, "influxdb", "ingest"), 1.0, "ge"),
    "last_ratio": ("<= 1.3", lambda r, e: r[e].values.get("last_ratio"), 1.3, "le"),
    "raw_p95": ("< 50 ms", lambda r, e: r[e].values.get("raw_p95"), 50.0, "lt"),
    "daily_p95": ("< 100 ms", lambda r, e: r[e].values.get("daily_p95"), 100.0, "lt"),
    # issue 17: calendar time from block summaries
    "daily_p50": (
        "<= vm (17)",
        lambda r, e: _ratio(r, e, "victoriametrics", "daily_p50"),
        1.0,
        "le",
    ),
    "daily_tz_ratio": ("<= 1.2 (17)", lambda r, e: r[e].values.get("daily_tz_ratio"), 1.2, "le"),
    "monthly_p95": ("< 20 ms (17)", lambda r, e: r[e].values.get("monthly_p95"), 20.0, "lt"),
    "bytes_per_point": (
        "<= 2.5 sqlite, <= 4 pg (18)",
        lambda r, e: r[e].values.get("bytes_per_point"),
        _SIZE_LIMITS,
        "le",
    ),
    "bytes_compacted": (
        "<= 2.5 sqlite, <= 4 pg (18)",
        lambda r, e: r[e].values.get("bytes_compacted"),
        _SIZE_LIMITS,
        "le",
    ),
}


def _ratio(results: dict[str, Result], ours: str, peer: str, key: str) -> float | None:
    a = results.get(ours)
    b = results.get(peer)
    if a is None or b is None:
        return None
    x, y = a.values.get(key), b.values.get(key)
    if x is None or y is None or y == 0:
        return None
    return x / y


def target_cell(key: str, results: dict[str, Result], judge: bool) -> str:
    if key not in TARGETS:
        return ""
    text, figure, limit, how = TARGETS[key]
    if not judge:
        return text
    marks = []
    for engine in OURS:
        if engine not in results:
            continue
        value = figure(results, engine)
        bound = limit.get(engine) if isinstance(limit, dict) else limit
        if value is None or bound is None:
            continue
        ok = value >= bound if how == "ge" else value <= bound if how == "le" else value < bound
        marks.append(f"{SHORT[engine]} {'✓' if ok else '✗'}")
    return f"{text}: {', '.join(marks)}" if marks else text


# -- formatting -----------------------------------------------------------------------------


def fmt_value(unit: str, value: float | None) -> str:
    if value is None:
        return "-"
    if unit == "pts/s":
        return f"{value / 1e6:.2f} M" if value >= 1e6 else f"{value / 1e3:.0f} k"
    if unit == "ms":
        return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"
    if unit == "x":
        return f"{value:.2f}"
    return f"{value:.1f}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table(workload: Workload, results: dict[str, Result], *, judge: bool) -> list[list[str]]:
    """Header + one line per figure: values per engine, our ratio to each peer, target."""
    engines = [e for e in ENGINES if e in results]
    pairs = [(o, p) for o in OURS for p in PEERS if o in results and p in results]
    header = ["figure", "unit", *(COLUMN[e] for e in engines)]
    header += [f"{SHORT[o]}/{SHORT[p]}" for o, p in pairs] + ["target (issue 5; 17; 18)"]
    lines = [header]
    for row in rows(workload):
        line = [row.label, row.unit]
        line += [fmt_value(row.unit, results[e].values.get(row.key)) for e in engines]
        line += [fmt_ratio(_ratio(results, o, p, row.key)) for o, p in pairs]
        line.append(target_cell(row.key, results, judge))
        lines.append(line)
    return lines


def markdown(lines: list[list[str]]) -> str:
    """An aligned Markdown table (readable as plain text too)."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    numeric = [i > 1 and i < len(widths) - 1 for i in range(len(widths))]

    def cells(line: list[str]) -> str:
        parts = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(line, widths, numeric, strict=True)
        ]
        return "| " + " | ".join(parts) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if num else ("-" * (w + 2))
            for w, num in zip(widths, numeric, strict=True)
        )
        + "|"
    )
    return "\n".join([cells(lines[0]), rule, *(cells(line) for line in lines[1:])])


def notes(results: dict[str, Result]) -> list[str]:
    out = ["Ratios are besmart ÷ peer: above 1 is better for pts/s, below 1 for ms and B/pt."]
    for engine, res in results.items():
        head = f"{COLUMN[engine]}: {res.describe}" if res.describe else COLUMN[engine]
        if res.skipped or res.error:
            out.append(
                f"{head}: {'skipped' if res.skipped else 'FAILED'}: {res.skipped or res.error}"
            )
            continue
        out.append(f"{head}; durability: {res.durability}")
        out += [f"  {kind}: {why}" for kind, why in res.notes.items()]
    return out


# -- measuring ----------------------------------------------------------------------------


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _timed_writes(engine: Engine, bodies: list[bytes]) -> float:
    t0 = time.perf_counter()
    for body in bodies:
        engine.write(body)
    engine.flush()
    return time.perf_counter() - t0


def interleaved_samples(
    sends: dict[str, Callable[[], bytes]], *, warmup: int, reps: int, budget_s: float
) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Seconds per call of each engine's read, the engines taking turns (the starting one
    rotating), so that whatever else loads the machine weighs on every engine alike.

    At most ``reps`` rounds, and no more once about ``budget_s`` per engine is spent (after
    5 rounds). An engine whose read fails leaves the rounds; its error is returned.
    """
    failed: dict[str, str] = {}

    def call(name: str) -> float | None:
        t0 = time.perf_counter()
        try:
            sends[name]()
        except Exception as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
            return None
        return time.perf_counter() - t0

    for name in list(sends):
        for _ in range(warmup):
            if name not in failed and call(name) is None:
                break
    out: dict[str, list[float]] = {name: [] for name in sends}
    names = list(sends)
    deadline = time.monotonic() + budget_s * max(1, len(names))
    for i in range(reps):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            if name in failed:
                continue
            took = call(name)
            if took is not None:
                out[name].append(took)
        if i >= 4 and time.monotonic() > deadline:
            break
    return {n: v for n, v in out.items() if n not in failed}, failed


def percentiles_ms(values: Sequence[float]) -> tuple[float, float]:
    p50, p95 = np.percentile(np.asarray(values, dtype=np.float64) * 1000.0, [50, 95])
    return float(p50), float(p95)


def _ingest(engine: Engine, res: Result, key: str, batches: list[Batch]) -> None:
    points = sum(b.points for b in batches)
    bodies = engine.prepare(batches)  # encoding is the client's work: not timed
    seconds = _timed_writes(engine, bodies)
    res.values[key] = points / seconds
    _say(f"  {key}: {points:,} points in {seconds:.2f} s = {points / seconds:,.0f} pts/s")


def concurrent_ingest(name: str, workload: Workload, opts: Options, res: Result) -> None:
    """Phase 4, one engine at a time: a fresh instance (besmart with CONCURRENT_WORKERS
    workers), its meters' first versions written by CONCURRENT_THREADS clients at once."""
    engine = make_engine(name, opts, workers=CONCURRENT_WORKERS)
    with engine:
        engine.setup(dataclasses.replace(workload, weather=()))
        batches = workload.writer_streams(CONCURRENT_THREADS)
        points = sum(b.points for stream in batches for b in stream)
        streams = [engine.prepare(stream) for stream in batches]

        def send(bodies: list[bytes]) -> None:
            for body in bodies:
                engine.write(body)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENT_THREADS) as pool:
            list(pool.map(send, streams))  # list(): a writer's exception is raised here
        engine.flush()
        seconds = time.perf_counter() - t0
    res.values["concurrent"] = points / seconds
    _say(
        f"  concurrent: {points:,} points by {CONCURRENT_THREADS} writers in {seconds:.2f} s "
        f"= {points / seconds:,.0f} pts/s"
    )


def _queries(workload: Workload) -> dict[str, Query]:
    return {
        "raw": workload.raw_query(),
        "last": workload.last_query(),
        "daily": workload.daily_query(),
        "daily_tz": workload.daily_tz_query(),
        "monthly": workload.monthly_query(),
        "multi": workload.multi_query(),
        "weather": workload.weather_query(),
    }


@dataclass
class Live:
    """An engine started, written and still running (its stack stops it)."""

    engine: Engine
    res: Result
    stack: ExitStack


def start_and_ingest(engine: Engine, workload: Workload, opts: Options) -> Live:
    """Phase 1, one engine at a time (the machine to itself): start, write, check."""
    res = Result(engine.name)
    with ExitStack() as stack:
        stack.enter_context(engine)
        res.describe, res.durability = engine.describe(), engine.durability
        _say(f"{engine.name} ({res.describe}) on loopback")
        engine.setup(workload)
        _ingest(engine, res, "ingest", workload.ingest_batches(opts.layout))
        _ingest(engine, res, "reingest", workload.version_batches())
        _ingest(engine, res, "push", workload.push_batches())  # a year of the series stored
        for body in engine.prepare(workload.decade_batches()):  # not in the ingest rates
            engine.write(body)
        engine.flush()
        raw = workload.raw_query()
        first = engine.read("raw", raw)
        wait_until(
            f"{engine.name}: written points visible",
            lambda: first.count(first.send()) == raw.expected_points,
            timeout_s=60,
            interval_s=0.5,
        )
        # Work an engine does after acknowledging writes (besmart: validation after writes)
        # ends before the next engine ingests, or it would slow that one down.
        waited = engine.settle()
        if waited is not None:
            res.notes["after ingest"] = f"background work ended {waited:.1f} s after the last write"
            _say(f"  {res.notes['after ingest']}")
        return Live(engine, res, stack.pop_all())
    raise AssertionError("unreachable")  # pragma: no cover  (mypy: the with may swallow)


_UTC = "@utc"  # the key of a UTC-days read measured beside the local days (row 4c)


def read_all(lives: dict[str, Live], workload: Workload, opts: Options) -> None:
    """Phase 2: every read, the running engines taking turns; failures close an engine."""
    daily: dict[str, Read] = {}
    for kind, q in _queries(workload).items():
        reads: dict[str, Read] = {}
        for name, live in list(lives.items()):
            try:
                read = live.engine.read(kind, q)
                got = read.count(read.send())
            except Skip as why:
                live.res.notes[kind] = str(why)
                continue
            except Exception as exc:
                _fail(lives, name, f"{kind} read: {type(exc).__name__}: {exc}")
                continue
            if got != q.expected_points:
                _fail(lives, name, f"{kind} read: {got} points, expected {q.expected_points}")
                continue
            reads[name] = read
        if not reads:
            continue
        if kind == "daily":
            daily = dict(reads)
        sends = {name: r.send for name, r in reads.items()}
        if kind == "daily_tz":
            # Row 4c: the UTC days read again in the same rounds as the local days, so that
            # the ratio is not the machine's drift between two phases.
            sends |= {f"{name}{_UTC}": daily[name].send for name in reads if name in daily}
        took, failed = interleaved_samples(
            sends, warmup=opts.warmup, reps=opts.reps, budget_s=opts.budget_s
        )
        for name, reason in failed.items():
            if name.removesuffix(_UTC) in lives:
                _fail(lives, name.removesuffix(_UTC), f"{kind} read: {reason}")
        for name, values in took.items():
            if name.endswith(_UTC) or name not in lives:
                continue
            if f"{name}{_UTC}" in took:
                utc = percentiles_ms(took[f"{name}{_UTC}"])[0]
                lives[name].res.values["daily_tz_ratio"] = percentiles_ms(values)[0] / utc
            p50, p95 = percentiles_ms(values)
            res = lives[name].res
            res.values[f"{kind}_p50"], res.values[f"{kind}_p95"] = p50, p95
            _say(
                f"  {kind:7} {COLUMN[name]:17} {q.expected_points:>9,} points  p50 {p50:8.2f} ms"
                f"  p95 {p95:8.2f} ms  ({len(values)} runs)"
            )
    for live in lives.values():
        v = live.res.values
        if "last_p50" in v and v.get("raw_p50"):
            v["last_ratio"] = v["last_p50"] / v["raw_p50"]


def measure_storage(name: str, live: Live, workload: Workload) -> None:
    """Phase 3, per engine: size on disk once settled, then stop it."""
    with live.stack:
        size = live.engine.storage_bytes()
        stored = live.engine.stored_points() or workload.stored_points
        if stored < workload.stored_points:
            raise RuntimeError(f"{stored:,} points stored of {workload.stored_points:,} written")
        live.res.values["bytes_per_point"] = size / stored
        _say(f"  {COLUMN[name]}: {size:,} bytes on disk for {stored:,} points")
        compacted = live.engine.compacted_bytes()
        live.res.values["bytes_compacted"] = (size if compacted is None else compacted) / stored
        if compacted is not None:
            _say(f"  {COLUMN[name]}: {compacted:,} bytes after `besmart db compact`")


def _fail(lives: dict[str, Live], name: str, why: str) -> None:
    live = lives.pop(name)
    live.res.error = why
    _say(f"{name}: FAILED: {why}")
    live.stack.close()


def measure_all(names: Sequence[str], workload: Workload, opts: Options) -> dict[str, Result]:
    results: dict[str, Result] = {}
    lives: dict[str, Live] = {}
    try:
        for name in names:
            try:
                live = start_and_ingest(make_engine(name, opts), workload, opts)
            except Skip as why:
                results[name] = Result(name, skipped=str(why))
                _say(f"{name}: skipped: {why}")
                continue
            except Exception as exc:  # one engine's failure must not hide the others' figures
                results[name] = Result(name, error=f"{type(exc).__name__}: {exc}")
                _say(f"{name}: FAILED: {type(exc).__name__}: {exc}")
                continue
            lives[name] = live
            results[name] = live.res
        if not opts.ingest_only:
            _say(f"reads, engines taking turns: {', '.join(COLUMN[n] for n in lives)}")
            read_all(lives, workload, opts)
        for name in list(lives):
            live = lives.pop(name)
            if opts.ingest_only:
                live.stack.close()
                continue
            try:
                measure_storage(name, live, workload)
            except Exception as exc:
                live.res.error = f"size on disk: {type(exc).__name__}: {exc}"
                _say(f"{name}: FAILED: {live.res.error}")
        for name, res in results.items():
            if res.skipped or res.error:
                continue
            _say(f"{COLUMN[name]}: {CONCURRENT_THREADS} concurrent writers")
            try:
                concurrent_ingest(name, workload, opts, res)
            except Exception as exc:
                res.notes["concurrent"] = f"FAILED: {type(exc).__name__}: {exc}"
                _say(f"{name}: concurrent writers FAILED: {type(exc).__name__}: {exc}")
    finally:
        for live in lives.values():  # Ctrl-C or a bug: stop whatever still runs
            live.stack.close()
    return results


def make_engine(name: str, opts: Options, *, workers: int | None = None) -> Engine:
    if name in OURS:
        backend: Backend = "sqlite" if name == "sqlite" else "postgres"
        return Besmart(backend, workers=workers or opts.workers, pg_url=opts.pg_url)
    return InfluxDB() if name == "influxdb" else VictoriaMetrics()


def machine() -> dict[str, str]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        mem = f"{mem_kb / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        mem = "?"
    return {
        "cpu": cpu or platform.processor() or "?",
        "cores": str(os.cpu_count()),
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def run(opts: Options, only: Sequence[str]) -> tuple[str, dict[str, object]]:
    t0 = time.monotonic()
    workload = generate(opts.spec)
    _say(
        f"workload: {workload.stored_points:,} points ({opts.spec.sensors} sensors x "
        f"{len(workload.meters) // opts.spec.sensors} signals x {opts.spec.days} days, "
        f"{len(workload.minute):,} 1-min, {opts.spec.versions} x {len(workload.versions[0]):,} "
        f"versioned), batches of {opts.spec.batch_points:,} points, layout {opts.layout}"
    )
    load_before = os.getloadavg()[0]
    results = measure_all(only, workload, opts)
    load = f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    lines = table(workload, results, judge=not opts.quick and opts.spec == FULL)
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    info = machine()
    head = (
        f"besmart benchmark, {'quick' if opts.quick else 'full'} run, {when}; "
        f"{info['cpu']}, {info['cores']} cores, {info['memory']}; "
        f"server workers {opts.workers}; load average {load}; {time.monotonic() - t0:.0f} s"
    )
    text = "\n".join([head, "", markdown(lines), "", *notes(results)])
    doc: dict[str, object] = {
        "when": when,
        "mode": "quick" if opts.quick else "full",
        "machine": info,
        "spec": dataclasses.asdict(opts.spec),
        "layout": opts.layout,
        "workers": opts.workers,
        "load_average": load,
        "rows": [dataclasses.asdict(r) for r in rows(workload)],
        "results": {k: dataclasses.asdict(v) for k, v in results.items()},
        "table": lines,
    }
    return text, doc


def save(text: str, doc: dict[str, object], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    name = f"{doc['mode']}-{stamp}"
    for base in (name, f"latest-{doc['mode']}"):
        (out / f"{base}.md").write_text(text + "\n")
        (out / f"{base}.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    return out / f"{name}.md"


def parse_args(argv: Sequence[str] | None) -> tuple[Options, list[str], Path]:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, few repetitions (CI)")
    ap.add_argument("--workers", type=int, default=1, help="besmart serve --workers (default 1)")
    ap.add_argument("--only", default=",".join(ENGINES), help="comma list of " + ",".join(ENGINES))
    ap.add_argument(
        "--layout",
        choices=("time", "series"),
        default="time",
        help="meters' write batches: every series per time window (default) or series by series",
    )
    ap.add_argument("--batch-points", type=int, help="points per write request")
    ap.add_argument("--reps", type=int, help="timed repetitions per read")
    ap.add_argument(
        "--pg-url",
        default=os.environ.get("BESMART_BENCH_PG_URL", DEFAULT_PG_URL),
        help="PostgreSQL server (loopback) on which a fresh database is made and dropped",
    )
    ap.add_argument(
        "--ingest-only",
        action="store_true",
        help="only the ingest rows (1, 1b, 1c, 1d): no reads, no size on disk",
    )
    ap.add_argument("--out", type=Path, default=RESULTS_DIR, help="where results are written")
    args = ap.parse_args(argv)
    only = [e.strip() for e in args.only.split(",") if e.strip()]
    unknown = sorted(set(only) - set(ENGINES))
    if unknown or not only:
        ap.error(f"--only takes {','.join(ENGINES)}; got {args.only!r}")
    if args.workers < 1:
        ap.error("--workers must be at least 1")
    spec = QUICK if args.quick else FULL
    if args.batch_points:
        spec = dataclasses.replace(spec, batch_points=args.batch_points)
    reps = args.reps or (5 if args.quick else 30)
    opts = Options(
        spec=spec,
        quick=args.quick,
        layout=args.layout,
        workers=args.workers,
        pg_url=check_loopback_url(args.pg_url),
        warmup=1 if args.quick else 2,
        reps=max(1, reps),
        budget_s=3.0 if args.quick else 45.0,
        ingest_only=args.ingest_only,
    )
    return opts, [e for e in ENGINES if e in only], args.out


def main(argv: Sequence[str] | None = None) -> int:
    opts, only, out = parse_args(argv)
    try:
        text, doc = run(opts, only)
    except KeyboardInterrupt:
        _say("interrupted: every process started was stopped")
        return 130
    print(text)
    path = save(text, doc, out)
    _say(f"written: {path} (and .json)")
    results = doc["results"]
    assert isinstance(results, dict)
    return 1 if any(r["error"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
