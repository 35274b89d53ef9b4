"""Columnar bodies in and out: decode and validate with numpy, encode responses with orjson.

A body is `{"time": [...], "value": [...], "type": [...], "origin": [...], "acq_time": [...]}`
(also accepted wrapped as `{"data": {...}}`). Element types are checked with one C-level pass
(`set(map(type, column))`); only a body that fails it is walked element by element, to name the
column and index in the 422.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import orjson
from numpy.typing import NDArray

from besmart_server.server.errors import Invalid
from besmart_server.server.signals.catalog import Unit, UnitMismatch, convert
from besmart_server.server.signals.pipeline import Frame, round_significant
from besmart_server.wire import (
    INT_LIMIT,
    TIME_MAX,
    TIME_MIN,
    TYPE_CODES,
    TYPE_DBL,
    TYPE_INT,
    TYPE_NAMES,
    TYPE_RM,
    TYPE_STR,
    VALUE_MAX,
)

# Re-exported (`X as X`) while signals/store.py imports it from here; besmart_server.wire is
# its home.
from besmart_server.wire import ORIGINS as ORIGINS

Loc = tuple[str | int, ...]

COLUMNS: Final = ("time", "value", "type", "origin", "acq_time")
_ORIGIN_MIN: Final = min(ORIGINS)
_ORIGIN_MAX: Final = max(ORIGINS)
assert set(range(_ORIGIN_MIN, _ORIGIN_MAX + 1)) == ORIGINS  # a range check is exact
_NUMBER: Final = frozenset({int, float})
_INT64_MAX: Final = float(2**63 - 1024)  # largest float that still fits int64
_TYPE_NAME_ARRAY: Final = np.array(TYPE_NAMES, dtype=object)


@dataclass(frozen=True, slots=True)
class Columns:
    """A validated columnar body; `acq_ms` is None unless the body carried `acq_time`."""

    time: NDArray[np.int64]
    origin: NDArray[np.int64]
    type: NDArray[np.int8]
    value: NDArray[np.float64]  # NaN for STR and RM
    text: tuple[str | None, ...] | None  # only when STR points exist
    acq_ms: NDArray[np.int64] | None

    def __len__(self) -> int:
        return int(self.time.shape[0])

    def frame(self, stamp_us: int) -> Frame:
        """The points as a store frame: `acq` is the body's acq_time in µs, else the stamp."""
        n = len(self)
        acq = np.full(n, stamp_us, dtype=np.int64) if self.acq_ms is None else self.acq_ms * 1000
        return Frame(self.time, self.origin, acq, self.type, self.value, self.text)


def loads(raw: bytes) -> Any:
    """The JSON body; 422 when it is not JSON (NaN and Infinity are not JSON)."""
    if not raw:
        raise Invalid("Request body is empty", loc=("body",), type_="missing")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"Body is not valid JSON: {exc}", type_="json_invalid") from exc


def unwrap(body: Any, loc: Loc = ("body",)) -> dict[str, Any]:
    """The columnar object of a body, unwrapping `{"data": {...}}`."""
    if isinstance(body, dict) and "time" not in body and isinstance(body.get("data"), dict):
        body = body["data"]
    if not isinstance(body, dict):
        raise Invalid("Expected a columnar object with a 'time' column", loc=loc, type_="dict_type")
    return body


def count_points(body: dict[str, Any]) -> int:
    """How many points a columnar object claims (its `time` column), before validation."""
    time = body.get("time")
    return len(time) if isinstance(time, list) else 0


