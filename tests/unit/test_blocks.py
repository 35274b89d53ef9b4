"""The day-block codec: exact round trips, merge semantics, splitting and damaged bodies."""

from __future__ import annotations

import math
from random import Random

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from besmart_server.server.signals import blocks
from besmart_server.server.signals.blocks import DAY_MS, CorruptBlock
from besmart_server.server.signals.pipeline import Frame, sort_versions
from besmart_server.wire import TYPE_DBL, TYPE_INT, TYPE_RM, TYPE_STR

_MAGICLESS = zstandard.ZstdCompressor(
    compression_params=zstandard.ZstdCompressionParameters.from_level(
        3, format=zstandard.FORMAT_ZSTD1_MAGICLESS
    )
)  # format 2's frames

Point = tuple[int, int, int, float, str | None]  # time offset, acq, type, value, text


def _frame(day: int, points: list[Point], origin: int = 1) -> Frame:
    texts = [p[4] for p in points]
    return Frame.from_columns(
        [day * DAY_MS + p[0] for p in points],
        [origin] * len(points),
        [p[1] for p in points],
        [p[2] for p in points],
        [p[3] for p in points],
        texts if any(p[2] == TYPE_STR for p in points) else None,
    )


def _rows(f: Frame) -> list[tuple[int, int, int, int, float | None, str | None]]:
    text = f.text or (None,) * len(f)
    return [
        (t, o, a, k, None if math.isnan(v) else v, s)
        for t, o, a, k, v, s in zip(
            f.time.tolist(),
            f.origin.tolist(),
            f.acq.tolist(),
            f.type.tolist(),
            f.value.tolist(),
            text,
            strict=True,
        )
    ]


def _point() -> st.SearchStrategy[Point]:
    def build(t: int, acq: int, kind: int, value: float, s: str) -> Point:
        if kind in (TYPE_RM, TYPE_STR):
            value = math.nan
        return (t, acq, kind, value, s if kind == TYPE_STR else None)

    return st.builds(
        build,
        st.integers(0, DAY_MS - 1),
        st.integers(-(2**63), 2**63 - 1),
        st.sampled_from((TYPE_DBL, TYPE_INT, TYPE_STR, TYPE_RM)),
        st.floats(allow_nan=False, width=64),
        st.text(max_size=8),
    )


@settings(max_examples=200, deadline=None)
@given(
    day=st.integers(-(2**62) // DAY_MS, (2**62 - 1) // DAY_MS),  # times within ±2**62
    points=st.lists(_point(), min_size=1, max_size=60, unique_by=lambda p: (p[0], p[1])),
)
def test_encode_then_decode_gives_the_sorted_points_back(day: int, points: list[Point]) -> None:
    f = sort_versions(_frame(day, points, origin=3))
    e = blocks.encode(day, 3, f)
    back = blocks.decode(day, 3, e.body)
    assert _rows(back) == _rows(f)
    assert [(r[0], r[2]) for r in _rows(back)] == sorted((r[0], r[2]) for r in _rows(back))
    numeric = [r[0] for r in _rows(f) if r[3] in (TYPE_DBL, TYPE_INT)]
    assert (e.n, e.t_last) == (len(f), int(f.time[-1]))
    assert (e.num_first, e.num_last) == ((min(numeric), max(numeric)) if numeric else (None, None))


def test_batches_group_by_utc_day_and_origin_including_before_the_epoch() -> None:
    f = Frame.from_columns(
        [-1, 0, DAY_MS - 1, DAY_MS, 0],
        [1, 1, 1, 1, 2],
        [1, 1, 1, 1, 1],
        [TYPE_DBL] * 5,
        [1.0, 2.0, 3.0, 4.0, 5.0],
    )
    f = f.take(np.lexsort((f.acq, f.time, f.origin)))  # encode_batch's order
    got = sorted(
        (e.day, e.origin, blocks.decode(e.day, e.origin, e.body).value.tolist())
        for _, e in blocks.encode_batch(np.zeros(len(f), dtype=np.int64), f)
    )
    assert got == [(-1, 1, [1.0]), (0, 1, [2.0, 3.0]), (0, 2, [5.0]), (1, 1, [4.0])]


def test_a_point_outside_the_day_is_refused() -> None:
    f = _frame(0, [(0, 1, TYPE_DBL, 1.0, None)])
    with pytest.raises(ValueError, match="within its day"):
        blocks.encode(1, 1, f)


def test_a_regular_day_compresses_far_below_a_row_per_point() -> None:
    t = np.arange(96, dtype=np.int64) * 900_000
    value = np.round(230 + np.sin(t / 3e6) * 3, 1)
    f = Frame.from_columns(t, np.ones(96), np.full(96, 1_700_000_000_000_001), np.zeros(96), value)
    assert len(blocks.encode(0, 1, f).body) / 96 < 4.0


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x01",
        b"\x09\x01\x00\x00\x00" + b"\x00" * 8,
        b"\x01\x05\x00\x00\x00garbage",
        b"\x02\x05\x00\x00\x00garbage",
        b"\x02" + _MAGICLESS.compress(b"\x00" * 8),
    ],
    ids=["empty", "short header", "unknown format", "not zstd", "not zstd (2)", "short (2)"],
)
def test_a_damaged_body_raises_corrupt_block(body: bytes) -> None:
    with pytest.raises(CorruptBlock):
        blocks.decode(0, 1, body)


