"""Series as pandas frames and back: columnar `data` objects, times, and request planning.

A series frame is indexed by capture time (`DatetimeIndex`, UTC, millisecond resolution,
named `time`) and has the columns `value`, `origin`, `type` and `acq_time` (UTC datetimes;
NaT where the server gave none). `value` is float64 when every point is numeric or a
tombstone (NaN for `RM`), object when text (`STR`) points are present.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import pandas as pd
from numpy.typing import NDArray

# What the server stores, checked here too (besmart_server.wire, shared with the server) so
# that a write of many requests is refused before the first one rather than by a 422
# half-way through.
from besmart_server.wire import (
    ACQ_SKEW_MS,
    INT_LIMIT,
    ORIGINS,
    TIME_MAX,
    TIME_MIN,
    VALUE_MAX,
)
from besmart_server.wire import TYPE_NAMES as TYPES

FRAME_COLUMNS: Final = ("value", "origin", "type", "acq_time")

TimeLike = datetime | pd.Timestamp | int | float | str


def to_ms(value: TimeLike) -> int:
    """UTC unix milliseconds from a datetime (naive means UTC), a pandas Timestamp, an ISO
    8601 string or a number of milliseconds (floats are floored, as the server does)."""
    if isinstance(value, bool):
        raise TypeError("a time must be a datetime, an ISO string or milliseconds, not a bool")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite time: {value}")
        return math.floor(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        value = pd.Timestamp(text)
    if isinstance(value, pd.Timestamp):
        ts = value.tz_localize("UTC") if value.tzinfo is None else value.tz_convert("UTC")
        return int(ts.as_unit("ns").value // 1_000_000)
    if isinstance(value, datetime):
        dt = value.replace(tzinfo=UTC) if value.tzinfo is None else value
        delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    raise TypeError(f"not a time: {value!r}")


def ms_index(ms: NDArray[np.int64]) -> pd.DatetimeIndex:
    """A UTC DatetimeIndex (ms resolution) named `time` from unix milliseconds."""
    return pd.DatetimeIndex(ms.astype("datetime64[ms]"), name="time").tz_localize("UTC")


def ms_datetimes(ms: NDArray[np.int64] | None, n: int) -> pd.DatetimeIndex:
    """UTC datetimes (ms) from unix milliseconds; NaT everywhere when `ms` is None."""
    if ms is None:
        return pd.DatetimeIndex(
            np.full(n, np.datetime64("NaT"), dtype="datetime64[ms]")
        ).tz_localize("UTC")
    return pd.DatetimeIndex(ms.astype("datetime64[ms]")).tz_localize("UTC")


def datetimes_ms(values: Any) -> NDArray[np.int64]:
    """Unix milliseconds from datetime-like values (a DatetimeIndex or a datetime column;
    naive means UTC); NaT is an error."""
    idx = pd.DatetimeIndex(values)
    if idx.hasnans:
        raise ValueError(f"missing time at position {int(np.flatnonzero(idx.isna())[0])}")
    if idx.tz is None:
        idx = idx.tz_localize("UTC")
    as_ms = idx.tz_convert("UTC").as_unit("ms")
    return np.asarray(as_ms.asi8, dtype=np.int64)


def frame_from_data(data: Mapping[str, Any] | None) -> pd.DataFrame:
    """A series frame from a columnar `data` object of a response."""
    data = data or {}
    time = np.asarray(data.get("time") or [], dtype=np.int64)
    n = time.shape[0]
    types: list[str] = list(data.get("type") or ["DBL"] * n)
    origin = np.asarray(data.get("origin") or [1] * n, dtype=np.int64)
    raw_values: list[Any] = list(data.get("value") or [None] * n)
    acq = data.get("acq_time")
    value: Any
    if "STR" in types:
        value = pd.array(raw_values, dtype=object)
    else:
        value = np.array(raw_values, dtype=np.float64) if n else np.empty(0, dtype=np.float64)
    frame = pd.DataFrame(
        {
            "value": value,
            "origin": origin,
            "type": pd.array(types, dtype=object),
            "acq_time": ms_datetimes(
                np.asarray(acq, dtype=np.int64) if acq is not None and len(acq) == n else None, n
            ),
        },
        index=ms_index(time),
    )
    return frame


@dataclass(frozen=True)
class Columns:
    """A series ready for the wire: parallel numpy columns (object arrays for mixed values)."""

    time: NDArray[np.int64]
    value: NDArray[Any]
    type: NDArray[Any] | None  # None: every point DBL
    origin: NDArray[np.int64]
    acq_time: NDArray[np.int64] | None

    def __len__(self) -> int:
        return int(self.time.shape[0])

    def body(self, start: int = 0, stop: int | None = None) -> dict[str, Any]:
        """The columnar `data` object of points [start, stop), for orjson (numpy-aware)."""
        sl = slice(start, stop)
        value = self.value[sl]
        out: dict[str, Any] = {
            "time": self.time[sl],
            "value": value.tolist() if value.dtype == object else value,
            "origin": self.origin[sl],
        }
        if self.type is not None:
            out["type"] = self.type[sl].tolist()
        if self.acq_time is not None:
            out["acq_time"] = self.acq_time[sl]
        return out


def columns_from_frame(frame: pd.DataFrame | pd.Series, origin: int | None = None) -> Columns:
    """Validate a frame (or a Series of values) for writing: capture times from a
    DatetimeIndex (naive means UTC), an integer index of ms, or a `time` column; a `value`
    column; optional `type`, `origin` (replaced by `origin` when given) and `acq_time`.
    Raises ValueError naming the first bad position."""
    if isinstance(frame, pd.Series):
        frame = frame.to_frame("value")
    n = len(frame)
    time = _frame_times(frame)
    _check_range(time, TIME_MIN, TIME_MAX - 1, "time")
    if origin is not None:
        if origin not in ORIGINS:
            raise ValueError(f"origin {origin} is not one of 1..5")
        origins = np.full(n, origin, dtype=np.int64)
    elif "origin" in frame.columns:
        origins = _int_column(frame["origin"], "origin")
        bad = ~np.isin(origins, list(ORIGINS))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"origin at position {i}: {origins[i]} is not one of 1..5")
    else:
        origins = np.ones(n, dtype=np.int64)
    types: NDArray[Any] | None = None
    if "type" in frame.columns:
        types = np.asarray(frame["type"].astype(object).to_numpy(), dtype=object)
        unknown = ~np.isin(types, TYPES)
        if unknown.any():
            i = int(np.flatnonzero(unknown)[0])
            raise ValueError(f"type at position {i}: {types[i]!r} is not one of {TYPES}")
        if bool((types == "DBL").all()):
            types = None
    value = _values(frame, types)
    acq: NDArray[np.int64] | None = None
    if "acq_time" in frame.columns:
        col = frame["acq_time"]
        if pd.api.types.is_datetime64_any_dtype(col.dtype):
            acq = datetimes_ms(col) if n else np.empty(0, dtype=np.int64)
        else:
            acq = _int_column(col, "acq_time")
        now = int(datetime.now(UTC).timestamp() * 1000)
        _check_range(acq, 0, now + ACQ_SKEW_MS, "acq_time")
    return _last_of_each_point(Columns(time, value, types, origins, acq))


def _last_of_each_point(c: Columns) -> Columns:
    """Only the last row of each point (time, origin and acq_time): the server keeps one
    version per key, the later of a request, so what is sent (and counted as written) is what
    is stored, however the rows are split into requests."""
    if len(c) < 2:
        return c
    keys = {"time": c.time, "origin": c.origin}
    if c.acq_time is not None:
        keys["acq"] = c.acq_time
    keep = ~pd.DataFrame(keys).duplicated(keep="last").to_numpy()
    if bool(keep.all()):
        return c
    return Columns(
        c.time[keep],
        c.value[keep],
        None if c.type is None else c.type[keep],
        c.origin[keep],
        None if c.acq_time is None else c.acq_time[keep],
    )


def _check_range(ms: NDArray[np.int64], lo: int, hi: int, name: str) -> None:
    bad = (ms < lo) | (ms > hi)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} at position {i}: {int(ms[i])} is outside {lo}..{hi}")


def _frame_times(frame: pd.DataFrame) -> NDArray[np.int64]:
    if "time" in frame.columns:
        col = frame["time"]
        if pd.api.types.is_datetime64_any_dtype(col.dtype):
            return datetimes_ms(col)
        return _int_column(col, "time")
    index = frame.index
    if isinstance(index, pd.DatetimeIndex):
        return datetimes_ms(index)
    if pd.api.types.is_integer_dtype(index.dtype):
        return np.asarray(index, dtype=np.int64)
    raise ValueError("capture times: index the frame by time (DatetimeIndex or ms) or give 'time'")


def _int_column(col: pd.Series, name: str) -> NDArray[np.int64]:
    if pd.api.types.is_integer_dtype(col.dtype):
        return np.asarray(col, dtype=np.int64)
    num = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(num) | (num != np.floor(num))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} at position {i}: {col.iloc[i]!r} is not an integer")
    return num.astype(np.int64)


def _values(frame: pd.DataFrame, types: NDArray[Any] | None) -> NDArray[Any]:
    n = len(frame)
    if "value" not in frame.columns:
        if types is not None and bool((types == "RM").all()):
            return np.full(n, None, dtype=object)
        raise ValueError("a 'value' column is required (only RM points may go without)")
    col = frame["value"]
    if types is None and pd.api.types.is_numeric_dtype(col.dtype) and col.dtype != bool:
        value = col.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~(np.abs(value) <= VALUE_MAX)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            _number(float(value[i]), "DBL", i)  # raises, saying why
        return value
    kinds = types if types is not None else np.full(n, "DBL", dtype=object)
    raw = col.to_numpy(dtype=object)
    out = np.empty(n, dtype=object)
    for i, (x, k) in enumerate(zip(raw, kinds, strict=True)):
        if k == "RM":
            out[i] = None
        elif k == "STR":
            if not isinstance(x, str):
                raise ValueError(f"value at position {i}: a STR point needs text, got {x!r}")
            out[i] = x
        else:
            out[i] = _number(x, k, i)
    return out


def _number(x: Any, kind: str, i: int) -> int | float:
    if isinstance(x, bool) or x is None:
        raise ValueError(f"value at position {i}: a {kind} point needs a number, got {x!r}")
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(
            f"value at position {i}: a {kind} point needs a number, got {x!r}"
        ) from None
    if not math.isfinite(v):
        raise ValueError(f"value at position {i}: {x!r} is not a finite number")
    if abs(v) > VALUE_MAX:
        raise ValueError(f"value at position {i}: {x!r} is beyond ±{VALUE_MAX:g}")
    if kind == "INT":
        if v != math.floor(v):
            raise ValueError(f"value at position {i}: an INT point needs an integer, got {x!r}")
        if abs(v) >= INT_LIMIT:
            raise ValueError(f"value at position {i}: the INT {x!r} is beyond ±(2**53 - 1)")
        return int(x) if isinstance(x, int | np.integer) else int(v)
    return v


@dataclass(frozen=True)
class Chunk:
    """Points [start, stop) of series `series` (an index into the written list)."""

    series: int
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


def plan_requests(
    lengths: Sequence[int],
    *,
    chunk_points: int = 10_000,
    request_points: int = 100_000,
    request_items: int = 1_000,
) -> Iterator[list[Chunk]]:
    """Requests for series of these lengths: each holds at most one chunk (up to
    `chunk_points` points) per series, `request_points` points and `request_items` items."""
    if chunk_points < 1 or request_points < 1 or request_items < 1:
        raise ValueError("chunk and request sizes must be positive")
    queues = [
        deque(Chunk(i, s, min(s + chunk_points, n)) for s in range(0, n, chunk_points))
        for i, n in enumerate(lengths)
    ]
    while any(queues):
        request: list[Chunk] = []
        total = 0
        for q in queues:
            if not q:
                continue
            if request and (total + len(q[0]) > request_points or len(request) >= request_items):
                break
            chunk = q.popleft()
            request.append(chunk)
            total += len(chunk)
        yield request