def decode(body: dict[str, Any], loc: Loc = ("body",)) -> Columns:
    """Validate a columnar object; 422 naming the column (and index) of the first error."""
    time_col = body.get("time")
    if time_col is None:
        raise Invalid("Field required: the 'time' column", loc=(*loc, "time"), type_="missing")
    n = _check_list(time_col, (*loc, "time"))
    lists: dict[str, list[Any] | None] = {"time": time_col}
    for name in COLUMNS[1:]:
        col = body.get(name)
        if col is not None:
            m = _check_list(col, (*loc, name))
            if m != n:
                raise Invalid(
                    f"Column '{name}' has {m} items but 'time' has {n}",
                    loc=(*loc, name),
                )
        lists[name] = col

    time = _int_column(time_col, (*loc, "time"), floor=True)
    if n and not _times_ok(time):
        i = int(np.flatnonzero((time < TIME_MIN) | (time >= TIME_MAX))[0])
        raise Invalid(
            f"time[{i}]: {int(time[i])} is outside the times a read can ask for "
            "(-2**62 <= time < 2**62 ms)",
            loc=(*loc, "time", i),
        )
    origin = (
        np.ones(n, dtype=np.int64)
        if lists["origin"] is None
        else _int_column(lists["origin"], (*loc, "origin"), floor=False)
    )
    bad_origin = (origin < _ORIGIN_MIN) | (origin > _ORIGIN_MAX)  # np.isin: 30 µs per item
    if n and bool(bad_origin.any()):
        i = int(np.flatnonzero(bad_origin)[0])
        raise Invalid(
            f"origin[{i}]: {int(origin[i])} is not an origin (1 measured, 2 predicted, "
            "3 calculated, 4 estimated, 5 corrected)",
            loc=(*loc, "origin", i),
        )
    kind = _type_column(lists["type"], n, (*loc, "type"))
    value, text = _value_column(lists["value"], kind, (*loc, "value"))
    acq_ms = (
        None
        if lists["acq_time"] is None
        else _int_column(lists["acq_time"], (*loc, "acq_time"), floor=True)
    )
    if acq_ms is not None and n and (acq_ms.min() < 0 or acq_ms.max() > _INT64_MAX // 1000):
        i = int(np.flatnonzero((acq_ms < 0) | (acq_ms > _INT64_MAX // 1000))[0])
        raise Invalid(f"acq_time[{i}]: out of range", loc=(*loc, "acq_time", i))
    return Columns(time, origin, kind, value, text, acq_ms)


class _NotPlain(Exception):
    """The items are not all plain numeric ones: validate them one by one."""


def decode_many(
    bodies: Sequence[dict[str, Any]], locs: Sequence[Loc], raw: bytes | None = None
) -> list[Columns]:
    """`decode` of many columnar objects (the items of a multi-series PUT).

    When every item is plain — integer times, finite numbers, origins in range, no type,
    acq_time or text — each column is validated once over all items concatenated: per item,
    a dozen numpy calls cost more than its hundred points do. Anything else, and every error,
    goes through `decode` item by item, so answers and errors are exactly decode's. `raw`,
    the JSON the bodies were parsed from, lets numpy check the columns' types (see
    _no_bools).
    """
    if bodies and all(_is_plain(b) for b in bodies):
        try:
            return _decode_plain(bodies, typed=raw is not None and _no_bools(raw))
        except _NotPlain:
            pass
    return [decode(b, loc) for b, loc in zip(bodies, locs, strict=True)]


def _no_bools(raw: bytes) -> bool:
    """Whether JSON `raw` surely holds no true or false (a string that spells one only costs
    the check by type). Without bools, numpy's own inference of a list's dtype tells what a
    check of every element's type would: all ints give int64, any float float64, anything
    else (a string, None, a list, an int beyond 64 bits) another dtype or shape. A bool it
    would take for an int (`np.array([1, True])` is int64), hence this: a search of the
    bytes costs a hundredth of the per-element check (0.9 ms a 10,000-point request)."""
    return b"true" not in raw and b"false" not in raw


def _typed(col: list[Any], dtype: type[np.generic]) -> NDArray[Any]:
    """`col` (bools excluded) as a 1-D array of int64, or of float64 when `dtype` is that
    (ints and floats both), else _NotPlain."""
    try:
        a = np.array(col)
    except (ValueError, OverflowError) as exc:  # lists of unequal lengths among the cells
        raise _NotPlain from exc
    if a.ndim != 1 or not (a.dtype == np.int64 or (dtype is np.float64 and a.dtype == dtype)):
        raise _NotPlain
    return a if a.dtype == dtype else a.astype(dtype)


def _is_plain(body: dict[str, Any]) -> bool:
    time, value, origin = body.get("time"), body.get("value"), body.get("origin")
    return (
        isinstance(time, list)
        and isinstance(value, list)
        and len(value) == len(time)
        and (origin is None or (isinstance(origin, list) and len(origin) == len(time)))
        and body.get("type") is None
        and body.get("acq_time") is None
    )


def _decode_plain(bodies: Sequence[dict[str, Any]], *, typed: bool = False) -> list[Columns]:
    sizes = [len(b["time"]) for b in bodies]
    total = sum(sizes)
    times = list(itertools.chain.from_iterable(b["time"] for b in bodies))
    values = list(itertools.chain.from_iterable(b["value"] for b in bodies))
    origins = list(
        itertools.chain.from_iterable(
            b.get("origin") or [1] * n for b, n in zip(bodies, sizes, strict=True)
        )
    )
    if typed and total:
        time = _typed(times, np.int64)
        origin = _typed(origins, np.int64)
        value = _typed(values, np.float64)
    else:
        if set(map(type, times)) - {int} or set(map(type, origins)) - {int}:
            raise _NotPlain
        if set(map(type, values)) - _NUMBER:
            raise _NotPlain
        try:
            time = np.fromiter(times, dtype=np.int64, count=total)
            origin = np.fromiter(origins, dtype=np.int64, count=total)
            value = np.array(values, dtype=np.float64) if total else np.empty(0, dtype=np.float64)
        except OverflowError as exc:
            raise _NotPlain from exc
    if total and not _within(value, VALUE_MAX):
        raise _NotPlain
    if bool(((origin < _ORIGIN_MIN) | (origin > _ORIGIN_MAX)).any()):
        raise _NotPlain
    if total and not _times_ok(time):
        raise _NotPlain
    kind = np.full(total, TYPE_DBL, dtype=np.int8)
    out = []
    start = 0
    for n in sizes:
        end = start + n
        out.append(
            Columns(
                time[start:end], origin[start:end], kind[start:end], value[start:end], None, None
            )
        )
        start = end
    return out


# The ufuncs' reduce directly: ndarray.max/min cost twice as much on a 100-point item.
_MAX_OF: Final = np.maximum.reduce
_MIN_OF: Final = np.minimum.reduce
_TIME_MIN64: Final = np.int64(TIME_MIN)
_TIME_MAX64: Final = np.int64(TIME_MAX)


def _within(value: NDArray[np.float64], limit: float) -> bool:
    """Every value (of a non-empty column) within ±limit; NaN fails it (it propagates
    through the max and compares false)."""
    return bool(_MAX_OF(np.abs(value)) <= limit)


def _times_ok(time: NDArray[np.int64]) -> bool:
    """Every time (of a non-empty column) within TIME_MIN <= time < TIME_MAX."""
    return bool(_MIN_OF(time) >= _TIME_MIN64) and bool(_MAX_OF(time) < _TIME_MAX64)


def _check_list(col: Any, loc: Loc) -> int:
    if not isinstance(col, list):
        raise Invalid(f"Column '{loc[-1]}' must be a list", loc=loc, type_="list_type")
    return len(col)


def _int_column(col: list[Any], loc: Loc, *, floor: bool) -> NDArray[np.int64]:
    """Integers; with `floor`, floats are accepted and floored to whole milliseconds."""
    kinds = set(map(type, col))
    if not col:
        return np.empty(0, dtype=np.int64)
    if kinds == {int}:
        try:
            return np.fromiter(col, dtype=np.int64, count=len(col))
        except OverflowError:
            pass  # located below
    elif kinds <= _NUMBER:
        arr = np.array(col, dtype=np.float64)
        bad = ~np.isfinite(arr) | (np.abs(arr) > _INT64_MAX)
        if not floor:
            bad |= arr != np.floor(arr)
        if not bad.any():
            return np.floor(arr).astype(np.int64)
    for i, x in enumerate(col):
        if type(x) not in _NUMBER:
            raise Invalid(
                f"{loc[-1]}[{i}]: expected a number, got {_show(x)}",
                loc=(*loc, i),
                type_="int_type",
            )
        # The same bound as the whole-column check above, or a value it refused passes here.
        if not -_INT64_MAX <= x <= _INT64_MAX or (isinstance(x, float) and not np.isfinite(x)):
            raise Invalid(f"{loc[-1]}[{i}]: {x} is out of range", loc=(*loc, i))
        if not floor and x != int(x):
            raise Invalid(
                f"{loc[-1]}[{i}]: expected an integer, got {x}", loc=(*loc, i), type_="int_type"
            )
    raise AssertionError("unreachable: a column failed as a whole but in no element")


def _type_column(col: list[Any] | None, n: int, loc: Loc) -> NDArray[np.int8]:
    if col is None:
        return np.full(n, TYPE_DBL, dtype=np.int8)
    try:
        distinct = set(col)
        if len(distinct) == 1:  # the usual column: one type throughout
            return np.full(n, TYPE_CODES[distinct.pop()], dtype=np.int8)
        return np.fromiter((TYPE_CODES[t] for t in col), dtype=np.int8, count=n)
    except (KeyError, TypeError):
        pass  # located below
    for i, t in enumerate(col):
        if not isinstance(t, str) or t not in TYPE_CODES:
            raise Invalid(
                f"type[{i}]: unknown type {_show(t)} (expected one of {', '.join(TYPE_NAMES)})",
                loc=(*loc, i),
                type_="enum",
            )
    raise AssertionError("unreachable")


def _value_column(
    col: list[Any] | None, kind: NDArray[np.int8], loc: Loc
) -> tuple[NDArray[np.float64], tuple[str | None, ...] | None]:
    n = kind.shape[0]
    numeric = (kind == TYPE_DBL) | (kind == TYPE_INT)
    if col is None:
        if numeric.any() or (kind == TYPE_STR).any():
            raise Invalid(
                "Field required: the 'value' column (only RM points may omit it)",
                loc=loc,
                type_="missing",
            )
        return np.full(n, np.nan), None
    kinds = set(map(type, col))
    if kinds <= _NUMBER and numeric.all():
        value = np.array(col, dtype=np.float64) if n else np.empty(0, dtype=np.float64)
        ok = not n or _within(value, VALUE_MAX)
        is_int = kind == TYPE_INT
        if ok and bool(is_int.any()):
            exact = (value == np.floor(value)) & (np.abs(value) < INT_LIMIT)
            ok = bool((exact | ~is_int).all())
        if ok:
            return value, None
    # Mixed bodies (STR, RM, or an error somewhere): one checked pass.
    value = np.full(n, np.nan)
    text: list[str | None] = [None] * n
    has_text = False
    for i, (x, k) in enumerate(zip(col, kind.tolist(), strict=True)):
        if k == TYPE_RM:
            continue  # a tombstone's value is ignored
        if k == TYPE_STR:
            if not isinstance(x, str):
                raise Invalid(
                    f"value[{i}]: a STR point needs a string, got {_show(x)}",
                    loc=(*loc, i),
                    type_="string_type",
                )
            text[i] = x
            has_text = True
            continue
        if type(x) not in _NUMBER:
            raise Invalid(
                f"value[{i}]: a {TYPE_NAMES[k]} point needs a number, got {_show(x)}",
                loc=(*loc, i),
                type_="float_type",
            )
        v = float(x)
        if not np.isfinite(v):
            raise Invalid(f"value[{i}]: {x} is not a finite number", loc=(*loc, i))
        if k == TYPE_INT and v != np.floor(v):
            raise Invalid(
                f"value[{i}]: an INT point needs an integer, got {x}",
                loc=(*loc, i),
                type_="int_type",
            )
        _check_magnitude(v, k, x, (*loc, i))
        value[i] = v
    return value, (tuple(text) if has_text else None)


def _check_magnitude(v: float, kind: int, shown: Any, loc: Loc) -> None:
    """422 for a number the wire cannot carry back: an INT beyond ±(2**53 - 1) or any number
    beyond ±VALUE_MAX (see there)."""
    if kind == TYPE_INT and abs(v) >= INT_LIMIT:
        raise Invalid(
            f"{loc[-2]}[{loc[-1]}]: the INT {shown} is beyond ±(2**53 - 1), the integers "
            "the API carries exactly",
            loc=loc,
        )
    if abs(v) > VALUE_MAX:
        raise Invalid(
            f"{loc[-2]}[{loc[-1]}]: {shown} is beyond ±{VALUE_MAX:g}, the largest magnitude stored",
            loc=loc,
        )


def _show(x: Any) -> str:
    s = orjson.dumps(x).decode()
    return s if len(s) <= 40 else s[:37] + "..."


def check_acq_not_after(cols: Columns, latest_ms: int, loc: Loc) -> None:
    """422 for an `acq_time` later than `latest_ms`: a version from the future would stay
    the newest, hiding every live write after it, until its time came."""
    acq = cols.acq_ms
    if acq is None or not len(acq) or int(acq.max()) <= latest_ms:
        return
    i = int(np.flatnonzero(acq > latest_ms)[0])
    raise Invalid(
        f"acq_time[{i}]: {int(acq[i])} is in the future, later than {latest_ms} (the "
        "server's clock and the skew it allows): it would hide every later write",
        loc=(*loc, "acq_time", i),
    )


def convert_in(
    cols: Columns, src: Unit, dst: Unit, loc: Loc, value_loc: Loc = ("body", "value")
) -> Columns:
    """The values converted from the unit they arrived in to the signal type's unit, rounded
    as computed values are (pipeline.round_significant); 422 at `loc` (the unit) across
    dimensions, and at `value_loc` for a value the conversion takes beyond what is stored."""
    if src.unit_id == dst.unit_id:
        return cols
    try:
        value = round_significant(convert(cols.value, src, dst))
    except UnitMismatch as exc:
        raise Invalid(str(exc), loc=loc, type_="unit_mismatch") from exc
    numeric = (cols.type == TYPE_DBL) | (cols.type == TYPE_INT)
    limit = np.where(cols.type == TYPE_INT, INT_LIMIT, np.nextafter(VALUE_MAX, np.inf))
    bad = numeric & ~(np.abs(value) < limit)
    if bool(bad.any()):
        i = int(np.flatnonzero(bad)[0])
        raise Invalid(
            f"value[{i}]: {float(cols.value[i])!r} {src.symbol} is {float(value[i])!r} "
            f"{dst.symbol}, beyond the "
            + ("±(2**53 - 1) of an INT" if cols.type[i] == TYPE_INT else f"±{VALUE_MAX:g} stored"),
            loc=(*value_loc, i),
        )
    return Columns(cols.time, cols.origin, cols.type, value, cols.text, cols.acq_ms)


def check_points(f: Frame, sizes: Sequence[int], locs: Sequence[Loc]) -> None:
    """decode's bounds (times a read can ask for, numbers the wire carries back) over a whole
    write at once, for columns that did not come through decode (graph results): 422 naming
    the item's column and index. `sizes` and `locs`: each item's points and place, in order."""
    numeric = (f.type == TYPE_DBL) | (f.type == TYPE_INT)
    limit = np.where(f.type == TYPE_INT, np.nextafter(INT_LIMIT, 0.0), VALUE_MAX)
    bad_value = numeric & ~(np.abs(f.value) <= limit)  # NaN and infinities too
    bad_time = (f.time < TIME_MIN) | (f.time >= TIME_MAX)
    bad = bad_value | bad_time
    if not len(f) or not bool(bad.any()):
        return
    j = int(np.flatnonzero(bad)[0])
    ends = np.cumsum(sizes)
    k = int(np.searchsorted(ends, j, side="right"))
    i = j - (int(ends[k - 1]) if k else 0)
    if bad_time[j]:
        raise Invalid(
            f"time[{i}]: {int(f.time[j])} is outside the times a read can ask for",
            loc=(*locs[k], "time", i),
        )
    raise Invalid(
        f"value[{i}]: {float(f.value[j])!r} is not a number the API carries back "
        f"(INT within ±(2**53 - 1), any number within ±{VALUE_MAX:g})",
        loc=(*locs[k], "value", i),
    )


def to_frame(parts: Sequence[Columns], stamp_us: int) -> Frame:
    """Validated columns of several items as one store frame, in order: `acq` is each body's
    acq_time in µs, else the write's stamp."""
    if len(parts) == 1:
        return parts[0].frame(stamp_us)
    text: tuple[str | None, ...] | None = None
    if any(c.text is not None for c in parts):
        text = tuple(itertools.chain.from_iterable(c.text or (None,) * len(c) for c in parts))
    acq = [
        np.full(len(c), stamp_us, dtype=np.int64) if c.acq_ms is None else c.acq_ms * 1000
        for c in parts
    ]
    return Frame(
        np.concatenate([c.time for c in parts]),
        np.concatenate([c.origin for c in parts]),
        np.concatenate(acq),
        np.concatenate([c.type for c in parts]),
        np.concatenate([c.value for c in parts]),
        text,
    )


# --- out ------------------------------------------------------------------------------------


def encode_data(f: Frame) -> dict[str, Any]:
    """The `data` object of a response: columns as numpy arrays or lists, for orjson."""
    kinds = f.type
    value: Any
    if not len(f) or bool((kinds == TYPE_DBL).all()):
        value = f.value  # NaN (never stored for DBL) would encode as null
    else:
        vals: list[Any] = f.value.tolist()
        is_int = kinds == TYPE_INT
        for i in np.flatnonzero(is_int).tolist():
            v = vals[i]
            # Within ±2**53 only: a larger INT (stored before writes were bounded) stays a
            # float, which orjson can encode where a Python int beyond 64 bits is a 500.
            if v == v and -INT_LIMIT < v < INT_LIMIT and v == int(v):
                vals[i] = int(v)
        for i in np.flatnonzero(kinds == TYPE_RM).tolist():
            vals[i] = None
        if f.text is not None:
            for i in np.flatnonzero(kinds == TYPE_STR).tolist():
                vals[i] = f.text[i]
        value = vals
    return {
        "time": f.time,
        "value": value,
        "type": _TYPE_NAME_ARRAY[kinds].tolist(),
        "origin": f.origin,
        "acq_time": f.acq // 1000,
    }


def empty_data() -> dict[str, Any]:
    """The `data` object without points."""
    return {"time": [], "value": [], "type": [], "origin": [], "acq_time": []}


def dumps(obj: Any) -> bytes:
    """orjson with numpy arrays serialised natively."""
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
