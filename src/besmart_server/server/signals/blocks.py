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

import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import orjson
import zstandard
from numpy.typing import NDArray

from besmart_server.server.signals.pipeline import F64, I64, Frame, last_of_runs
from besmart_server.wire import TYPE_DBL, TYPE_INT, TYPE_STR

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
    # The newest version of each time alone (RM included), when the block holds older ones:
    # what get_last and delta_t reads decode, so they cost what a plain read of one version does.
    latest: bytes | None = None


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


def encode_batch(series_id: I64, f: Frame, *, latest: bool = True) -> list[tuple[int, Encoded]]:
    """The blocks of many series at once: (series id, block) per (series, day, origin) run.

    `f` (with each point's series id beside it) must be sorted so that every block's points
    are contiguous and in (time, acq) order — by (series, origin, time, acq), say. The column
    work is done once over every point; only slicing and compression are per block, so a
    write touching hundreds of blocks does not pay numpy's per-call cost hundreds of times.
    """
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
    dtime = np.empty(n, dtype=np.int64)
    dtime[0] = offset[0]
    dtime[1:] = np.diff(offset)
    dtime[starts] = offset[starts]
    if bool((dtime < 0).any()):
        raise ValueError("a block's points must be sorted by time")
    dtime32 = dtime.astype("<i4")
    dacq = np.empty(n, dtype="<i8")
    dacq[0] = f.acq[0]
    dacq[1:] = np.diff(f.acq)  # wraps like the cumsum that undoes it: exact for any int64
    dacq[starts] = f.acq[starts]
    kind = f.type.astype(np.int8)
    value = np.ascontiguousarray(f.value, dtype="<f8").view(np.uint8).reshape(n, 8)
    numeric = (kind == TYPE_DBL) | (kind == TYPE_INT)
    lo_num = np.minimum.reduceat(np.where(numeric, f.time, _NO_TIME_HI), starts).tolist()
    hi_num = np.maximum.reduceat(np.where(numeric, f.time, _NO_TIME_LO), starts).tolist()
    texts = _block_texts(f, kind, starts, ends)
    newest = _latest_bodies(series_id, f, first) if latest else {}
    compress = _codecs.compressor.compress
    # Whole columns as bytes once: slicing bytes per block is cheaper than a numpy call.
    time_b, acq_b, kind_b = dtime32.tobytes(), dacq.tobytes(), kind.tobytes()
    planes = [p.tobytes() for p in value.T]
    out: list[tuple[int, Encoded]] = []
    for i, (lo, hi, sid, d, org, last) in enumerate(
        zip(
            starts.tolist(),
            ends.tolist(),
            series_id[starts].tolist(),
            day[starts].tolist(),
            f.origin[starts].tolist(),
            f.time[ends - 1].tolist(),
            strict=True,
        )
    ):
        payload = [
            time_b[4 * lo : 4 * hi],
            acq_b[8 * lo : 8 * hi],
            kind_b[lo:hi],
            *[plane[lo:hi] for plane in planes],  # byte plane k of every value, k = 0..7
        ]
        if texts is not None and texts[i]:
            payload.append(orjson.dumps(texts[i]))
        body = _HEADER.pack(FORMAT, hi - lo) + compress(b"".join(payload))
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
                ),
            )
        )
    return out


def _latest_bodies(series_id: I64, f: Frame, first: NDArray[np.bool_]) -> dict[int, bytes]:
    """The `latest` body of each block (by index) that holds superseded versions."""
    newest = last_of_runs(series_id, f.origin, f.time)  # day follows from time
    if bool(newest.all()):
        return {}
    block = np.cumsum(first) - 1
    stale = np.unique(block[~newest])
    keep = newest & np.isin(block, stale)
    parts = encode_batch(series_id[keep], f.take(keep), latest=False)
    return {int(b): e.body for b, (_, e) in zip(stale.tolist(), parts, strict=True)}


_NO_TIME_HI: Final = np.iinfo(np.int64).max
_NO_TIME_LO: Final = np.iinfo(np.int64).min


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


def decode_batch(rows: Sequence[tuple[int, int, bytes]]) -> tuple[Frame, I64]:
    """The points of many stored blocks, one after the other in the rows' order, with each
    block's number of points. Per block only the header and decompression run in Python."""
    raws: list[bytes] = []
    counts: list[int] = []
    decompress = _codecs.decompressor.decompress
    for _, _, body in rows:
        try:
            fmt, n = _HEADER.unpack_from(body)
            if fmt != FORMAT:
                raise CorruptBlock(f"block format {fmt} is not {FORMAT}")
            raw = decompress(memoryview(body)[_HEADER.size :])
        except (struct.error, zstandard.ZstdError) as exc:
            raise CorruptBlock(str(exc)) from exc
        if n < 1 or len(raw) < 21 * n:
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
        cells: list[str | None] = [None] * total
        str_at = np.flatnonzero(kind == TYPE_STR).tolist()
        k = 0
        for r, n in zip(raws, counts, strict=True):
            if len(r) > 21 * n:
                strings: list[str | None] = orjson.loads(r[21 * n :])
                for s in strings:
                    cells[str_at[k]] = s
                    k += 1
        if k != len(str_at):
            raise CorruptBlock("STR points and their strings differ in number")
        text = tuple(cells)
    return Frame(time, origin, acq, kind, value, text), ns


def _restart(deltas: I64, starts: I64, base: I64) -> I64:
    """What to add to each block's first delta so that one running sum over all blocks gives
    `base` + the block's own running sum: its base minus where the block before ended."""
    ends = base + np.add.reduceat(deltas, starts)  # each block's last value
    out = base.copy()
    out[1:] -= ends[:-1]
    return out
