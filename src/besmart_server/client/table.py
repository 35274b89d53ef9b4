"""Tables of points in files (CSV, Parquet) to series and back; pure, no HTTP.

Reading validates every row and reports each rejected one by its line (CSV, counting the
header as line 1) or row (Parquet, from 1) with the reasons, so an import can refuse the
whole file when one row is malformed.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from besmart_server.client.core import SeriesWrite
from besmart_server.wire import ACQ_SKEW_MS, INT_LIMIT, ORIGINS, VALUE_MAX
from besmart_server.wire import TYPE_NAMES as TYPES

TimeFormat = Literal["auto", "ms", "s", "iso"]
FileFormat = Literal["csv", "parquet"]
EXPORT_COLUMNS: Final = (
    "time",
    "client_cid",
    "sensor_mid",
    "signal_type_moid",
    "value",
    "type",
    "origin",
    "acq_time",
    "unit",
)
_SAFE_MS: Final = 2**53  # times beyond this lose precision as floats anywhere
_TIME_WORDS: Final = {
    "auto": "neither ms nor an ISO 8601 time",
    "ms": "not a number of milliseconds",
    "s": "not a number of seconds",
    "iso": "not an ISO 8601 time",
}


class TableError(ValueError):
    """The file as a whole cannot be read (missing column, unknown format, bad CSV)."""


@dataclass(frozen=True)
class ColumnMap:
    """Which columns hold what, and constants that replace columns (`client`, `sensor`,
    `moid`, `origin`, `unit`); `time_format` says how `time` and `acq_time` are written."""

    time_col: str = "time"
    value_col: str = "value"
    type_col: str = "type"
    origin_col: str = "origin"
    acq_col: str = "acq_time"
    unit_col: str = "unit"
    client_col: str = "client_cid"
    sensor_col: str = "sensor_mid"
    moid_col: str = "signal_type_moid"
    time_format: TimeFormat = "auto"
    client: int | None = None
    sensor: int | None = None
    moid: int | None = None
    origin: int | None = None
    unit: str | None = None


@dataclass(frozen=True)
class Reject:
    """A row left out, where it is and why."""

    where: str  # "line 7" or "row 7"
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.where}: {'; '.join(self.reasons)}"


@dataclass
class Prepared:
    """A validated table: the series to write, the rows rejected, and the rows read."""

    series: list[SeriesWrite]
    rejects: list[Reject]
    rows: int
    row_where: list[str] = field(default_factory=list)
    # Good rows left out for a later row of the same point (series, time, origin and
    # acq_time): the server keeps one version per key, so they would never be stored.
    duplicates: int = 0

    @property
    def points(self) -> int:
        """Points in the series to write."""
        return sum(len(s.frame) for s in self.series)


# --- reading files --------------------------------------------------------------------------


def file_format(path: Path, explicit: FileFormat | None = None) -> FileFormat:
    """The format named, or guessed from the extension (.csv, .parquet/.pq)."""
    if explicit is not None:
        return explicit
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".txt", ".tsv"):
        return "csv"
    raise TableError(f"cannot tell the format of {path.name}: use --format csv|parquet")


def read_table(
    path: Path, fmt: FileFormat | None = None, *, delimiter: str = ","
) -> tuple[pd.DataFrame, list[str], list[Reject]]:
    """The rows of a file as a DataFrame (CSV: every cell text), where each row is, and the
    lines that are not rows (wrong number of fields). Blank CSV lines are skipped."""
    kind = file_format(path, fmt)
    if kind == "parquet":
        table = pd.read_parquet(path)
        return table.reset_index(drop=True), [f"row {i + 1}" for i in range(len(table))], []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh, delimiter=delimiter, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise TableError(f"{path.name} is empty") from None
        except csv.Error as exc:
            raise TableError(f"{path.name}: line 1: {exc}") from exc
        header = [h.strip() for h in header]
        if len(set(header)) != len(header):
            raise TableError(f"{path.name}: repeated column names in the header")
        width = len(header)
        cols: list[list[str]] = [[] for _ in header]
        where: list[str] = []
        bad: list[Reject] = []
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                bad.append(Reject(f"line {start}", (f"not CSV: {exc}",)))
                continue
            if not row or (len(row) == 1 and not row[0].strip() and width > 1):
                continue  # a blank line is not a row
            if len(row) != width:
                bad.append(Reject(f"line {start}", (f"expected {width} fields, found {len(row)}",)))
                continue
            for c, v in zip(cols, row, strict=True):
                c.append(v)
            where.append(f"line {start}")
    frame = pd.DataFrame({h: pd.array(c, dtype=object) for h, c in zip(header, cols, strict=True)})
    return frame, where, bad


# --- validating -----------------------------------------------------------------------------


class _Reasons:
    def __init__(self, n: int) -> None:
        self.by_row: dict[int, list[str]] = {}
        self.n = n

    def add(self, mask: NDArray[np.bool_], reason: Any) -> None:
        """Add `reason` (text, or a function of the row index) to the rows in `mask`."""
        for i in np.flatnonzero(mask).tolist():
            self.by_row.setdefault(i, []).append(reason(i) if callable(reason) else reason)

    def bad(self) -> NDArray[np.bool_]:
        out = np.zeros(self.n, dtype=np.bool_)
        out[list(self.by_row)] = True
        return out


def _is_text(col: pd.Series) -> bool:
    return not (
        pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_datetime64_any_dtype(col.dtype)
    )


def _text(col: pd.Series) -> NDArray[Any]:
    return np.array(["" if v is None else str(v).strip() for v in col.tolist()], dtype=object)


def _numbers(col: pd.Series) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Floats of a column and which cells were empty."""
    if _is_text(col):
        text = _text(col)
        empty = text == ""
        parsed = pd.to_numeric(pd.Series(text, dtype=object), errors="coerce")
        return pd.Series(parsed).to_numpy(dtype=np.float64, na_value=np.nan), empty
    if pd.api.types.is_bool_dtype(col.dtype):
        return np.full(len(col), np.nan), np.zeros(len(col), dtype=np.bool_)
    num = col.to_numpy(dtype=np.float64, na_value=np.nan)
    return num, np.isnan(num)