def test_a_body_shorter_than_its_count_raises_corrupt_block() -> None:
    f = _frame(0, [(0, 1, TYPE_DBL, 1.0, None), (5, 1, TYPE_DBL, 2.5, None)])
    ((_, old),) = blocks.encode_batch(np.zeros(2, dtype=np.int64), f, fmt=blocks.LEGACY_FORMAT)
    lying = b"\x01\x09\x00\x00\x00" + old.body[5:]  # format 1: claims 9 points
    with pytest.raises(CorruptBlock, match="shorter"):
        blocks.decode(0, 1, lying)
    f = _frame(
        0, [(0, 1, TYPE_DBL, 1.0, None), (5, 1, TYPE_DBL, 2.5, None), (9, 1, TYPE_DBL, 2.0, None)]
    )
    for fmt in (blocks.FORMAT_2, blocks.FORMAT):
        ((_, new),) = blocks.encode_batch(np.zeros(3, dtype=np.int64), f, fmt=fmt)
        raw = zstandard.ZstdDecompressor(format=zstandard.FORMAT_ZSTD1_MAGICLESS).decompress(
            new.body[1:]
        )
        head = _head(new.body)  # the values take bytes (format 2) or bits (format 3)
        assert head[4] > 0 or head[12] > 0
        cut = bytes([fmt]) + _MAGICLESS.compress(raw[:-1])  # a value byte missing
        with pytest.raises(CorruptBlock, match="shorter"):
            blocks.decode(0, 1, cut)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 3), st.integers(-2, 2), st.integers(1, 2), _point()),
        min_size=1,
        max_size=80,
        unique_by=lambda p: (p[0], p[1], p[2], p[3][0], p[3][1]),
    )
)
def test_batches_equal_one_block_at_a_time_and_latest_holds_the_newest(
    points: list[tuple[int, int, int, Point]],
) -> None:
    """encode_batch/decode_batch over many (series, day, origin) blocks give what encode and
    decode give block by block; `latest` is set exactly when a time has older versions and
    holds the newest version of each time."""
    points.sort(key=lambda p: (p[0], p[2], p[1], p[3][0], p[3][1]))  # series, origin, time, acq
    sid = np.array([p[0] for p in points], dtype=np.int64)
    f = Frame.from_columns(
        [p[1] * DAY_MS + p[3][0] for p in points],
        [p[2] for p in points],
        [p[3][1] for p in points],
        [p[3][2] for p in points],
        [p[3][3] for p in points],
        [p[3][4] for p in points] if any(p[3][2] == TYPE_STR for p in points) else None,
    )
    batch = blocks.encode_batch(sid, f)
    decoded, counts = blocks.decode_batch([(e.day, e.origin, e.body) for _, e in batch])
    assert _rows(decoded) == _rows(f)
    assert counts.tolist() == [e.n for _, e in batch]
    for s, e in batch:
        part = f.take((sid == s) & (f.time // DAY_MS == e.day) & (f.origin == e.origin))
        one = blocks.encode(e.day, e.origin, part)
        assert (one.body, one.latest) == (e.body, e.latest)
        newest = np.append(part.time[1:] != part.time[:-1], True)
        if bool(newest.all()):
            assert e.latest is None
        else:
            assert e.latest is not None
            assert _rows(blocks.decode(e.day, e.origin, e.latest)) == _rows(part.take(newest))


# -- format 2: decimals as scaled integers, everything else bit for bit ---------------------

_SPECIAL = [
    -0.0,
    0.0,
    5e-324,  # the smallest subnormal
    -2.2250738585072014e-308,
    1e250,  # VALUE_MAX
    -1e250,
    float(2**53 - 1),
    -float(2**53 - 1),
    float("inf"),
    float("-inf"),
    float("nan"),
]
_NAN_PAYLOADS = [0x7FF8000000000001, 0xFFF8000000000000, 0x7FF0000000000001, 0xFFFFFFFFFFFFFFFF]


def _bits(values: object) -> list[int]:
    out: list[int] = np.asarray(values, dtype=np.float64).view(np.uint64).tolist()
    return out


def _head(body: bytes) -> tuple[int, ...]:
    """The header of a format 2 or 3 body."""
    raw = zstandard.ZstdDecompressor(format=zstandard.FORMAT_ZSTD1_MAGICLESS).decompress(body[1:])
    return tuple(blocks._HEADS[body[0]][0].unpack_from(raw))


def _scale(body: bytes) -> int:
    """The value scale a format 2 or 3 body chose (255: float64 planes)."""
    return _head(body)[5]


def _values_block(values: list[float], acq: list[int] | None = None) -> Frame:
    n = len(values)
    return Frame.from_columns(
        np.arange(n, dtype=np.int64) * 900_000,
        np.ones(n),
        acq if acq is not None else np.full(n, 1_700_000_000_000_000),
        np.zeros(n),
        values,
    )


def _round_trip_bits(values: NDArray[np.float64]) -> None:
    f = _values_block(values.tolist())
    f = Frame(f.time, f.origin, f.acq, f.type, values)  # keep NaN payloads as they are
    for fmt in (blocks.FORMAT, blocks.FORMAT_2, blocks.LEGACY_FORMAT):
        ((_, e),) = blocks.encode_batch(np.zeros(len(f), dtype=np.int64), f, fmt=fmt)
        assert e.body[0] == fmt
        back = blocks.decode(0, 1, e.body)
        assert _bits(back.value) == _bits(values)
        assert (back.time.tolist(), back.acq.tolist()) == (f.time.tolist(), f.acq.tolist())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=50))
