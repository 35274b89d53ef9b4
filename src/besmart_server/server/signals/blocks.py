"""Day blocks: every version of one series' points of one origin within one UTC day, as one
compressed row.

One row per point made reads and writes cost a Python object (and 38 B on SQLite, 158 B on
PostgreSQL) per point; the benchmark's profiles showed that per-row overhead as 85-88 % of a
read. A block holds a day's points of one (series, origin), every version, sorted by
(time, acq), as columns:

- time: int32 offsets from the day's start, delta-encoded (a regular series is one repeated
  number, which the compressor folds to almost nothing);
- acq: int64, delta-encoded (one write stamps all its points alike);
- type: int8;
- value: float64, byte-shuffled (the sign/exponent bytes of neighbouring readings are alike,
  so grouping byte planes gives the compressor long runs — the trick of Blosc's shuffle filter);
- text: the STR points' strings as one JSON list, in row order, when there are any.

The columns are concatenated and compressed with zstd (level 3): on the benchmark's meters it
stores what zlib -6 does (6.1 B/point) and decodes 4-5x faster (8.6 vs 40 ms for 700,800
points), which is most of a long read. The body starts with a format byte, so the encoding
can change without a schema change.
"""

from __future__ import annotations

import itertools
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import orjson
import zstandard

from besmart_server.server.signals.pipeline import (
    F64,
    I64,
    TYPE_DBL,
    TYPE_INT,
    TYPE_STR,
    Frame,
)

DAY_MS: Final = 86_400_000
FORMAT: Final = 1
_HEADER: Final = struct.Struct("<BI")  # format, number of points
_LEVEL: Final = 3  # zstd's default; higher levels stored < 1 % less and encoded 1.5-2x slower


class _Codecs(threading.local):
    """zstd contexts are not thread-safe; reusing one per thread saves ~8 µs per block."""

    def __init__(self) -> None:
        self.compressor = zstandard.ZstdCompressor(level=_LEVEL)
        self.decompressor = zstandard.ZstdDecompressor()


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


def day_of(time: int) -> int:
    """The UTC day (days since the epoch) that holds a capture time in ms."""
    return time // DAY_MS


def split(f: Frame) -> Iterator[tuple[int, int, Frame]]:
    """The points of a frame per (day, origin), in that order: (day, origin, points)."""
    if not len(f):
        return
    day = f.time // DAY_MS
    order = np.lexsort((f.origin, day))
    day_s, origin_s = day[order], f.origin[order]
    cut = np.flatnonzero((day_s[1:] != day_s[:-1]) | (origin_s[1:] != origin_s[:-1])) + 1
    bounds = [0, *cut.tolist(), len(f)]
    for lo, hi in itertools.pairwise(bounds):
        yield int(day_s[lo]), int(origin_s[lo]), f.take(order[lo:hi])


def merge(old: Frame | None, new: Frame) -> Frame:
    """A block's points after a write: sorted by (time, acq); a new point replaces a stored one
    with the same (time, acq) — an import re-sent with its own acq_time."""
    both = new if old is None or not len(old) else _concat2(old, new)
    order = np.lexsort((both.acq, both.time))  # stable: of equal keys the new point comes last
    s = both.take(order)
    if len(s) > 1:
        keep = np.ones(len(s), dtype=np.bool_)
        keep[:-1] = (s.time[1:] != s.time[:-1]) | (s.acq[1:] != s.acq[:-1])
        if not bool(keep.all()):
            s = s.take(keep)
    return s


def _concat2(a: Frame, b: Frame) -> Frame:
    text: tuple[str | None, ...] | None = None
    if a.text is not None or b.text is not None:
        text = (*(a.text or (None,) * len(a)), *(b.text or (None,) * len(b)))
    return Frame(
        np.concatenate((a.time, b.time)),
        np.concatenate((a.origin, b.origin)),
        np.concatenate((a.acq, b.acq)),
        np.concatenate((a.type, b.type)),
        np.concatenate((a.value, b.value)),
        text,
    )


def encode(day: int, origin: int, f: Frame) -> Encoded:
    """A block of points that all lie in `day` with this origin, sorted by (time, acq)."""
    n = len(f)
    if n == 0:
        raise ValueError("a block holds at least one point")
    base = day * DAY_MS
    offset = f.time - base
    if int(offset[0]) < 0 or int(offset[-1]) >= DAY_MS:
        raise ValueError("every point of a block lies within its day")
    toff = np.empty(n, dtype="<i4")
    toff[0] = offset[0]
    toff[1:] = np.diff(offset)
    acq = np.empty(n, dtype="<i8")
    acq[0] = f.acq[0]
    acq[1:] = np.diff(f.acq)  # wraps like the cumsum that undoes it: exact for any int64
    value = np.ascontiguousarray(f.value, dtype="<f8").view(np.uint8).reshape(n, 8).T
    parts = [toff.tobytes(), acq.tobytes(), f.type.astype(np.int8).tobytes(), value.tobytes()]
    is_str = f.type == TYPE_STR
    if bool(is_str.any()):
        if f.text is None:
            raise ValueError("STR points need their text")
        parts.append(orjson.dumps([f.text[i] for i in np.flatnonzero(is_str).tolist()]))
    numeric = np.flatnonzero((f.type == TYPE_DBL) | (f.type == TYPE_INT))
    body = _HEADER.pack(FORMAT, n) + _codecs.compressor.compress(b"".join(parts))
    return Encoded(
        day=day,
        origin=origin,
        n=n,
        t_last=int(f.time[-1]),
        num_first=int(f.time[numeric[0]]) if numeric.shape[0] else None,
        num_last=int(f.time[numeric[-1]]) if numeric.shape[0] else None,
        body=body,
    )


def decode(day: int, origin: int, body: bytes) -> Frame:
    """The points of a stored block, sorted by (time, acq)."""
    try:
        fmt, n = _HEADER.unpack_from(body)
        if fmt != FORMAT:
            raise CorruptBlock(f"block format {fmt} is not {FORMAT}")
        raw = _codecs.decompressor.decompress(memoryview(body)[_HEADER.size :])
    except (struct.error, zstandard.ZstdError) as exc:
        raise CorruptBlock(str(exc)) from exc
    if len(raw) < 21 * n:
        raise CorruptBlock("block shorter than its point count")
    time: I64 = np.frombuffer(raw, "<i4", n, 0).cumsum(dtype=np.int64)
    time += day * DAY_MS
    acq: I64 = np.frombuffer(raw, "<i8", n, 4 * n).cumsum(dtype=np.int64)
    kind = np.frombuffer(raw, np.int8, n, 12 * n).copy()
    planes = np.frombuffer(raw, np.uint8, 8 * n, 13 * n).reshape(8, n)
    value: F64 = planes.T.copy().view("<f8").reshape(n).astype(np.float64, copy=False)
    text: tuple[str | None, ...] | None = None
    if len(raw) > 21 * n:
        strings: list[str | None] = orjson.loads(raw[21 * n :])
        cells: list[str | None] = [None] * n
        for i, s in zip(np.flatnonzero(kind == TYPE_STR).tolist(), strings, strict=True):
            cells[i] = s
        text = tuple(cells)
    return Frame(time, np.full(n, origin, dtype=np.int64), acq, kind, value, text)


def decode_many(rows: Sequence[tuple[int, int, bytes]]) -> list[Frame]:
    """`decode` of (day, origin, body) rows."""
    return [decode(day, origin, body) for day, origin, body in rows]