def parse_times(
    col: pd.Series, fmt: TimeFormat
) -> tuple[NDArray[np.int64], NDArray[np.bool_], NDArray[np.bool_]]:
    """UTC ms of a time column (`fmt`: ms, s, iso, or auto: numbers are ms, text ISO 8601,
    naive meaning UTC); also which cells are empty and which are unreadable."""
    n = len(col)
    ms = np.zeros(n, dtype=np.int64)
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        stamps = pd.DatetimeIndex(col)
        if stamps.tz is None:
            stamps = stamps.tz_localize("UTC")
        missing = np.asarray(stamps.isna())
        ms[~missing] = stamps.tz_convert("UTC").as_unit("ms").asi8[~missing]
        return ms, missing, np.zeros(n, dtype=np.bool_)
    num, empty = _numbers(col)
    is_num = np.isfinite(num)
    if fmt == "iso":
        is_num = np.zeros(n, dtype=np.bool_)
    scaled = num * 1000.0 if fmt == "s" else num
    in_range = is_num & (np.abs(np.where(is_num, scaled, 0.0)) < _SAFE_MS)
    if fmt == "s":
        ms[in_range] = np.round(scaled[in_range]).astype(np.int64)
    else:
        ms[in_range] = np.floor(scaled[in_range]).astype(np.int64)
    bad = ~empty & ~in_range
    if fmt in ("auto", "iso") and _is_text(col):
        todo = bad & ~is_num
        if todo.any():
            text = _text(col)[todo]
            parsed = pd.to_datetime(pd.Series(text), utc=True, format="ISO8601", errors="coerce")
            got = parsed.notna().to_numpy()
            idx = np.flatnonzero(todo)
            ms[idx[got]] = pd.DatetimeIndex(parsed[got]).as_unit("ms").asi8
            bad[idx[got]] = False
    return ms, empty, bad


def _show(col: pd.Series, i: int) -> str:
    v = col.iloc[i]
    s = repr(v.strip() if isinstance(v, str) else v)
    return s if len(s) <= 40 else s[:37] + "..."


def _ids(
    table: pd.DataFrame, name: str, constant: int | None, option: str, reasons: _Reasons
) -> NDArray[np.int64]:
    n = len(table)
    if constant is not None:
        return np.full(n, constant, dtype=np.int64)
    if name not in table.columns:
        raise TableError(f"no {option} option and no '{name}' column")
    col = table[name]
    num, empty = _numbers(col)
    ok = np.isfinite(num) & (num == np.floor(num)) & (num >= 0) & (num < 2**31)
    reasons.add(empty, f"missing {name}")
    reasons.add(~empty & ~ok, lambda i: f"{name} {_show(col, i)} is not an id")
    return np.where(ok, num, 0).astype(np.int64)