def test_any_float64_bit_pattern_comes_back_exactly(patterns: list[int]) -> None:
    """Every float64, NaN payloads included, through every format."""
    _round_trip_bits(np.array(patterns, dtype=np.uint64).view(np.float64))


_EXCEPTIONS = [-0.0, float("inf"), float("-inf"), float("nan")]  # kept apart, bits as they are


@settings(max_examples=300, deadline=None)
@given(
    k=st.integers(0, 9),
    ms=st.lists(st.integers(-(2**50), 2**50), min_size=1, max_size=120),
    special=st.lists(st.tuples(st.integers(0, 200), st.sampled_from(_EXCEPTIONS)), max_size=4),
    payload=st.lists(st.tuples(st.integers(0, 200), st.sampled_from(_NAN_PAYLOADS)), max_size=2),
    odd=st.lists(st.tuples(st.integers(0, 200), st.sampled_from(_SPECIAL)), max_size=2),
)
def test_decimal_values_are_scaled_integers_and_come_back_exactly(
    k: int,
    ms: list[int],
    special: list[tuple[int, float]],
    payload: list[tuple[int, int]],
    odd: list[tuple[int, float]],
) -> None:
    """m / 10**k (|m| <= 2**50: a float64 product with 10**k still rounds back to m) with
    -0.0, infinities and NaN payloads among them is stored scaled by some k' <= k and decodes
    bit for bit; with any value besides (a subnormal, 1e250, 2**53 - 1) it still does, scaled
    or as float64 planes."""
    values = np.array(ms, dtype=np.float64) / 10.0**k
    for at, v in special:
        values[at % len(values)] = v
    for at, bits in payload:
        values[at % len(values)] = np.array([bits], dtype=np.uint64).view(np.float64)[0]
    _round_trip_bits(values)
    f = _values_block(values.tolist())
    ((_, e),) = blocks.encode_batch(np.zeros(len(values), dtype=np.int64), f)
    assert _scale(e.body) <= k
    for at, v in odd:
        values[at % len(values)] = v
    _round_trip_bits(values)


