"""Day blocks: every version of one series' points of one origin within one UTC day, as one
compressed row.

One row per point made reads and writes cost a Python object (and 38 B on SQLite, 158 B on
PostgreSQL) per point; the benchmark's profiles showed that per-row overhead as 85-88 % of a
read. A block holds a day's points of one (series, origin), every version, sorted by
(time, acq), as columns compressed together with zstd (level 3). The body starts with a
format byte, so the encoding can change without a schema change.

Format 3 (written now) is format 2 with a second way to keep a scaled block's value
differences: less the least of them (the block's reference, in the header), each in as few
bits as hold the largest, bit after bit (frame of reference). A voltage's wobble in tenths
takes 7 bits where a byte plane took 8, a power's differences in watts 12 where two planes
took 16, and zstd finds too little in a 96-point day's planes to make up for it. A block
keeps the bits when they take at least 5 % fewer bytes than the planes (a day of fewer than
256 points judged before zstd, a larger one compressed both ways): reading bits costs more,
and zstd finds a smooth series' repeats in planes only. The header is format 2's with two
more fields, the bits (0: planes, or none at all when every difference is the reference)
and the reference. On the benchmark's meters a body is 10-25 % smaller than in format 2.

Format 2 (written by 0011-0018; read still, and written for migration 0019's downgrade).
Meter readings are decimals (registers with 3 decimals, voltages and weather with 1), so a
block's values are stored as integers m with value = m / 10**k, k the
smallest of 0..9 that gives every finite value back bit for bit; -0.0, NaN (every payload)
and ±inf are kept apart as exceptions (position and raw bits). Every integer column is then a
difference from the point before — times a second difference (a regular series is all
zeros), acq stamps and types a first one (one write stamps all its points alike), values a
first one (a counter's increments, a voltage's wobble) — stored as signed integers of the
narrowest of 0 (all zero: nothing stored), 1, 2, 4 or 8 bytes that holds the block's, byte
plane by byte plane (the high bytes of small numbers are alike, so grouping byte planes gives
zstd long runs — Blosc's shuffle filter). The first value of each column is in a small
header. A block with a value that no k gives back exactly (a subnormal, 1e250, a ratio)
keeps its values as format 1 stores them: float64 byte planes.
On the benchmark's meters this stores about a third of what format 1 did; decoding is numpy
over every block of a read at once (per block only the header and decompression run in
Python).

Format 1 (written by 0004-0010; read still, and written for migration 0011's downgrade):
the number of points, then zstd of int32 time deltas, int64 acq deltas, int8 types and
float64 byte planes.

Every format ends with the STR points' strings as one JSON list, in row order, when there
are any.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import orjson
import zstandard
from numpy.typing import NDArray

from besmart_server.server.signals.pipeline import (
    F64,
    I64,
    Frame,
    HourSums,
    concat,
    hour_sums,
    last_of_runs,
)
from besmart_server.server.signals.reduce import segment_extremes
from besmart_server.wire import TYPE_DBL, TYPE_INT, TYPE_STR

DAY_MS: Final = 86_400_000
FORMAT: Final = 3
FORMAT_2: Final = 2
LEGACY_FORMAT: Final = 1
_FORMATS: Final = frozenset((LEGACY_FORMAT, FORMAT_2, FORMAT))
_HEADER: Final = struct.Struct("<BI")  # format 1: format, number of points
# Format 2 is the format byte, then one zstd frame (no magic number) that starts with: the
# number of points; the byte width of the time, acq, type and value residuals; the value
# scale k (_RAW: float64 planes); the first type; the first time offset and first time step;
# the first acq; the first scaled value; the number of value exceptions.
_V2_FIELDS: Final = [
    ("n", "<u4"),
    ("w_time", "u1"),
    ("w_acq", "u1"),
    ("w_type", "u1"),
    ("w_value", "u1"),
    ("scale", "u1"),
    ("kind0", "i1"),
    ("t0", "<i4"),
    ("t1", "<i4"),
    ("acq0", "<i8"),
    ("value0", "<i8"),
    ("exceptions", "<u4"),
]
# Format 3 adds the bits of the values' packed differences and their reference (_bits_v3).
_V3_FIELDS: Final = [*_V2_FIELDS, ("bits", "u1"), ("ref", "<i8")]
_HEADS: Final = {
    FORMAT_2: (struct.Struct("<IBBBBBbiiqqI"), np.dtype(_V2_FIELDS)),
    FORMAT: (struct.Struct("<IBBBBBbiiqqIBq"), np.dtype(_V3_FIELDS)),
}  # per format: one header, and the same for all blocks of a batch at once
_RAW: Final = 255
_MAX_SCALE: Final = 9
_WIDTHS: Final = frozenset((0, 1, 2, 4, 8))
_SCALES: Final = frozenset((*range(_MAX_SCALE + 1), _RAW))
_EXACT: Final = 2.0**53  # larger integers do not all survive int64 -> float64
_NEG_ZERO: Final = np.uint64(1 << 63)
_LEVEL: Final = 3  # zstd's default; higher levels stored < 1 % less and encoded 1.5-2x slower
# Format 3's widest bit-packed value: scaled values are at most 2**53 in size (_EXACT), so
# their differences less the least of them are below 2**55.
_MAX_BITS: Final = 56
_POW2: Final = np.array([1 << k for k in range(64)], dtype=np.uint64)
# The narrowest unsigned type of a value of so many bytes (1-7), for _to_bits.
_UNSIGNED: Final = ("", "u1", "<u2", "<u4", "<u4", "<u8", "<u8", "<u8")
_BITS_GAIN: Final = 0.95  # a block's values go in bits when that takes < 95 % of planes' bytes
_BITS_MEASURED: Final = 256  # from this many points a block is compressed both ways


class _Codecs(threading.local):
    """zstd contexts are not thread-safe; reusing one per thread saves ~8 µs per block."""

    def __init__(self) -> None:
        self.compressor = zstandard.ZstdCompressor(level=_LEVEL)
        self.decompressor = zstandard.ZstdDecompressor()
        # Format 2 frames go without zstd's 4-byte magic number: the format byte says what
        # follows, and 4 bytes are 4 % of a 96-point block.
        self.compressor_v2 = zstandard.ZstdCompressor(
            compression_params=zstandard.ZstdCompressionParameters.from_level(
                _LEVEL, format=zstandard.FORMAT_ZSTD1_MAGICLESS
            )
        )
        self.decompressor_v2 = zstandard.ZstdDecompressor(format=zstandard.FORMAT_ZSTD1_MAGICLESS)


_codecs = _Codecs()


class CorruptBlock(ValueError):
    """A stored block that this code cannot decode."""


@dataclass(frozen=True, slots=True)
class Encoded:
    """One block ready to store, with the summary columns the stores query without decoding."""

    day: int
    origin: int
    n: int
    t_last: int  # newest capture time of any point
    num_first: int | None  # first/last capture time of a numeric (DBL/INT) point
    num_last: int | None
    body: bytes
    # The newest version of each time alone (RM included), when the block holds older ones:
    # what get_last and delta_t reads decode, so they cost what a plain read of one version does.
    latest: bytes | None = None
    # Sums per UTC hour of the newest live numeric points (HOURS records; b"" for none),
    # None where a read must decode the block instead (see hour_summaries).
    hours: bytes | None = None


def day_of(time: int) -> int:
    """The UTC day (days since the epoch) that holds a capture time in ms."""
    return time // DAY_MS


def encode(day: int, origin: int, f: Frame) -> Encoded:
    """A block of points that all lie in `day` with this origin, sorted by (time, acq)."""
    if not len(f):
        raise ValueError("a block holds at least one point")
    if int(f.time[0]) < day * DAY_MS or int(f.time[-1]) >= (day + 1) * DAY_MS:
        raise ValueError("every point of a block lies within its day")
    if bool((f.origin != origin).any()):
        raise ValueError("every point of a block has its origin")
    ((_, e),) = encode_batch(np.zeros(len(f), dtype=np.int64), f)
    return e


def encode_batch(
    series_id: I64, f: Frame, *, latest: bool = True, fmt: int = FORMAT
) -> list[tuple[int, Encoded]]:
    """The blocks of many series at once: (series id, block) per (series, day, origin) run.

    `f` (with each point's series id beside it) must be sorted so that every block's points
    are contiguous and in (time, acq) order — by (series, origin, time, acq), say. The column
    work is done once over every point; only slicing and compression are per block, so a
    write touching hundreds of blocks does not pay numpy's per-call cost hundreds of times.
    `fmt`: the body format to write; the older ones for the migrations' ways down (format 1
    for 0011's, 2 for 0019's).
    """
    if fmt not in _FORMATS:
        raise ValueError(f"no block format {fmt}")
    n = len(f)
    if n == 0:
        return []
    day = f.time // DAY_MS
    first = np.ones(n, dtype=np.bool_)
    first[1:] = (
        (series_id[1:] != series_id[:-1]) | (day[1:] != day[:-1]) | (f.origin[1:] != f.origin[:-1])
    )
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], n)
    offset = f.time - day * DAY_MS
    step = np.empty(n, dtype=np.int64)
    step[1:] = np.diff(offset)
    step[starts] = 0
    if bool((step < 0).any()):
        raise ValueError("a block's points must be sorted by time")
    kind = f.type.astype(np.int8)
    numeric = (kind == TYPE_DBL) | (kind == TYPE_INT)
    lo_num = np.minimum.reduceat(np.where(numeric, f.time, _NO_TIME_HI), starts).tolist()
    hi_num = np.maximum.reduceat(np.where(numeric, f.time, _NO_TIME_LO), starts).tolist()
    texts = _block_texts(f, kind, starts, ends)
    newest = _latest_bodies(series_id, f, first, fmt) if latest else {}
    if fmt == LEGACY_FORMAT:
        bodies = _bodies_v1(f, offset, kind, starts, ends, texts)
    else:
        bodies = _bodies_v2(f, offset, kind, starts, ends, texts, fmt)
    summaries: list[bytes | None] = [None] * starts.shape[0]
    kept = keeps_summary(ends - starts)
    if latest and bool(kept.any()):  # a batch of hourly days alone: none to compute
        summed = hour_summaries(series_id, f, first)
        summaries = [h if k else None for k, h in zip(kept.tolist(), summed, strict=True)]
    out: list[tuple[int, Encoded]] = []
    for i, (lo, hi, sid, d, org, last, body) in enumerate(
        zip(
            starts.tolist(),
            ends.tolist(),
            series_id[starts].tolist(),
            day[starts].tolist(),
            f.origin[starts].tolist(),
            f.time[ends - 1].tolist(),
            bodies,
            strict=True,
        )
    ):
        has_num = lo_num[i] != _NO_TIME_HI
        out.append(
            (
                sid,
                Encoded(
                    day=d,
                    origin=org,
                    n=hi - lo,
                    t_last=last,
                    num_first=lo_num[i] if has_num else None,
                    num_last=hi_num[i] if has_num else None,
                    body=body,
                    latest=newest.get(i),
                    hours=summaries[i],
                ),
            )
        )
    return out


def _bodies_v1(
    f: Frame,
    offset: I64,
    kind: NDArray[np.int8],
    starts: I64,
    ends: I64,
    texts: list[list[str | None]] | None,
) -> list[bytes]:
    """Format 1 bodies: int32 time deltas, int64 acq deltas, int8 types, float64 planes."""
    n = len(f)
    dtime = np.empty(n, dtype=np.int64)
    dtime[1:] = np.diff(offset)
    dtime[starts] = offset[starts]
    dacq = np.empty(n, dtype="<i8")
    dacq[0] = f.acq[0]
    dacq[1:] = np.diff(f.acq)  # wraps like the cumsum that undoes it: exact for any int64
    dacq[starts] = f.acq[starts]
    value = np.ascontiguousarray(f.value, dtype="<f8").view(np.uint8).reshape(n, 8)
    compress = _codecs.compressor.compress
    # Whole columns as bytes once: slicing bytes per block is cheaper than a numpy call.
    time_b, acq_b, kind_b = dtime.astype("<i4").tobytes(), dacq.tobytes(), kind.tobytes()
    planes = [p.tobytes() for p in value.T]
    out: list[bytes] = []
    for i, (lo, hi) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        payload = [
            time_b[4 * lo : 4 * hi],
            acq_b[8 * lo : 8 * hi],
            kind_b[lo:hi],
            *[plane[lo:hi] for plane in planes],  # byte plane k of every value, k = 0..7
        ]
        if texts is not None and texts[i]:
            payload.append(orjson.dumps(texts[i]))
        out.append(_HEADER.pack(LEGACY_FORMAT, hi - lo) + compress(b"".join(payload)))
    return out


def _bodies_v2(
    f: Frame,
    offset: I64,
    kind: NDArray[np.int8],
    starts: I64,
    ends: I64,
    texts: list[list[str | None]] | None,
    fmt: int,
) -> list[bytes]:
    """Format 2 or 3 bodies (see the module's docstring)."""
    n = len(f)
    counts = ends - starts
    two = counts >= 2
    second = np.minimum(starts + 1, n - 1)
    # Times: second differences, zero at each block's first two points (in the header).
    dd = np.zeros(n, dtype=np.int64)
    dd[2:] = offset[2:] - 2 * offset[1:-1] + offset[:-2]
    dd[starts] = 0
    dd[second[two]] = 0
    t0 = offset[starts]
    t1 = np.where(two, offset[second] - t0, 0)
    acq_d = _first_differences(f.acq, starts)
    kind64 = kind.astype(np.int64)
    kind_d = _first_differences(kind64, starts)
    scale, scaled, exc = _scales(f.value, starts, counts)
    raw = scale == _RAW
    raw_pt = np.repeat(raw, counts)
    value_d = np.where(raw_pt, f.value.view(np.int64), _first_differences(scaled, starts))
    columns = [dd, acq_d, kind_d, value_d]
    widths = [_widths(d, starts) for d in columns]
    # Format 3: a scaled block's value differences packed in bits instead, when that takes
    # at least _BITS_GAIN fewer bytes: reading bits costs more than reading byte planes (a
    # year of 1-minute days, where zstd finds most of the same entropy in planes, took 1.2x as
    # long for 3 % fewer bytes), and zstd finds a smooth series' repeats in planes only. A
    # block of fewer than _BITS_MEASURED points is judged by its bytes before zstd, which
    # finds little in so few (a second compression a block cost 5 % of a served write);
    # larger ones are compressed both ways.
    choice = np.zeros(starts.shape[0], dtype=np.int8)  # 0 planes, 1 bits, 2 the smaller
    ref = bits = np.zeros(starts.shape[0], dtype=np.int64)
    by_bits = [b""] * starts.shape[0]
    if fmt == FORMAT:
        ref, bits, by_bits = _bits_v3(value_d, starts, counts, raw)
        fewer = (counts * bits + 7) // 8 < _BITS_GAIN * counts * widths[3]
        choice = np.where(counts < _BITS_MEASURED, fewer, 2).astype(np.int8)
        choice[raw] = 0
    kept = [*widths[:3], np.where(choice == 1, 0, widths[3])]  # no planes a block won't keep
    packed = [_to_planes(d, starts, counts, w) for d, w in zip(columns, kept, strict=True)]
    # Exceptions (non-finite and -0.0 values of scaled blocks) as (position, raw bits).
    exc_at = np.flatnonzero(exc & ~raw_pt)
    exc_block = np.searchsorted(starts, exc_at, side="right") - 1
    exc_n = np.bincount(exc_block, minlength=starts.shape[0])
    exc_lo = (np.cumsum(exc_n) - exc_n).tolist()
    exc_pos_b = (exc_at - starts[exc_block]).astype("<u4").tobytes()
    exc_bits_b = f.value[exc_at].astype("<f8").tobytes()
    head, rows = _HEADS[fmt]
    heads = np.zeros(starts.shape[0], dtype=rows)
    heads["n"] = counts
    heads["w_time"], heads["w_acq"], heads["w_type"], heads["w_value"] = widths
    heads["scale"] = scale
    heads["kind0"] = kind64[starts]
    heads["t0"], heads["t1"], heads["acq0"] = t0, t1, f.acq[starts]
    heads["value0"] = np.where(raw, 0, scaled[starts])
    heads["exceptions"] = exc_n
    head_b = heads.tobytes()
    size = head.size
    bits_head_b = b""
    if fmt == FORMAT:  # the same headers, for the values in bits
        heads["ref"], heads["bits"], heads["w_value"] = ref, bits, 0
        bits_head_b = heads.tobytes()
    compress = _codecs.compressor_v2.compress
    fmt_b = bytes([fmt])
    out: list[bytes] = []
    for i, (e_n, e_lo, how) in enumerate(zip(exc_n.tolist(), exc_lo, choice.tolist(), strict=True)):
        tail = []
        if e_n:
            tail.append(exc_pos_b[4 * e_lo : 4 * (e_lo + e_n)])
            tail.append(exc_bits_b[8 * e_lo : 8 * (e_lo + e_n)])
        if texts is not None and texts[i]:
            tail.append(orjson.dumps(texts[i]))
        cols = [packed[0][i], packed[1][i], packed[2][i]]
        own = slice(i * size, (i + 1) * size)
        if how == 1:
            body = compress(b"".join([bits_head_b[own], *cols, by_bits[i], *tail]))
        else:
            body = compress(b"".join([head_b[own], *cols, packed[3][i], *tail]))
        if how == 2:
            alt = compress(b"".join([bits_head_b[own], *cols, by_bits[i], *tail]))
            if len(alt) < len(body) * _BITS_GAIN:
                body = alt
        out.append(fmt_b + body)
    return out


def _bits_v3(
    d: I64, starts: I64, counts: I64, raw: NDArray[np.bool_]
) -> tuple[I64, I64, list[bytes]]:
    """Format 3's other way to store the value differences of scaled blocks: less the least
    of them, `ref`, each in as few bits as hold the largest (frame of reference). A
    voltage's wobble of ±3.7 V in tenths takes 7 bits, a power's differences of ±1.2 kW in
    watts 12, where byte planes took 8 and 16 and left zstd too few bytes to find their
    entropy in a 96-point day. A block's first difference is not read back (its first value
    is in the header), so it takes the one after it. Raw blocks: no bits, `ref` 0."""
    two = counts >= 2
    rest = d.copy()
    rest[starts[two]] = d[starts[two] + 1]
    ref = np.where(raw, 0, np.minimum.reduceat(rest, starts))
    u = (rest - np.repeat(ref, counts)).view(np.uint64)
    bits = np.searchsorted(_POW2, np.maximum.reduceat(u, starts), side="right")
    bits = np.where(raw, 0, bits).astype(np.int64)
    return ref, bits, _to_bits(u, starts, counts, bits)


def _to_bits(u: NDArray[np.uint64], starts: I64, counts: I64, bits: I64) -> list[bytes]:
    """Each block's values, `bits[b]` bits each, least significant bit first, the block's
    bytes starting on a byte. Blocks alike in bits and count are packed as one 2-D array:
    each value's bytes unpacked to bits, the bits it needs kept, the rows packed again (2.7x
    the speed of one bit stream over every block, which needs a mask per bit and padding)."""
    out = [b""] * starts.shape[0]
    for (w, c), sel in _groups(counts, bits).items():
        x = u[starts[sel][:, None] + np.arange(c)]
        wide = _UNSIGNED[(w + 7) // 8]
        as_bytes = x.astype(wide).view(np.uint8).reshape(len(sel), c, -1)
        kept = np.unpackbits(as_bytes, axis=2, bitorder="little")[:, :, :w]
        data = np.packbits(kept.reshape(len(sel), c * w), axis=1, bitorder="little")
        _deal(out, sel, data.tobytes(), data.shape[1])
    return out


def _deal(out: list[bytes], sel: NDArray[np.intp], data: bytes, size: int) -> None:
    """A group's packed rows, `size` bytes each, to the blocks `sel` in order."""
    for j, b in enumerate(sel.tolist()):
        out[b] = data[j * size : (j + 1) * size]


def _add_bits(
    d: I64 | None,
    raws: Sequence[bytes],
    lo: Sequence[int],
    starts: I64,
    counts: I64,
    bits: I64,
    ref: I64,
    total: int,
    same_n: bool,
) -> I64 | None:
    """`d` (a column of `total` values over every block; None: all zero) plus what _to_bits
    stored of each block at raws[b][lo[b]:] and the block's `ref`; None when all are zero.
    Blocks alike in bits and count are read as one 2-D array: each value is the 8 bytes from
    the one that holds its first bit (an unaligned uint64 view of the bytes), shifted and
    masked."""
    groups = _groups(counts, bits, same_n)
    flat = (bits == 0) & (ref != 0)  # no bits: every difference of the block is its `ref`
    if not groups and not bool(flat.any()):
        return d
    size = (counts * bits + 7) // 8
    joined = b"".join([r[a : a + n] for r, a, n in zip(raws, lo, size.tolist(), strict=True)])
    joined += bytes(8)
    words: NDArray[np.uint64] = np.ndarray(
        (len(joined) - 7,), dtype="<u8", buffer=joined, strides=(1,)
    )
    first = np.cumsum(size) - size
    # Every block in bits, none in planes: each group's values are set, not added.
    only = d is None and sum(len(sel) for sel in groups.values()) == starts.shape[0]
    if only and same_n and len(groups) > 1:  # blocks of one size: as one array, whatever bits
        c = int(counts[0])
        at = first[:, None] * 8 + np.arange(c, dtype=np.int64) * bits[:, None]
        v = words.take(at >> 3)
        v >>= (at & 7).astype(np.uint64)
        v &= (np.uint64(1) << bits.astype(np.uint64)[:, None]) - np.uint64(1)
        x: I64 = v.view(np.int64)
        x += ref[:, None]
        return x.reshape(-1)
    for (w, c), sel in groups.items():
        o = np.arange(c, dtype=np.int64) * w
        v = words.take(first[sel][:, None] + (o >> 3))  # take: 3x a fancy index, unaligned
        v >>= (o & 7).astype(np.uint64)
        v &= np.uint64((1 << w) - 1)
        x = v.view(np.int64)
        x += ref[sel][:, None]
        if only and len(sel) * c == total:  # every block, in order
            return x.reshape(-1)
        if d is None:
            d = np.empty(total, dtype=np.int64) if only else np.zeros(total, dtype=np.int64)
        if same_n:  # blocks of one size: rows of one 2-D array
            rows = d.reshape(starts.shape[0], c)
            if only:
                rows[sel] = x
            else:
                rows[sel] += x
        else:
            at = (starts[sel][:, None] + np.arange(c)).reshape(-1)
            if only:
                d[at] = x.reshape(-1)
            else:
                d[at] += x.reshape(-1)
    if bool(flat.any()):
        if d is None:
            d = np.zeros(total, dtype=np.int64)
        d += np.repeat(np.where(flat, ref, 0), counts)
    return d


def _first_differences(x: I64, starts: I64) -> I64:
    """x[i] - x[i-1], 0 at each block's first point; wraps like the running sum that undoes
    it, so it is exact for any int64."""
    d = np.empty(x.shape[0], dtype=np.int64)
    d[0] = 0
    np.subtract(x[1:], x[:-1], out=d[1:])
    d[starts] = 0
    return d


def _scales(
    value: F64, starts: I64, counts: I64
) -> tuple[NDArray[np.int64], I64, NDArray[np.bool_]]:
    """Per block the smallest k in 0..9 with value == rint(value * 10**k) / 10**k bit for bit
    for every finite value other than -0.0 (_RAW when none); per point the scaled integer
    (an exception takes the one before it in its block, so its difference is zero); per point
    whether it is an exception (non-finite or -0.0)."""
    exc = ~np.isfinite(value) | (value.view(np.uint64) == _NEG_ZERO)
    # Without -0.0 and NaN, float == is bit-for-bit equality.
    plain = np.where(exc, 0.0, value) if bool(exc.any()) else value
    scale = np.full(starts.shape[0], _RAW, dtype=np.int64)
    scaled = np.zeros(value.shape[0], dtype=np.int64)
    m = np.empty_like(plain)
    back = np.empty_like(plain)
    ok = np.empty(plain.shape[0], dtype=np.bool_)
    with np.errstate(over="ignore", invalid="ignore"):
        # Three values of each block first (its first, middle and last): the block's k is at
        # least each one's smallest, and none at all makes it float64 planes. The passes over
        # every value then start there (a power reading with 3 decimals: 1 pass, not 4).
        sample = plain[np.stack([starts, starts + counts // 2, starts + counts - 1])]
        least = np.full(sample.shape, _MAX_SCALE + 1)
        for k in range(_MAX_SCALE, -1, -1):
            p = 10.0**k
            least[np.rint(sample * p) / p == sample] = k
        lower = least.max(axis=0)
        pending = lower <= _MAX_SCALE
        for k in range(_MAX_SCALE + 1):
            if not bool((pending & (lower <= k)).any()):
                if not bool(pending.any()):
                    break
                continue
            p = 10.0**k
            np.multiply(plain, p, out=m)
            np.rint(m, out=m)
            np.divide(m, p, out=back)
            np.equal(back, plain, out=ok)
            done = pending & (lower <= k) & np.logical_and.reduceat(ok, starts)
            if bool(done.any()):
                # A larger k only makes m larger: a block whose m leave int64's exact floats
                # here stays float64 planes.
                pending &= ~done
                done &= np.maximum.reduceat(np.abs(m), starts) <= _EXACT
                scale[done] = k
                at = np.repeat(done, counts)
                scaled[at] = m[at].astype(np.int64)
                if not bool(pending.any()):
                    break
    if bool(exc.any()):  # never across a block's start: each block is encoded on its own
        keep = np.arange(value.shape[0])
        keep[exc] = 0
        keep[starts] = starts
        scaled = scaled[np.maximum.accumulate(keep)]
    return scale, scaled, exc


def _widths(d: I64, starts: I64) -> I64:
    """Per block the fewest bytes (0: all zero, 1, 2, 4 or 8) that hold every signed value
    of its run."""
    lo = np.minimum.reduceat(d, starts)
    hi = np.maximum.reduceat(d, starts)
    return np.select(
        [
            (lo == 0) & (hi == 0),
            (lo >= -(1 << 7)) & (hi < 1 << 7),
            (lo >= -(1 << 15)) & (hi < 1 << 15),
            (lo >= -(1 << 31)) & (hi < 1 << 31),
        ],
        [0, 1, 2, 4],
        8,
    ).astype(np.int64)


def _groups(
    counts: I64, widths: I64, same_n: bool | None = None
) -> dict[tuple[int, int], NDArray[np.intp]]:
    """The blocks (indices) of each (width, count) other than width 0: blocks alike are
    planed and unplaned as one 3-D array (a year of full days is one group). `same_n`:
    whether every count is alike, when the caller knows."""
    w0, c0 = int(widths[0]), int(counts[0])
    if widths.shape[0] == 1 or ((_alike(counts) if same_n is None else same_n) and _alike(widths)):
        return {(w0, c0): np.arange(widths.shape[0])} if w0 else {}
    keys, which = np.unique(widths << 32 | counts, return_inverse=True)
    return {
        (k >> 32, k & 0xFFFFFFFF): np.flatnonzero(which == g)
        for g, k in enumerate(keys.tolist())
        if k >> 32
    }


def _to_planes(d: I64, starts: I64, counts: I64, widths: I64) -> list[bytes]:
    """Each block's values in its width, byte plane by byte plane (plane p: byte p of every
    value, little-endian)."""
    out = [b""] * starts.shape[0]
    for (w, c), sel in _groups(counts, widths).items():
        at = starts[sel][:, None] + np.arange(c)
        planes = d[at].astype(f"<i{w}").view(np.uint8).reshape(len(sel), c, w)
        _deal(out, sel, np.ascontiguousarray(planes.transpose(0, 2, 1)).tobytes(), w * c)
    return out


def _interleave(planes: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """(blocks, w, count) byte planes as (blocks, count, w) bytes: one copy per plane, each
    along a whole plane (a transposed copy would step w bytes at a time)."""
    b, w, c = planes.shape
    if w == 1:
        return planes.reshape(b, c, 1)
    out = np.empty((b, c, w), dtype=np.uint8)
    for p in range(w):
        out[:, :, p] = planes[:, p, :]
    return out


def _from_planes(
    raws: Sequence[bytes],
    lo: Sequence[int],
    starts: I64,
    counts: I64,
    widths: I64,
    total: int,
    same_n: bool,
) -> I64 | None:
    """What _to_planes stored, each block's at raws[b][lo[b]:], as one int64 column over
    every block (`total` values); None when all zero."""
    groups = _groups(counts, widths, same_n)
    if not groups:
        return None
    out: I64 | None = None
    for (w, c), sel in groups.items():
        size = w * c
        joined = b"".join([raws[b][lo[b] : lo[b] + size] for b in sel.tolist()])
        planes = np.frombuffer(joined, dtype=np.uint8).reshape(len(sel), w, c)
        values = _interleave(planes).view(f"<i{w}").reshape(-1)
        if len(sel) * c == total:  # every block, in order
            return values.astype(np.int64)
        if out is None:
            out = np.zeros(total, dtype=np.int64)  # width 0 blocks stay zero
        if same_n:  # blocks of one size: rows of one 2-D array
            out.reshape(starts.shape[0], c)[sel] = values.reshape(len(sel), c)
        else:
            out[(starts[sel][:, None] + np.arange(c)).reshape(-1)] = values
    return out


def _latest_bodies(
    series_id: I64, f: Frame, first: NDArray[np.bool_], fmt: int
) -> dict[int, bytes]:
    """The `latest` body of each block (by index) that holds superseded versions."""
    newest = last_of_runs(series_id, f.origin, f.time)  # day follows from time
    if bool(newest.all()):
        return {}
    block = np.cumsum(first) - 1
    stale = np.unique(block[~newest])
    keep = newest & np.isin(block, stale)
    parts = encode_batch(series_id[keep], f.take(keep), latest=False, fmt=fmt)
    return {int(b): e.body for b, (_, e) in zip(stale.tolist(), parts, strict=True)}


_NO_TIME_HI: Final = np.iinfo(np.int64).max
_NO_TIME_LO: Final = np.iinfo(np.int64).min


# The summary of a block (its `hours` column; empty bytes when it holds no live numeric
# point): a layout byte, then fixed-size records, so a read turns the summaries of many
# blocks into columns with one np.frombuffer per layout. Blocks of at least _DENSE points an
# hour on average keep one record per UTC hour with points (a day's local midnight or any
# hour edge cuts them anywhere); sparser ones one record for the whole day, used when no
# bucket edge cuts the day, or 15-minute data would store more summary than points.
# Layout 1 (hours sharing one newest acq, at most 255 points an hour): the acq (int64) once,
#   then per hour its hour of the day, number of points and sum: 10 bytes an hour.
# Layout 2 (hours): per hour its hour of the day, number of points, sum and newest acq.
# Layout 3 (the whole day): number of points, sum (of the hour sums, in hour order), acq.
# Layouts 4 and 5 (written since migration 0016) are 1 and 2 with each hour's extremes (a
# chart's min/max per bucket): its min and max and where in the hour each is first reached.
# After the acq (layout 4) comes _X_HEAD: the values' scale k (value = m / 10**k bit for bit,
# as format 2 stores a block's values; _RAW: float64), the byte width of m - base and the
# unit of the times (minutes, seconds or ms into the hour, 1, 2 or 4 bytes), and the base;
# each record then ends with low, high (m - base, or float64) and their times. A day of
# 1-minute readings with 3 decimals spends 6 bytes an hour on them. Sparse days keep layout
# 3: a chart's bucket of whole hours cuts them, so a chart decodes them (they are small).
HOURS_ONE_ACQ: Final = np.dtype([("hour", "u1"), ("n", "u1"), ("total", "<f8")])
HOURS: Final = np.dtype([("hour", "u1"), ("n", "<u2"), ("total", "<f8"), ("acq", "<i8")])
DAY_SUM: Final = np.dtype([("n", "<u4"), ("total", "<f8"), ("acq", "<i8")])
_DAY_ROW: Final = np.dtype([("layout", "u1"), *DAY_SUM.descr])
_X_HEAD: Final = np.dtype([("scale", "u1"), ("width", "u1"), ("unit", "u1"), ("base", "<i8")])
_X_UNITS: Final = (60_000, 1_000, 1)  # ms per unit of the times: minutes, seconds, ms
_X_UNIT_TYPES: Final = ("u1", "<u2", "<u4")
_ONE_ACQ: Final = b"\x01"
_PER_HOUR: Final = b"\x02"
_WHOLE_DAY: Final = b"\x03"
_ONE_ACQ_X: Final = b"\x04"
_PER_HOUR_X: Final = b"\x05"
_LAYOUTS: Final = _ONE_ACQ + _PER_HOUR + _WHOLE_DAY + _ONE_ACQ_X + _PER_HOUR_X
_HOUR_MS: Final = 3_600_000
_HOUR_N_MAX: Final = 2**16 - 1
_DENSE: Final = 30  # points an hour (2-minute data) from which hours are kept
# Points a block holds (every version) from which it has a summary at all: a day of hourly
# readings (a weather grid) would spend 21 bytes — nearly a byte a point — on its layout 3
# record, and a read decodes its 24 points for little more than it reads the record (it
# decodes blocks without a summary, as those with a non-finite value). 15-minute days (96
# points) keep theirs: a decade of them summed in local months reads 3,650 records.
_SUMMED: Final = 48


def keeps_summary(points: I64) -> NDArray[np.bool_]:
    """Which blocks of `points` points each (every version: the `n` column) keep an hour
    summary (_SUMMED); the others keep none, and a read decodes them. What a write and a
    migration that computes the summaries again both apply."""
    return points >= _SUMMED


def _x_dtype(base: np.dtype[np.void], width: int, unit: int) -> np.dtype[np.void]:
    """An hour record of layout 4 or 5: the sums' record, then the extremes."""
    v = "<f8" if width == 8 else {1: "u1", 2: "<u2", 4: "<u4"}[width]
    t = _X_UNIT_TYPES[unit]
    return np.dtype([*base.descr, ("low", v), ("high", v), ("t_low", t), ("t_high", t)])


def _x_scales(low: F64, high: F64, starts: I64) -> tuple[I64, I64, I64, I64, I64]:
    """How each block's extremes (hours grouped by `starts`) are stored: per block the scale
    k (the smallest with np.true_divide(m, 10.0**k) giving each value back bit for bit, what
    a read computes; _RAW: float64), the byte width of m - base (1, 2 or 4; 8: float64) and
    the base; per hour m - base of the low and the high (the raw bits for float64)."""
    nb = starts.shape[0]
    counts = np.diff(np.append(starts, low.shape[0]))
    scale = np.full(nb, _RAW, dtype=np.int64)
    m_low = np.zeros(low.shape[0], dtype=np.int64)
    m_high = np.zeros(low.shape[0], dtype=np.int64)
    pending = np.ones(nb, dtype=np.bool_)
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(_MAX_SCALE + 1):
            p = 10.0**k
            ml, mh = np.rint(low * p), np.rint(high * p)
            fits = (np.abs(ml) <= _EXACT) & (np.abs(mh) <= _EXACT)
            li = np.where(fits, ml, 0).astype(np.int64)
            hi = np.where(fits, mh, 0).astype(np.int64)
            ok = fits & (np.true_divide(li, p).view(np.int64) == low.view(np.int64))
            ok &= np.true_divide(hi, p).view(np.int64) == high.view(np.int64)
            done = pending & np.logical_and.reduceat(ok, starts)
            if bool(done.any()):
                at = np.repeat(done, counts)
                m_low[at], m_high[at] = li[at], hi[at]
                scale[done] = k
                pending &= ~done
                if not bool(pending.any()):
                    break
    scaled = scale != _RAW
    base = np.where(scaled, np.minimum.reduceat(m_low, starts), 0)
    span = np.maximum.reduceat(m_high, starts) - base
    width = np.select([span < 1 << 8, span < 1 << 16, span < 1 << 32], [1, 2, 4], 8)
    width = np.where(scaled, width, 8)
    scale = np.where(width == 8, _RAW, scale)
    raw = np.repeat(width == 8, counts)
    b = np.repeat(base, counts)
    d_low = np.where(raw, low.view(np.int64), m_low - b)
    d_high = np.where(raw, high.view(np.int64), m_high - b)
    return scale, width, np.where(width == 8, 0, base), d_low, d_high


def hour_summaries(
    series_id: I64, f: Frame, first: NDArray[np.bool_], *, extremes: bool = True
) -> list[bytes | None]:
    """Each block's summary (`first`: where a block starts in `f`, as encode_batch sorts
    it): of the newest version of each time, DBL or INT with a finite value — what a read
    without as_of aggregates (pipeline.hour_sums, HourSums) — and (`extremes`, layouts 4
    and 5) each hour's min and max with the first time each is reached (a chart's min/max per
    bucket, reduce.minmax_pieces). None for a block with an hour of more points than a record
    counts, and (`extremes`) for one whose newest numeric versions include a non-finite
    value, which a chart draws or counts (it is decoded instead)."""
    newest = last_of_runs(series_id, f.origin, f.time)
    block = np.cumsum(first) - 1
    numeric = newest & ((f.type == TYPE_DBL) | (f.type == TYPE_INT))
    finite = np.isfinite(f.value)
    live = numeric & finite
    nblocks = int(block[-1]) + 1
    out: list[bytes | None] = [b""] * nblocks
    decode = np.zeros(nblocks, dtype=np.bool_)
    if extremes and not bool(finite[numeric].all()):
        decode[block[numeric & ~finite]] = True
    at = np.flatnonzero(live)
    if not at.shape[0]:
        return [None if u else h for u, h in zip(decode.tolist(), out, strict=True)]
    h = hour_sums(f.time[at], block[at], f.value[at], f.acq[at])
    starts = np.flatnonzero(np.diff(h.origin, prepend=-1))  # each summed block's first hour
    which = h.origin[starts].tolist()
    n_max = np.maximum.reduceat(h.n, starts)
    acq_max = np.maximum.reduceat(h.acq, starts)
    one_acq = (acq_max == np.minimum.reduceat(h.acq, starts)) & (n_max <= 255)
    hours_n = np.diff(np.append(starts, len(h)))
    points = np.add.reduceat(h.n, starts)
    dense = points >= _DENSE * hours_n
    day = np.empty(starts.shape[0], dtype=DAY_SUM)
    # The day's sum as pipeline._hours_reduce adds up a day's hours: reduceat, in hour order.
    with np.errstate(over="ignore", invalid="ignore"):  # inf, as a read would add them
        day["n"], day["total"], day["acq"] = points, np.add.reduceat(h.total, starts), acq_max
    short_b = full_b = b""
    hour = (h.hour % DAY_MS) // _HOUR_MS
    if bool(dense.any()) and not extremes:
        short = np.empty(len(h), dtype=HOURS_ONE_ACQ)
        short["hour"], short["n"], short["total"] = hour, np.minimum(h.n, 255), h.total
        full = np.empty(len(h), dtype=HOURS)
        full["hour"], full["n"] = hour, np.minimum(h.n, _HOUR_N_MAX)
        full["total"], full["acq"] = h.total, h.acq
        short_b, full_b = short.tobytes(), full.tobytes()
    ext: tuple[F64, I64, F64, I64] | None = None
    if extremes and bool(dense.any()):
        # Each hour's extremes: the points come in (block, time) order, as hour_sums groups them.
        t_at = f.time[at]
        hour_of = t_at - t_at % _HOUR_MS
        edge = np.ones(at.shape[0], dtype=np.bool_)
        edge[1:] = (hour_of[1:] != hour_of[:-1]) | (block[at][1:] != block[at][:-1])
        v_at = f.value[at]
        lo, i_lo, hi, i_hi = segment_extremes(v_at, v_at, np.flatnonzero(edge))
        ext = (lo, t_at[i_lo] - h.hour, hi, t_at[i_hi] - h.hour)
    with_ext: dict[int, bytes] = {}
    if ext is not None:
        keep = np.flatnonzero(dense & (n_max <= _HOUR_N_MAX))
        with_ext = _with_extremes(h, hour, ext, starts, keep, one_acq)
    day_b = day.tobytes()
    acq_b = h.acq[starts].astype("<i8").tobytes()
    bounds = np.append(starts, len(h)).tolist()
    flags = zip(
        which, dense.tolist(), one_acq.tolist(), (n_max > _HOUR_N_MAX).tolist(), strict=True
    )
    for i, (b, many, one, bad) in enumerate(flags):
        lo_i, hi_i = bounds[i], bounds[i + 1]
        if not many:
            out[b] = _WHOLE_DAY + day_b[i * DAY_SUM.itemsize : (i + 1) * DAY_SUM.itemsize]
        elif bad:
            out[b] = None
        elif ext is not None:
            out[b] = with_ext[i]
        elif one:
            size = HOURS_ONE_ACQ.itemsize
            out[b] = _ONE_ACQ + acq_b[8 * i : 8 * i + 8] + short_b[lo_i * size : hi_i * size]
        else:
            out[b] = _PER_HOUR + full_b[lo_i * HOURS.itemsize : hi_i * HOURS.itemsize]
    return [None if u else h for u, h in zip(decode.tolist(), out, strict=True)]


def _with_extremes(
    h: HourSums,
    hour: I64,
    ext: tuple[F64, I64, F64, I64],
    starts: I64,
    blocks: I64,
    one: NDArray[np.bool_],
) -> dict[int, bytes]:
    """The layout 4 (`one`: one acq) or 5 summaries of the summed blocks `blocks` (indices
    into `starts`, each block's first hour in `h`), by block index: the records of alike
    blocks (layout, value width, time unit) built as one array, then sliced per block."""
    low, t_low, high, t_high = ext
    counts = np.diff(np.append(starts, len(h)))
    scale, width, base, d_low, d_high = _x_scales(low, high, starts)
    unit_pt = np.where(
        (t_low % 60_000 == 0) & (t_high % 60_000 == 0),
        0,
        np.where((t_low % 1_000 == 0) & (t_high % 1_000 == 0), 1, 2),
    )
    unit = np.maximum.reduceat(unit_pt, starts)
    heads = np.zeros(starts.shape[0], dtype=_X_HEAD)
    heads["scale"], heads["width"], heads["unit"], heads["base"] = scale, width, unit, base
    head_b = heads.tobytes()
    acq_b = h.acq[starts].astype("<i8").tobytes()
    out: dict[int, bytes] = {}
    kind = one.astype(np.int64) * 256 + width * 16 + unit
    for k in np.unique(kind[blocks]).tolist():
        sel = blocks[kind[blocks] == k]
        is_one, w, u = bool(k // 256), (k % 256) // 16, k % 16
        rows = np.concatenate([np.arange(starts[i], starts[i] + counts[i]) for i in sel.tolist()])
        rec = np.empty(rows.shape[0], dtype=_x_dtype(HOURS_ONE_ACQ if is_one else HOURS, w, u))
        rec["hour"], rec["total"] = hour[rows], h.total[rows]
        rec["n"] = h.n[rows]
        if not is_one:
            rec["acq"] = h.acq[rows]
        if w == 8:
            rec["low"], rec["high"] = d_low[rows].view(np.float64), d_high[rows].view(np.float64)
        else:
            rec["low"], rec["high"] = d_low[rows], d_high[rows]
        rec["t_low"], rec["t_high"] = t_low[rows] // _X_UNITS[u], t_high[rows] // _X_UNITS[u]
        rec_b, size, hs = rec.tobytes(), rec.dtype.itemsize, _X_HEAD.itemsize
        at = 0
        for i in sel.tolist():
            c = int(counts[i])
            body = head_b[i * hs : (i + 1) * hs] + rec_b[at * size : (at + c) * size]
            at += c
            out[i] = (_ONE_ACQ_X + acq_b[8 * i : 8 * i + 8] if is_one else _PER_HOUR_X) + body
    return out


# (hour or day start ms, origin, n, total, acq, min, time of min, max, time of max)
Columns = tuple[I64, I64, I64, F64, I64, F64, I64, F64, I64]


def is_whole_day(summary: bytes) -> bool:
    """Whether a (non-empty) summary is one record for the whole day (layout 3)."""
    return summary[:1] == _WHOLE_DAY


def read_hour_summaries(rows: Sequence[tuple[int, int, bytes]]) -> tuple[Columns, Columns]:
    """The hour records and the whole-day records of (day, origin, summary) rows sorted by
    (day, origin), as columns: one join and np.frombuffer per layout (and, for layouts 4
    and 5, per way their extremes are stored). Each origin's records ascend in time within
    each layout. Records without extremes (layouts 1-3) have NaN for them."""
    layouts = bytes([h[0] for _, _, h in rows])
    if layouts.translate(None, _LAYOUTS):
        raise CorruptBlock("block summary of an unknown layout")
    parts: list[Columns] = []
    mixed = len(set(layouts)) > 1
    for layout, dtype, skip in ((_ONE_ACQ, HOURS_ONE_ACQ, 9), (_PER_HOUR, HOURS, 1)):
        if layout not in layouts:
            continue
        mine = [r for r in rows if r[2][:1] == layout] if mixed else rows
        rec, counts = _records(mine, dtype, skip)
        acq = np.repeat(_acqs(mine), counts) if layout == _ONE_ACQ else rec["acq"].astype(np.int64)
        at = _hour_starts(mine, rec, counts)
        nan = np.full(at.shape[0], np.nan)
        parts.append(
            (at, _origins(mine, counts), rec["n"].astype(np.int64),
             rec["total"].astype(np.float64), acq, nan, at, nan, at)
        )  # fmt: skip
    for layout, base, skip in ((_ONE_ACQ_X, HOURS_ONE_ACQ, 9), (_PER_HOUR_X, HOURS, 1)):
        if layout in layouts:
            mine = [r for r in rows if r[2][:1] == layout] if mixed else rows
            parts += _extreme_parts(mine, layout, base, skip)
    whole = [r for r in rows if r[2][:1] == _WHOLE_DAY] if mixed else rows
    if _WHOLE_DAY not in layouts:
        whole = []
    # One record each, of one size: the rows joined whole, the layout byte a field.
    joined = b"".join([h for _, _, h in whole])
    if len(joined) != len(whole) * (1 + DAY_SUM.itemsize):
        raise CorruptBlock("block summary of a partial record")
    rec = np.frombuffer(joined, dtype=_DAY_ROW)
    at = np.array([r[0] for r in whole], dtype=np.int64) * DAY_MS
    nan = np.full(at.shape[0], np.nan)
    days_cols: Columns = (
        at,
        np.array([r[1] for r in whole], dtype=np.int64),
        rec["n"].astype(np.int64),
        rec["total"].astype(np.float64),
        rec["acq"].astype(np.int64),
        nan,
        at,
        nan,
        at,
    )
    return _joined(parts), days_cols


def _acqs(rows: Sequence[tuple[int, int, bytes]]) -> I64:
    """The acq after the layout byte of each row (layouts 1 and 4)."""
    return np.frombuffer(b"".join([h[1:9] for _, _, h in rows]), dtype="<i8").astype(np.int64)


def _origins(rows: Sequence[tuple[int, int, bytes]], counts: I64) -> I64:
    return np.repeat(np.array([r[1] for r in rows], dtype=np.int64), counts)


def _hour_starts(rows: Sequence[tuple[int, int, bytes]], rec: NDArray[np.void], counts: I64) -> I64:
    days = np.repeat(np.array([r[0] for r in rows], dtype=np.int64), counts)
    return days * DAY_MS + rec["hour"].astype(np.int64) * _HOUR_MS


def _extreme_parts(
    rows: Sequence[tuple[int, int, bytes]], layout: bytes, base: np.dtype[np.void], skip: int
) -> list[Columns]:
    """Columns of layout 4 or 5 rows: one np.frombuffer per (value width, time unit)."""
    size = _X_HEAD.itemsize
    heads = np.frombuffer(b"".join([h[skip : skip + size] for _, _, h in rows]), dtype=_X_HEAD)
    if heads.shape[0] != len(rows):
        raise CorruptBlock("block summary of a partial record")
    kinds = heads["width"].astype(np.int64) * 8 + heads["unit"].astype(np.int64)
    out: list[Columns] = []
    for kind in np.unique(kinds).tolist():
        width, unit = kind // 8, kind % 8
        if width not in (1, 2, 4, 8) or unit >= len(_X_UNITS):
            raise CorruptBlock("block summary of an unknown extremes encoding")
        sel = np.flatnonzero(kinds == kind)
        mine = [rows[i] for i in sel.tolist()] if sel.shape[0] < len(rows) else rows
        head = heads[sel]
        rec, counts = _records(mine, _x_dtype(base, width, unit), skip + size)
        acq = np.repeat(_acqs(mine), counts) if layout == _ONE_ACQ_X else rec["acq"]
        at = _hour_starts(mine, rec, counts)
        scale = head["scale"].astype(np.int64)
        if width == 8:
            low, high = rec["low"].astype(np.float64), rec["high"].astype(np.float64)
        else:
            if bool((scale > _MAX_SCALE).any()):
                raise CorruptBlock("block summary of an unknown scale")
            b = np.repeat(head["base"].astype(np.int64), counts)
            p = np.repeat(10.0**scale, counts)
            # What the encoder checked gives each value back bit for bit: int64 / 10.0**k.
            low = np.true_divide(rec["low"].astype(np.int64) + b, p)
            high = np.true_divide(rec["high"].astype(np.int64) + b, p)
        ms = _X_UNITS[unit]
        out.append(
            (at, _origins(mine, counts), rec["n"].astype(np.int64),
             rec["total"].astype(np.float64), acq.astype(np.int64), low,
             at + rec["t_low"].astype(np.int64) * ms, high,
             at + rec["t_high"].astype(np.int64) * ms)
        )  # fmt: skip
    return out


def _joined(parts: list[Columns]) -> Columns:
    """Columns of several layouts as one, sorted by (origin, time)."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        z, nan = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        return (z, z, z, nan, z, nan, z, nan, z)
    at, origin, n, total, acq, low, t_low, high, t_high = (
        np.concatenate(c) for c in zip(*parts, strict=True)
    )
    order = np.lexsort((at, origin))
    return (
        at[order],
        origin[order],
        n[order],
        total[order],
        acq[order],
        low[order],
        t_low[order],
        high[order],
        t_high[order],
    )


def _records(
    rows: Sequence[tuple[int, int, bytes]], dtype: np.dtype[np.void], skip: int
) -> tuple[NDArray[np.void], I64]:
    """The fixed-size records after `skip` bytes of each row's summary, and their count."""
    size = dtype.itemsize
    counts = np.array([(len(h) - skip) // size for _, _, h in rows], dtype=np.int64)
    if any((len(h) - skip) % size for _, _, h in rows):
        raise CorruptBlock("block summary of a partial record")
    return np.frombuffer(b"".join([h[skip:] for _, _, h in rows]), dtype=dtype), counts


def _block_texts(
    f: Frame, kind: NDArray[np.int8], starts: I64, ends: I64
) -> list[list[str | None]] | None:
    """The strings of each block's STR points, in order; None when there are none at all."""
    where = np.flatnonzero(kind == TYPE_STR)
    if not where.shape[0]:
        return None
    if f.text is None:
        raise ValueError("STR points need their text")
    block = np.searchsorted(starts, where, side="right") - 1
    out: list[list[str | None]] = [[] for _ in range(starts.shape[0])]
    for b, i in zip(block.tolist(), where.tolist(), strict=True):
        out[b].append(f.text[i])
    return out


def decode(day: int, origin: int, body: bytes) -> Frame:
    """The points of a stored block, sorted by (time, acq)."""
    f, _ = decode_batch([(day, origin, body)])
    return f


def format_of(body: bytes) -> int:
    """The format byte of a stored block (migration 0011 re-encodes by it)."""
    if not body:
        raise CorruptBlock("empty block")
    return body[0]


def decode_batch(rows: Sequence[tuple[int, int, bytes]]) -> tuple[Frame, I64]:
    """The points of many stored blocks, one after the other in the rows' order, with each
    block's number of points. Per block only the header and decompression run in Python."""
    if not rows:
        return Frame.empty(), np.empty(0, dtype=np.int64)
    fmts = [body[:1] for _, _, body in rows]
    kinds = set(fmts)
    for x in kinds:
        if not x or x[0] not in _FORMATS:
            raise CorruptBlock(f"block format {x[0] if x else None} is not 3, 2 or 1")
    if len(kinds) == 1:
        return _decode(rows, fmts[0][0])
    # Formats mixed (blocks written before a format change, or a database part-way through a
    # migration): each format's blocks decoded at once, then put back in the rows' order.
    parts: list[Frame] = []
    ns = np.zeros(len(rows), dtype=np.int64)
    at = np.zeros(len(rows), dtype=np.int64)  # where each row's points lie in concat(parts)
    done = 0
    for x in sorted(kinds):
        which = [i for i, y in enumerate(fmts) if y == x]
        f, n = _decode([rows[i] for i in which], x[0])
        ns[which] = n
        at[which] = done + np.cumsum(n) - n
        done += len(f)
        parts.append(f)
    order = np.repeat(at - (np.cumsum(ns) - ns), ns) + np.arange(int(ns.sum()))
    return concat(parts).take(order), ns


def _decode(rows: Sequence[tuple[int, int, bytes]], fmt: int) -> tuple[Frame, I64]:
    return _decode_v1(rows) if fmt == LEGACY_FORMAT else _decode_v2(rows, fmt)


def _decompress(body: bytes, fmt: int) -> tuple[int, bytes]:
    try:
        got, n = _HEADER.unpack_from(body)
        if got != fmt:
            raise CorruptBlock(f"block format {got} is not {fmt}")
        raw = _codecs.decompressor.decompress(memoryview(body)[_HEADER.size :])
    except (struct.error, zstandard.ZstdError) as exc:
        raise CorruptBlock(str(exc)) from exc
    if n < 1:
        raise CorruptBlock("block without points")
    return n, raw


def _decode_v2(rows: Sequence[tuple[int, int, bytes]], fmt: int) -> tuple[Frame, I64]:
    """Blocks of format 2 or 3 (`fmt`)."""
    raws: list[bytes] = []
    decompress = _codecs.decompressor_v2.decompress
    head, _ = _HEADS[fmt]
    try:
        for _, _, body in rows:
            if body[:1] != bytes([fmt]):
                raise CorruptBlock(f"block format {body[:1]!r} is not {fmt}")
            raws.append(decompress(memoryview(body)[1:]))
    except zstandard.ZstdError as exc:
        raise CorruptBlock(str(exc)) from exc
    try:
        heads = [head.unpack_from(r) for r in raws]
    except struct.error as exc:
        raise CorruptBlock(str(exc)) from exc
    hh = np.array(heads, dtype=np.int64)
    ns, h = hh[:, 0], hh[:, 1:]
    scales = {head[5] for head in heads}
    raw_block = h[:, 4] == _RAW
    widths = {w for head in heads for w in head[1:5]}
    # Format 3: the bits of the values' packed differences (_bits_v3), beside their planes.
    bits = h[:, 11] if fmt == FORMAT else np.zeros(len(rows), dtype=np.int64)
    if not widths <= _WIDTHS or not scales <= _SCALES or bool((bits > _MAX_BITS).any()):
        raise CorruptBlock("block with an unknown column width or scale")
    counts = ns.tolist()
    if min(counts) < 1:
        raise CorruptBlock("block without points")
    same_n = len(counts) == 1 or min(counts) == max(counts)
    # Where each section of each block starts: time, acq, type, value, exceptions' positions
    # and bits, then the strings.
    sizes = np.concatenate([h[:, :4] * ns[:, None], h[:, 10, None] * [4, 8]], axis=1)
    sizes[:, 3] += (bits * ns + 7) // 8
    at = head.size + np.concatenate([np.zeros((len(rows), 1), np.int64), sizes.cumsum(1)], 1)
    lens = [len(r) for r in raws]
    if bool((np.array(lens) < at[:, -1]).any()):
        raise CorruptBlock("block shorter than its point count")
    cols = at.T.tolist()
    texts = [r[e:] if e < k else None for r, e, k in zip(raws, cols[6], lens, strict=True)]
    total = int(ns.sum())
    starts = np.cumsum(ns) - ns
    days = np.array([r[0] for r in rows], dtype=np.int64)

    def column(c: int, widths: I64) -> I64 | None:
        return _from_planes(raws, cols[c], starts, ns, widths, total, same_n)

    wt, wa, wk, wv, scale = (h[:, c] for c in range(5))
    # Times: the steps from their second differences, then the times from the steps.
    base = days * DAY_MS + h[:, 6]
    dd = column(0, wt)
    if dd is None and same_n:  # regular steps, blocks of one size: first + k * step
        time = (base[:, None] + h[:, 7, None] * np.arange(counts[0])).reshape(-1)
    elif dd is None:
        local = np.arange(total) - np.repeat(starts, ns)
        time = np.repeat(base, ns) + np.repeat(h[:, 7], ns) * local
    else:
        two = ns >= 2
        at = np.concatenate([starts, starts[two] + 1])
        target = np.concatenate([np.zeros(len(rows), dtype=np.int64), h[two, 7]])
        order = np.argsort(at, kind="stable")
        time = _running(_running(dd, at[order], target[order]), starts, base)
    acq = _running(column(1, wa), starts, h[:, 8], ns, same_n)
    kind = _running(column(2, wk), starts, h[:, 5], ns, same_n)
    d = column(3, wv)
    if fmt == FORMAT:
        after = (np.array(cols[3]) + wv * ns).tolist()
        d = _add_bits(d, raws, after, starts, ns, bits, h[:, 12], total, same_n)
    if scales == {_RAW} and d is not None:
        value: F64 = d.view(np.float64)
    else:
        m = _running(d, starts, h[:, 9], ns, same_n)
        # int64 -> float64 is exact below 2**53, then one rounding: what the encoder checked
        if len(scales) == 1:
            value = np.true_divide(m, 10.0 ** int(scale[0]), dtype=np.float64)
        else:
            value = np.true_divide(m, np.repeat(10.0 ** np.where(raw_block, 0, scale), ns))
        if _RAW in scales and d is not None:
            raw_pt = np.repeat(raw_block, ns)
            value[raw_pt] = d[raw_pt].view(np.float64)
        e_ns = h[:, 10]
        if bool(e_ns.any()):
            lo4, lo8, hi8 = cols[4], cols[5], cols[6]
            pos = np.frombuffer(
                b"".join([r[a:b] for r, a, b in zip(raws, lo4, lo8, strict=True)]), dtype="<u4"
            ).astype(np.int64)
            if bool((pos >= np.repeat(ns, e_ns)).any()):
                raise CorruptBlock("value exception beyond the block")
            value[pos + np.repeat(starts, e_ns)] = np.frombuffer(
                b"".join([r[a:b] for r, a, b in zip(raws, lo8, hi8, strict=True)]), dtype="<f8"
            )
    origin = np.repeat(np.array([r[1] for r in rows], dtype=np.int64), ns)
    kind8 = kind.astype(np.int8)
    text = _texts(kind8, total, texts) if any(t is not None for t in texts) else None
    return Frame(time, origin, acq, kind8, value, text), ns


def _running(
    d: I64 | None, at: I64, value: I64, counts: I64 | None = None, same_n: bool = False
) -> I64:
    """The running sum of `d`, restarted at each position of `at` (ascending, from 0) from
    the matching `value`: one cumsum over every block at once, each segment then shifted by
    what it lacks. int64 wraps on both sides, so it is exact for any int64. `d` None (all
    zero): each value repeated over its segment (`counts`)."""
    if d is None:
        assert counts is not None
        return np.repeat(value, counts)
    x = np.cumsum(d)
    if same_n:  # blocks of one size (`at` their starts): shifted as rows
        x.reshape(at.shape[0], -1)[:] += (value - x[at])[:, None]
        return x
    seg = np.diff(np.append(at, d.shape[0]))
    x += np.repeat(value - x[at], seg)
    return x


def _alike(counts: I64) -> bool:
    return bool((counts == counts[0]).all())


def _texts(
    kind: NDArray[np.int8], total: int, texts: Sequence[bytes | None]
) -> tuple[str | None, ...]:
    """The STR points' strings, each block's JSON list in turn, at the STR points."""
    cells: list[str | None] = [None] * total
    str_at = np.flatnonzero(kind == TYPE_STR).tolist()
    k = 0
    for t in texts:
        if t is not None:
            strings: list[str | None] = orjson.loads(t)
            if k + len(strings) > len(str_at):
                raise CorruptBlock("STR points and their strings differ in number")
            for s in strings:
                cells[str_at[k]] = s
                k += 1
    if k != len(str_at):
        raise CorruptBlock("STR points and their strings differ in number")
    return tuple(cells)


def _decode_v1(rows: Sequence[tuple[int, int, bytes]]) -> tuple[Frame, I64]:
    raws: list[bytes] = []
    counts: list[int] = []
    for _, _, body in rows:
        n, raw = _decompress(body, LEGACY_FORMAT)
        if len(raw) < 21 * n:
            raise CorruptBlock("block shorter than its point count")
        raws.append(raw)
        counts.append(n)
    if not raws:
        return Frame.empty(), np.empty(0, dtype=np.int64)
    ns = np.array(counts, dtype=np.int64)
    total = int(ns.sum())
    starts = np.cumsum(ns) - ns
    views = [memoryview(r) for r in raws]
    # Each block's columns are deltas from its own start: one running sum over every block
    # at once, after the first delta of each block absorbs what the blocks before it summed to.
    days = np.array([r[0] for r in rows], dtype=np.int64)
    time: I64 = np.frombuffer(
        b"".join([v[: 4 * n] for v, n in zip(views, counts, strict=True)]), "<i4"
    ).astype(np.int64)
    time[starts] += _restart(time, starts, days * DAY_MS)
    np.cumsum(time, out=time)
    acq: I64 = np.frombuffer(
        b"".join([v[4 * n : 12 * n] for v, n in zip(views, counts, strict=True)]), "<i8"
    ).astype(np.int64)
    acq[starts] += _restart(acq, starts, np.zeros(len(counts), dtype=np.int64))
    np.cumsum(acq, out=acq)  # wraps like the encoder's diff: exact for any int64
    kind = np.frombuffer(
        b"".join([v[12 * n : 13 * n] for v, n in zip(views, counts, strict=True)]), np.int8
    ).copy()
    planes = [
        np.frombuffer(r, np.uint8, 8 * n, 13 * n).reshape(8, n).T
        for r, n in zip(raws, counts, strict=True)
    ]
    joined = np.ascontiguousarray(np.concatenate(planes))  # one block: may keep the view's order
    value: F64 = joined.view("<f8").reshape(total).astype(np.float64, copy=False)
    origin = np.repeat(np.array([r[1] for r in rows], dtype=np.int64), ns)
    text: tuple[str | None, ...] | None = None
    if any(len(r) > 21 * n for r, n in zip(raws, counts, strict=True)):
        text = _texts(
            kind,
            total,
            [r[21 * n :] if len(r) > 21 * n else None for r, n in zip(raws, counts, strict=True)],
        )
    return Frame(time, origin, acq, kind, value, text), ns


def _restart(deltas: I64, starts: I64, base: I64) -> I64:
    """What to add to each block's first delta so that one running sum over all blocks gives
    `base` + the block's own running sum: its base minus where the block before ended."""
    ends = base + np.add.reduceat(deltas, starts)  # each block's last value
    out = base.copy()
    out[1:] -= ends[:-1]
    return out