def prepare(table: pd.DataFrame, where: Sequence[str], cmap: ColumnMap) -> Prepared:
    """Validate every row of `table` and group the good ones into series (one per client,
    sensor, signal type and unit, in file order). Raises TableError for problems of the
    whole table (a required column missing)."""
    n = len(table)
    reasons = _Reasons(n)
    for need in (cmap.time_col, cmap.value_col):
        if need not in table.columns:
            raise TableError(f"no '{need}' column (columns: {', '.join(map(str, table.columns))})")

    time_col = table[cmap.time_col]
    time_ms, empty, bad = parse_times(time_col, cmap.time_format)
    reasons.add(empty, "missing time")
    reasons.add(bad, lambda i: f"time {_show(time_col, i)} is {_TIME_WORDS[cmap.time_format]}")

    if cmap.type_col in table.columns:
        raw_types = np.array([t.upper() for t in _text(table[cmap.type_col])], dtype=object)
        raw_types[raw_types == ""] = "DBL"
        unknown = ~np.isin(raw_types, TYPES)
        type_col = table[cmap.type_col]
        reasons.add(unknown, lambda i: f"type {_show(type_col, i)} is not one of DBL INT STR RM")
        types = np.where(unknown, "DBL", raw_types).astype(object)
    else:
        types = np.full(n, "DBL", dtype=object)

    if cmap.origin is not None:
        if cmap.origin not in ORIGINS:
            raise TableError(f"origin {cmap.origin} is not one of 1..5")
        origin = np.full(n, cmap.origin, dtype=np.int64)
    elif cmap.origin_col in table.columns:
        ocol = table[cmap.origin_col]
        num, oempty = _numbers(ocol)
        num[oempty] = 1.0  # an empty origin is the default, measured
        ok = np.isin(num, list(ORIGINS))
        reasons.add(~ok, lambda i: f"origin {_show(ocol, i)} is not one of 1..5")
        origin = np.where(ok, num, 1).astype(np.int64)
    else:
        origin = np.ones(n, dtype=np.int64)

    values = _row_values(table[cmap.value_col], types, reasons)

    acq: NDArray[np.int64] | None = None
    if cmap.acq_col in table.columns:
        acol = table[cmap.acq_col]
        acq, aempty, abad = parse_times(acol, cmap.time_format)
        reasons.add(aempty, "missing acq_time")
        reasons.add(abad, lambda i: f"acq_time {_show(acol, i)} is {_TIME_WORDS[cmap.time_format]}")
        reasons.add(~aempty & ~abad & (acq < 0), "acq_time before 1970")
        now = int(pd.Timestamp.now(tz="UTC").value // 1_000_000)
        reasons.add(
            ~aempty & ~abad & (acq > now + ACQ_SKEW_MS),
            lambda i: f"acq_time {_show(acol, i)} is in the future (the server refuses it)",
        )

    cids = _ids(table, cmap.client_col, cmap.client, "--client", reasons)
    mids = _ids(table, cmap.sensor_col, cmap.sensor, "--sensor", reasons)
    moids = _ids(table, cmap.moid_col, cmap.moid, "--moid", reasons)
    if cmap.unit is not None:
        units = np.full(n, cmap.unit, dtype=object)
    elif cmap.unit_col in table.columns:
        units = _text(table[cmap.unit_col])
    else:
        units = np.full(n, "", dtype=object)

    rejects = [Reject(where[i], tuple(r)) for i, r in sorted(reasons.by_row.items())]
    good = ~reasons.bad()
    series, duplicates = _group(good, time_ms, values, types, origin, acq, cids, mids, moids, units)
    return Prepared(series, rejects, n, list(where), duplicates)


def _row_values(col: pd.Series, types: NDArray[Any], reasons: _Reasons) -> NDArray[Any]:
    n = len(col)
    numeric = (types == "DBL") | (types == "INT")
    num, empty = _numbers(col)
    finite = np.isfinite(num)
    reasons.add(numeric & empty, "missing value")
    reasons.add(
        numeric & ~empty & ~finite, lambda i: f"value {_show(col, i)} is not a finite number"
    )
    reasons.add(
        (types == "INT") & finite & (num != np.floor(num)),
        lambda i: f"value {_show(col, i)} is not an integer (type INT)",
    )
    reasons.add(
        numeric & finite & (np.abs(np.where(finite, num, 0.0)) > VALUE_MAX),
        lambda i: f"value {_show(col, i)} is beyond ±{VALUE_MAX:g}",
    )
    reasons.add(
        (types == "INT") & finite & (np.abs(np.where(finite, num, 0.0)) >= INT_LIMIT),
        lambda i: f"value {_show(col, i)} is beyond ±(2**53 - 1), the integers an INT carries",
    )
    if not ((types == "STR") | (types == "RM")).any():
        return num
    out = np.empty(n, dtype=object)
    out[:] = num.tolist()
    out[types == "RM"] = None
    is_str = types == "STR"
    if is_str.any():
        raw = col.tolist()
        for i in np.flatnonzero(is_str).tolist():
            v = raw[i]
            out[i] = "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
    return out


def _group(
    good: NDArray[np.bool_],
    time_ms: NDArray[np.int64],
    values: NDArray[Any],
    types: NDArray[Any],
    origin: NDArray[np.int64],
    acq: NDArray[np.int64] | None,
    cids: NDArray[np.int64],
    mids: NDArray[np.int64],
    moids: NDArray[np.int64],
    units: NDArray[Any],
) -> tuple[list[SeriesWrite], int]:
    rows = pd.DataFrame(
        {
            "time": time_ms[good],
            "value": values[good],
            "type": types[good],
            "origin": origin[good],
            "cid": cids[good],
            "mid": mids[good],
            "moid": moids[good],
            "unit": units[good],
        }
    )
    if acq is not None:
        rows["acq_time"] = acq[good]
    out: list[SeriesWrite] = []
    keep = ["time", "value", "type", "origin"] + (["acq_time"] if acq is not None else [])
    # One row per stored key, the later as the server would keep it: then what is sent is
    # what is stored, however the rows are split into requests (each its own stamp).
    point = ["time", "origin"] + (["acq_time"] if acq is not None else [])
    duplicates = 0
    for _, part in rows.groupby(["cid", "mid", "moid", "unit"], sort=False, dropna=False):
        first = part.iloc[0]
        frame = part[keep].reset_index(drop=True)
        dup = frame.duplicated(point, keep="last").to_numpy()
        if dup.any():
            duplicates += int(dup.sum())
            frame = frame[~dup].reset_index(drop=True)
        if frame["type"].isin(["DBL", "INT"]).all():
            frame["value"] = frame["value"].astype(np.float64)
        target = (int(first["cid"]), int(first["mid"]), int(first["moid"]))
        out.append(SeriesWrite(frame, *target, unit=str(first["unit"]) or None))
    return out, duplicates


# --- writing files --------------------------------------------------------------------------


def export_frame(frames: Sequence[pd.DataFrame], time_format: TimeFormat) -> pd.DataFrame:
    """One table of several read frames (their `attrs` name the series), columns as
    EXPORT_COLUMNS, times in `time_format` (iso: text for CSV, converted by `write_table`)."""
    parts = []
    for f in frames:
        part = pd.DataFrame(
            {
                "time": pd.DatetimeIndex(f.index).as_unit("ms").asi8,
                "client_cid": f.attrs.get("client_cid"),
                "sensor_mid": f.attrs.get("sensor_mid"),
                "signal_type_moid": f.attrs.get("signal_type_moid"),
                "value": f["value"].to_numpy(),
                "type": f["type"].to_numpy(dtype=object),
                "origin": f["origin"].to_numpy(dtype=np.int64),
                "acq_time": pd.DatetimeIndex(f["acq_time"]).as_unit("ms").asi8,
                "unit": f.attrs.get("unit") or "",
            }
        )
        parts.append(part)
    if not parts:
        return pd.DataFrame({c: [] for c in EXPORT_COLUMNS})
    table = pd.concat(parts, ignore_index=True)
    if table["value"].dtype == object and (table["type"] == "STR").any():
        # Mixed numbers and text: text in every cell (floats as their shortest exact repr).
        table["value"] = [
            ""
            if v is None or (isinstance(v, float) and np.isnan(v))
            else (repr(v) if isinstance(v, float) else str(v))
            for v in table["value"].tolist()
        ]
    else:
        table["value"] = table["value"].astype(np.float64)
    for c in ("client_cid", "sensor_mid", "signal_type_moid"):
        table[c] = table[c].astype(np.int64)
    table.attrs["time_format"] = time_format
    return table


def _time_out(
    ms: NDArray[np.int64], missing: NDArray[np.bool_], fmt: TimeFormat, text: bool
) -> Any:
    if fmt in ("auto", "iso"):
        stamps = ms.astype("datetime64[ms]")
        if not text:
            out = pd.DatetimeIndex(stamps).tz_localize("UTC")
            return out.where(~missing)
        iso = np.char.add(np.datetime_as_string(stamps, unit="ms"), "Z").astype(object)
        iso[missing] = ""
        return iso
    if fmt == "s":
        secs = ms / 1000.0
        return np.where(missing, np.nan, secs)
    if missing.any():
        return pd.Series(np.where(missing, 0, ms), dtype="Int64").mask(missing).array
    return ms


def write_table(table: pd.DataFrame, path: Path, fmt: FileFormat | None = None) -> None:
    """Write an export table as CSV or Parquet (times as `table.attrs['time_format']`)."""
    kind = file_format(path, fmt)
    time_format: TimeFormat = table.attrs.get("time_format", "iso")
    out = table.copy()
    text = kind == "csv"
    nat = np.iinfo(np.int64).min
    for c in ("time", "acq_time"):
        ms = out[c].to_numpy(dtype=np.int64)
        out[c] = _time_out(ms, ms == nat, time_format, text)
    if kind == "parquet":
        out.to_parquet(path, index=False)
    else:
        out.to_csv(path, index=False, lineterminator="\n")