def test_the_benchmark_decimals_are_scaled_and_small() -> None:
    """3-decimal counter readings, power and 1-decimal voltages take the scaled path, at half
    of format 1's size or less. Format 3 packs noisy differences in as many bits as their
    spread needs (power, voltages: well below format 2's byte planes); a day of 1,440 points
    is compressed both ways and keeps format 2's planes where zstd does better on them (a
    smooth counter's repeats), so it is never larger than format 2 but for the header's two
    more fields; a 96-point day is judged
    by its bytes before zstd and may then be a little larger."""
    rng = np.random.default_rng(7)
    for n, step in ((96, 900_000), (1440, 60_000)):
        t = np.arange(n, dtype=np.int64)
        counter = np.round(12_345.678 + np.cumsum(np.abs(np.sin(t / 7.0))), 3)
        volts = np.round(230 + rng.normal(0, 1.0, n), 1)
        power = np.round(1.5 + rng.uniform(-1.0, 1.0, n), 3)
        for values, k, noisy in ((counter, 3, False), (volts, 1, True), (power, 3, True)):
            f = Frame.from_columns(
                t * step, np.ones(n), np.full(n, 1_700_000_000_000_000), np.zeros(n), values
            )
            col = np.zeros(n, dtype=np.int64)
            ((_, new),) = blocks.encode_batch(col, f)
            ((_, two),) = blocks.encode_batch(col, f, fmt=blocks.FORMAT_2)
            ((_, old),) = blocks.encode_batch(col, f, fmt=blocks.LEGACY_FORMAT)
            assert _scale(new.body) == k
            assert len(two.body) <= len(old.body) * (0.6 if noisy else 0.5)
            d = np.diff(np.rint(values * 10**k).astype(np.int64))
            head = _head(new.body)
            if n == 1440:  # the smaller of the two ways (planes: no bits)
                assert len(new.body) <= len(two.body) + 2  # + the header's bits and ref
                assert head[4] == 0 or (head[4], head[12], head[13]) == (_head(two.body)[4], 0, 0)
            elif noisy:  # the bits of the spread, less the least difference
                spread = int(d.max() - d.min()).bit_length()
                assert (head[4], head[12], head[13]) == (0, spread, d.min())
                assert len(new.body) < len(two.body) * 0.9
            else:
                assert len(new.body) < len(two.body) * 1.1
            assert _bits(blocks.decode(0, 1, new.body).value) == _bits(values)


