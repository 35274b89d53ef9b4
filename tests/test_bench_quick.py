"""The benchmark's own checks: the workload generator, batching, line protocol, the table;
and one end-to-end quick run against a real besmart-server on SQLite."""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from bench import run
from bench.besmart import epw
from bench.peers import line_protocol
from bench.workload import (
    A_PLUS,
    FULL,
    METER_SIGNALS,
    MS_15MIN,
    MS_DAY,
    MS_HOUR,
    MS_MINUTE,
    P_PLUS,
    QUICK,
    U1,
    WEATHER_AT,
    Chunk,
    Layout,
    Series,
    Spec,
    Workload,
    generate,
    pack,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def full() -> Workload:
    return generate(FULL)


def test_full_sizes_are_the_issues(full: Workload) -> None:
    assert len(full.meters) == 20 * len(METER_SIGNALS) == 100
    assert {len(s) for s in full.meters} == {35_040}
    assert len(full.minute) == 525_600
    assert [len(v) for v in full.versions] == [35_040] * 5
    assert full.decade is not None
    assert len(full.decade) == 3653 * 96  # ten years of quarter hours, 2016-2025
    assert full.stored_points == 100 * 35_040 + 525_600 + 5 * 35_040 + 3653 * 96 + 100 * 288
    assert full.monthly_query().expected_points == 120
    assert full.raw_query().expected_points == 35_040
    assert full.last_query().expected_points == 35_040
    assert full.daily_query().expected_points == 365
    multi = full.multi_query()
    assert len(multi.series) == 100
    assert multi.till - multi.since == MS_DAY
    assert multi.expected_points == 100 * 96
    assert [len(p.time) for p in full.weather] == [8_760] * 4
    assert full.weather_query().expected_points == 8_712


def test_the_pushes_go_on_after_the_meters_span_one_point_of_every_series_a_request(
    full: Workload,
) -> None:
    batches = full.push_batches()
    assert len(batches) == full.spec.push_steps == 288
    meters = {s.key: s for s in full.meters}
    for k, batch in enumerate(batches):
        assert sorted(c.series.key for c in batch.chunks) == sorted(meters)
        assert {len(c) for c in batch.chunks} == {1}
        for c in batch.chunks:
            end = int(meters[c.series.key].time[-1])
            assert c.time.tolist() == [end + (k + 1) * MS_15MIN]
    for pushed in full.pushed:
        meter = meters[pushed.key]
        assert pushed.measurement == meter.measurement
        if pushed.moid == A_PLUS:  # a counter goes on from its last reading, never down
            steps = np.diff(np.concatenate([meter.value[-1:], pushed.value]))
            assert bool((steps >= 0).all())
            assert bool((steps > 0).any())
        else:
            np.testing.assert_array_equal(pushed.value, meter.value[1:289])


def test_generation_is_deterministic_and_independent_of_size() -> None:
    a, b = generate(QUICK), generate(QUICK)
    for x, y in zip(
        (*a.meters, a.minute, *a.versions), (*b.meters, b.minute, *b.versions), strict=True
    ):
        assert x.key == y.key
        np.testing.assert_array_equal(x.time, y.time)
        np.testing.assert_array_equal(x.value, y.value)
    bigger = generate(Spec(sensors=5, days=7, minute_days=1, version_days=1))
    np.testing.assert_array_equal(bigger.meters[0].value, a.meters[0].value)
    other_seed = generate(Spec(sensors=2, days=7, minute_days=7, version_days=7, seed=1))
    assert not np.array_equal(other_seed.meters[1].value, a.meters[1].value)


def test_times_are_regular_and_in_the_window() -> None:
    w = generate(QUICK)
    for s in w.meters:
        assert s.time[0] == QUICK.start_ms
        assert set(np.diff(s.time).tolist()) == {MS_15MIN}
        assert s.time.dtype == np.int64
    assert set(np.diff(w.minute.time).tolist()) == {MS_MINUTE}
    assert len(w.minute) == QUICK.minute_days * 1440


def test_counters_are_monotonic_and_match_power() -> None:
    w = generate(FULL)
    by_key = {s.key: s for s in w.meters}
    for sensor in ("m000", "m007", "m019"):
        counter = by_key[f"{sensor}/{A_PLUS}"].value
        power = by_key[f"{sensor}/{P_PLUS}"].value
        assert np.all(np.diff(counter) > 0)
        # a year of 15-minute energy: the register's rise is the integral of the power
        assert counter[-1] - counter[0] == pytest.approx(np.sum(power[:-1]) * 0.25, rel=1e-6)


def test_power_has_a_daily_load_shape_and_noise() -> None:
    w = generate(FULL)
    power = next(s for s in w.meters if s.moid == P_PLUS)
    assert np.all(power.value >= 0.01)
    hour = (power.time % MS_DAY) // MS_HOUR
    night = power.value[(hour >= 1) & (hour < 4)].mean()
    evening = power.value[(hour >= 18) & (hour < 21)].mean()
    assert evening > 1.8 * night
    day_to_day = power.value.reshape(-1, 96)
    assert np.std(day_to_day[:, 76]) > 0  # 19:00 is not the same every day


def test_voltages_sit_around_230() -> None:
    w = generate(QUICK)
    for s in (s for s in w.meters if s.moid >= U1 and s.moid <= U1 + 2):
        assert s.value.min() > 215
        assert s.value.max() < 245
        assert abs(s.value.mean() - 230) < 6
        assert np.allclose(s.value * 10, np.round(s.value * 10))  # one decimal, as meters send


def test_versions_share_times_and_differ_in_values() -> None:
    w = generate(QUICK)
    assert [v.version for v in w.versions] == list(range(5))
    assert len({v.acq_ms for v in w.versions}) == 5
    for older, newer in zip(w.versions, w.versions[1:], strict=False):
        np.testing.assert_array_equal(older.time, newer.time)
        assert not np.array_equal(older.value, newer.value)
        assert older.acq_ms is not None
        assert newer.acq_ms is not None
        assert newer.acq_ms > older.acq_ms


def test_weather_grid_surrounds_the_queried_place() -> None:
    w = generate(QUICK)
    lats = {p.lat for p in w.weather}
    lons = {p.lon for p in w.weather}
    assert min(lats) < WEATHER_AT[0] < max(lats)
    assert min(lons) < WEATHER_AT[1] < max(lons)
    for p in w.weather:
        assert set(np.diff(p.time).tolist()) == {MS_HOUR}
        assert -30 < p.temp_c.min() < p.temp_c.max() < 40
        assert p.ghi_wm2.min() >= 0
        assert p.wind_ms.min() >= 0
    q = w.weather_query()
    assert q.expected_points == (QUICK.weather_days - 2) * 24 == (q.till - q.since) // MS_HOUR


def test_epw_file_has_one_row_per_hour() -> None:
    point = generate(QUICK).weather[0]
    lines = epw(point).splitlines()
    assert lines[0].startswith("LOCATION,")
    assert lines[0].split(",")[6:8] == [f"{point.lat:.4f}", f"{point.lon:.4f}"]
    rows = [line.split(",") for line in lines[8:]]
    assert len(rows) == len(point.time)
    assert rows[0][:4] == ["2023", "1", "1", "1"]  # hour 1 = 00:00-01:00 UTC
    assert rows[23][:4] == ["2023", "1", "1", "24"]
    assert {len(r) for r in rows} == {35}
    assert float(rows[5][6]) == point.temp_c[5]


@pytest.mark.parametrize("layout", ["time", "series"])
def test_batches_cover_every_point_once(layout: Layout) -> None:
    w = generate(QUICK)
    batches = w.ingest_batches(layout) + w.version_batches() + w.decade_batches()
    assert all(0 < b.points <= QUICK.batch_points for b in batches)
    seen: dict[str, list[tuple[int, int]]] = {}
    for b in batches:
        for c in b.chunks:
            seen.setdefault(c.series.key, []).append((c.start, c.stop))
    assert w.decade is not None
    every = (*w.meters, w.minute, *w.versions, w.decade)
    assert set(seen) == {s.key for s in every}
    for s in every:
        ranges = sorted(seen[s.key])
        assert ranges[0][0] == 0
        assert ranges[-1][1] == len(s)
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    pushes = w.push_batches()  # the meters' series again, with points after their span
    pushed = sorted((c.series.key, c.start) for b in pushes for c in b.chunks)
    assert pushed == sorted((s.key, i) for s in w.pushed for i in range(len(s)))
    assert sum(b.points for b in batches + pushes) == w.stored_points


def test_writer_streams_split_the_meters_by_sensor() -> None:
    """The concurrent writers' row: each writer has sensors of its own (disjoint series),
    and together they write every meter point once."""
    w = generate(dataclasses.replace(QUICK, sensors=6))
    streams = w.writer_streams(4)
    sensors = [{c.series.sensor for b in s for c in b.chunks} for s in streams]
    assert all(sensors)
    assert all(not (a & b) for a, b in itertools.combinations(sensors, 2))
    points = {s.key: 0 for s in w.meters}
    for stream in streams:
        for batch in stream:
            assert 0 < batch.points <= QUICK.batch_points
            for c in batch.chunks:
                points[c.series.key] += len(c)
    assert points == {s.key: len(s) for s in w.meters}


def test_time_layout_puts_every_meter_in_each_batch() -> None:
    w = generate(QUICK)
    first = pack(w.meters, 1_000, "time")[0]
    assert len(first.chunks) == len(w.meters)
    assert {len(c) for c in first.chunks} == {1_000 // len(w.meters)}


def test_line_protocol() -> None:
    t = np.array([1_704_067_200_000, 1_704_068_100_000], dtype=np.int64)
    plain = Series("sig", "m000", P_PLUS, t, np.array([1.5, 2.0]))
    assert line_protocol(Chunk(plain, 0, 2), acq_field=True) == (
        "sig,moid=1001,sensor=m000 value=1.5 1704067200000\n"
        "sig,moid=1001,sensor=m000 value=2.0 1704068100000\n"
    )
    version = Series("ver", "ver000", P_PLUS, t, np.array([3.25, 4.0]), 2, 1_800_000_000_000)
    assert line_protocol(Chunk(version, 1, 2), acq_field=True) == (
        "ver,moid=1001,sensor=ver000,ver=1800000000000 value=4.0,acq=1800000000000i 1704068100000\n"
    )
    assert "acq=" not in line_protocol(Chunk(version, 0, 2), acq_field=False).split(" ")[1]


def _results() -> dict[str, run.Result]:
    ours = {"ingest": 400_000.0, "raw_p95": 40.0, "last_ratio": 1.2, "bytes_per_point": 20.0}
    return {
        "sqlite": run.Result(
            "besmart-sqlite", values={**ours, "daily_p95": 90.0, "bytes_compacted": 2.4}
        ),
        "postgres": run.Result(
            "besmart-postgres", values={**ours, "raw_p95": 60.0, "bytes_compacted": 4.1}
        ),
        "influxdb": run.Result("influxdb", values={"ingest": 500_000.0, "raw_p95": 80.0}),
        "victoriametrics": run.Result("victoriametrics", skipped="not installed"),
    }


def test_table_has_every_figure_ratio_and_target() -> None:
    w = generate(QUICK)
    lines = run.table(w, _results(), judge=True)
    header, body = lines[0], lines[1:]
    assert header[:6] == ["figure", "unit", *run.COLUMN.values()]
    assert "sqlite/influx" in header
    assert "pg/vm" in header
    assert [r.label for r in run.rows(w)] == [line[0] for line in body]
    ingest = body[0]
    assert ingest[2] == "400 k"
    assert ingest[4] == "500 k"
    assert ingest[5] == "-"
    assert ingest[header.index("sqlite/influx")] == "0.80x"
    assert ingest[-1] == ">= 1.0x influxdb: sqlite ✗, pg ✗"
    raw_p95 = next(line for line in body if line[0] == "2 raw read, p95")
    assert raw_p95[header.index("pg/influx")] == "0.75x"
    assert raw_p95[-1] == "< 50 ms: sqlite ✓, pg ✗"
    size = next(line for line in body if line[0].startswith("7 "))
    assert size[-1] == "<= 2.5 sqlite, <= 4 pg (18): sqlite ✗, pg ✗"
    compacted = next(line for line in body if line[0].startswith("7b "))
    assert compacted[2:4] == ["2.4", "4.1"]
    assert compacted[-1] == "<= 2.5 sqlite, <= 4 pg (18): sqlite ✓, pg ✗"
    assert run.table(w, _results(), judge=False)[1][-1] == ">= 1.0x influxdb"


def test_markdown_is_aligned() -> None:
    w = generate(QUICK)
    text = run.markdown(run.table(w, _results(), judge=False))
    widths = {len(line) for line in text.splitlines()}
    assert len(widths) == 1
    assert text.splitlines()[1].startswith("|---")


def test_formatting_and_percentiles() -> None:
    assert run.fmt_value("pts/s", 1_234_567) == "1.23 M"
    assert run.fmt_value("ms", 3.14159) == "3.14"
    assert run.fmt_value("ms", 123.4) == "123"
    assert run.fmt_value("B/pt", None) == "-"
    assert run.percentiles_ms([0.001] * 19 + [0.1]) == pytest.approx((1.0, 5.95))


def test_reads_take_turns_and_a_failing_engine_leaves() -> None:
    calls: list[str] = []

    def ok(name: str) -> Callable[[], bytes]:
        def send() -> bytes:
            calls.append(name)
            return b""

        return send

    def broken() -> bytes:
        calls.append("broken")
        if calls.count("broken") > 2:
            raise RuntimeError("gone")
        return b""

    took, failed = run.interleaved_samples(
        {"a": ok("a"), "b": ok("b"), "broken": broken}, warmup=1, reps=4, budget_s=10
    )
    assert failed == {"broken": "RuntimeError: gone"}
    assert set(took) == {"a", "b"}
    assert len(took["a"]) == len(took["b"]) == 4
    rounds = [c for c in calls[3:] if c != "broken"]
    assert rounds[:2] == ["a", "b"]
    assert rounds[2:4] == ["b", "a"]  # the starting engine rotates


def test_arguments() -> None:
    opts, only, _ = run.parse_args(["--quick", "--only", "influxdb,sqlite", "--workers", "2"])
    assert only == ["sqlite", "influxdb"]
    assert opts.spec == QUICK
    assert opts.workers == 2
    assert opts.reps == 5
    assert not opts.ingest_only
    assert run.parse_args(["--ingest-only"])[0].ingest_only
    with pytest.raises(SystemExit):
        run.parse_args(["--only", "mysql"])
    with pytest.raises(ValueError, match="loopback"):
        run.parse_args(["--pg-url", "postgresql://postgres@10.0.0.5:5432/test"])


@pytest.mark.slow
def test_quick_run_end_to_end_on_sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if request.config.getoption("--db-url") != "sqlite":
        pytest.skip("the benchmark's quick run is checked once, in the SQLite pass")
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--only", "sqlite", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if "skipped: routes not served yet" in done.stderr:
        pytest.skip("signal data routes (issue 4) not served: " + done.stderr.splitlines()[-1])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| 1 ingest" in done.stdout
    assert "besmart-sqlite" in done.stdout
    assert "FAILED" not in done.stdout
    assert list(tmp_path.glob("quick-*.json"))
    assert (tmp_path / "latest-quick.md").exists()