def test_special_values_among_decimals_stay_exact() -> None:
    values = np.array([1.5, *_SPECIAL, 2.25, -7.125], dtype=np.float64)
    values = np.concatenate([values, np.array(_NAN_PAYLOADS, dtype=np.uint64).view(np.float64)])
    _round_trip_bits(values)
    _round_trip_bits(np.array([0.1, -0.0, 0.2, float("nan")]))  # exceptions in a scaled block


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 3), st.integers(-2, 2), st.integers(1, 2), _point()),
        min_size=1,
        max_size=80,
        unique_by=lambda p: (p[0], p[1], p[2], p[3][0], p[3][1]),
    ),
    st.randoms(use_true_random=False),
)
def test_blocks_of_every_format_decode_alone_and_mixed(
    points: list[tuple[int, int, int, Point]], rnd: Random
) -> None:
    """Blocks written in the formats before format 3 (by the code before it, or by the
    migrations' ways down) decode to the same points, alone or in one read with blocks of
    the other formats, in the rows' order."""
    points.sort(key=lambda p: (p[0], p[2], p[1], p[3][0], p[3][1]))
    sid = np.array([p[0] for p in points], dtype=np.int64)
    f = Frame.from_columns(
        [p[1] * DAY_MS + p[3][0] for p in points],
        [p[2] for p in points],
        [p[3][1] for p in points],
        [p[3][2] for p in points],
        [p[3][3] for p in points],
        [p[3][4] for p in points] if any(p[3][2] == TYPE_STR for p in points) else None,
    )
    new = blocks.encode_batch(sid, f)
    old = blocks.encode_batch(sid, f, fmt=blocks.LEGACY_FORMAT)
    two = blocks.encode_batch(sid, f, fmt=blocks.FORMAT_2)
    for fmt, written in ((1, old), (2, two), (3, new)):
        assert all(
            e.body[0] == fmt and (e.latest is None or e.latest[0] == fmt) for _, e in written
        )
        assert [(e.day, e.origin, e.n, e.latest is None) for _, e in written] == [
            (e.day, e.origin, e.n, e.latest is None) for _, e in new
        ]
        alone, _ = blocks.decode_batch([(e.day, e.origin, e.body) for _, e in written])
        assert _rows(alone) == _rows(f)
    mixed = [(e.day, e.origin, rnd.choice((a, b, c)).body) for (_, a), (_, b), (_, c), (_, e)
             in zip(old, two, new, new, strict=True)]  # fmt: skip
    got, counts = blocks.decode_batch(mixed)
    assert _rows(got) == _rows(f)
    assert counts.tolist() == [e.n for _, e in new]


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    step=st.sampled_from([60_000, 1_000, 7, 30_000]),
    scale=st.sampled_from([0, 3, None]),
    spread=st.sampled_from([3, 10**4, 10**12]),
)
def test_hour_extremes_are_those_of_the_newest_live_points(
    seed: int, step: int, scale: int | None, spread: int
) -> None:
    """A dense block's summary keeps per hour the min and the max of its newest live numeric
    points and the first time each is reached, whatever the values (decimals of any width, or
    not decimal: float64) and the times (whole minutes, seconds or ms), past re-writes and
    RMs; read back bit for bit."""
    rng = np.random.default_rng(seed)
    day = 20_000
    n = min(3000, DAY_MS // step)
    t = np.sort(rng.choice(DAY_MS // step, n, replace=False)).astype(np.int64) * step
    t += day * DAY_MS
    ints = rng.integers(-spread, spread, n)
    v = ints / 10.0**scale if scale is not None else rng.normal(0, 1e200, n)
    again = rng.choice(n, n // 10, replace=False)  # a second version, one in ten an RM
    kind = np.where(rng.random(again.shape[0]) < 0.1, TYPE_RM, TYPE_DBL)
    f = Frame.from_columns(
        np.concatenate([t, t[again]]),
        np.ones(n + again.shape[0]),
        np.concatenate([np.full(n, 5), np.full(again.shape[0], 9)]),
        np.concatenate([np.full(n, TYPE_DBL), kind]),
        np.concatenate([v, np.where(kind == TYPE_RM, np.nan, v[rng.permutation(again)])]),
    )
    f = sort_versions(f)
    (e,) = [e for _, e in blocks.encode_batch(np.zeros(len(f), dtype=np.int64), f)]
    assert e.hours is not None
    assert e.hours[:1] in (b"\x04", b"\x05")  # hours with their extremes
    hours, _ = blocks.read_hour_summaries([(day, 1, e.hours)])
    newest = f.take(np.append(f.time[1:] != f.time[:-1], True))
    live = newest.take(newest.type == TYPE_DBL)
    at, _, count, _, _, low, t_low, high, t_high = hours
    assert count.sum() == len(live)
    for i, hour in enumerate(at.tolist()):
        inside = (live.time >= hour) & (live.time < hour + 3_600_000)
        tt, vv = live.time[inside], live.value[inside]
        assert low[i].tobytes() == vv.min().tobytes()
        assert high[i].tobytes() == vv.max().tobytes()
        assert t_low[i] == tt[np.flatnonzero(vv == vv.min())[0]]
        assert t_high[i] == tt[np.flatnonzero(vv == vv.max())[0]]


def test_format_3_blocks_of_every_value_layout_decode_together() -> None:
    """One read of blocks whose values format 3 stores each way: packed bits (of two widths),
    no bits at all (a constant step: every difference the reference), byte planes (a spread
    no narrower in bits), float64 planes, one point; of one size and of several."""
    rng = np.random.default_rng(11)
    n = 96
    layouts = {
        "bits 12": np.round(1.5 + rng.uniform(-1.0, 1.0, n), 3),
        "bits 7": np.round(230 + rng.uniform(-3.0, 3.0, n), 1),
        "a constant step": np.round(100.0 + 0.25 * np.arange(n), 3),
        "byte planes": np.cumsum(np.where(np.arange(n) % 2 == 0, -128, 127)).astype(np.float64),
        "float64 planes": rng.uniform(-1.0, 1.0, n) / 3.0,
    }
    want = {"bits 12": (0, 12), "bits 7": (0, 7), "a constant step": (0, 0),
            "byte planes": (1, 0), "float64 planes": (8, 0)}  # fmt: skip
    bodies: list[tuple[int, int, bytes]] = []
    for day, (name, values) in enumerate(layouts.items()):
        f = Frame.from_columns(
            day * DAY_MS + np.arange(n) * 900_000, np.ones(n), np.full(n, 9), np.zeros(n), values
        )
        ((_, e),) = blocks.encode_batch(np.zeros(n, dtype=np.int64), f)
        head = _head(e.body)
        assert (head[4], head[12]) == want[name], name
        if name == "a constant step":
            assert head[13] == 25  # 0.25 in hundredths
        bodies.append((day, 1, e.body))
    one = Frame.from_columns([9 * DAY_MS], [1], [9], [0], [0.125])
    ((_, single),) = blocks.encode_batch(np.zeros(1, dtype=np.int64), one)
    mixes = (bodies, [*bodies, (9, 1, single.body)], [bodies[0], bodies[3], bodies[2]])
    for rows in (*mixes, [bodies[0], bodies[1], bodies[0]]):  # the last: bits only, two widths
        got, counts = blocks.decode_batch(rows)
        alone = [blocks.decode(d, o, b) for d, o, b in rows]
        assert counts.tolist() == [len(a) for a in alone]
        assert _bits(got.value) == [v for a in alone for v in _bits(a.value)]
        assert got.time.tolist() == [t for a in alone for t in a.time.tolist()]
    for (_, _, body), values in zip(bodies, layouts.values(), strict=True):
        assert _bits(blocks.decode(0, 1, body).value) == _bits(values)


def test_a_day_of_fewer_than_48_points_keeps_no_summary() -> None:
    """Hourly days (24 points) keep no summary (a read decodes them); from 48 points on, a
    day has the summary hour_summaries gives it."""
    for n, summed in ((24, False), (47, False), (48, True), (96, True)):
        step = blocks.DAY_MS // n
        f = Frame.from_columns(
            np.arange(n) * step, np.ones(n), np.full(n, 9), np.zeros(n), np.arange(n) / 4
        )
        ((_, e),) = blocks.encode_batch(np.zeros(n, dtype=np.int64), f)
        first = np.zeros(n, dtype=np.bool_)
        first[0] = True
        (h,) = blocks.hour_summaries(np.zeros(n, dtype=np.int64), f, first)
        assert h
        assert e.hours == (h if summed else None), n
