"""An in-memory `Context` for graph tests: plain dicts behind the engine's own I/O protocol.

Aggregation goes through the real pure pipeline, so `delta_t` means here what it means in
the signal service.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from besmart_server.server.graphs.operator_api import Member, Series, as_series, empty_series, ns
from besmart_server.server.signals.catalog import SeriesKind, signal_type_by_moid
from besmart_server.server.signals.pipeline import Frame, aggregate

Key = tuple[int, int, int]


def series(values: Any, start: str, freq: str) -> Series:
    """A float series from `start` (UTC) at a fixed step."""
    arr = np.asarray(values, dtype=float)
    return pd.Series(arr, index=pd.date_range(start, periods=len(arr), freq=freq, tz="UTC"))


def ms(ts: str) -> int:
    """An ISO time (UTC) as unix ms."""
    return int(pd.Timestamp(ts, tz="UTC").value // 1_000_000)


def _select(s: Series, since: int, till: int, delta_t: int | None, kind: SeriesKind) -> Series:
    if len(s) == 0:
        return empty_series()
    if delta_t is None:
        t = ns(s.index) // 1_000_000
        return s[(t >= since) & (t < till)]
    t = (ns(s.index) // 1_000_000).astype(np.int64)
    n = len(s)
    frame = Frame(
        t,
        np.ones(n, dtype=np.int64),
        np.zeros(n, dtype=np.int64),
        np.zeros(n, dtype=np.int8),
        np.asarray(s.to_numpy(), dtype=np.float64),
    )
    out = aggregate(frame, delta_t_minutes=delta_t, kind=kind, since=since, till=till)
    return pd.Series(out.value, index=pd.to_datetime(out.time, unit="ms", utc=True))


@dataclass
class MemoryContext:
    """Signals by (cid, mid, moid), weather by moid (the same everywhere), a grid tree."""

    signals: dict[Key, Series] = field(default_factory=dict)
    weather: dict[int, Series] = field(default_factory=dict)
    tree: dict[tuple[int, int], list[Member]] = field(default_factory=dict)
    written: dict[tuple[int, int, int, int], Series] = field(default_factory=dict)
    reads: list[tuple[Any, ...]] = field(default_factory=list)

    def read_signal(
        self,
        client_cid: int,
        sensor_mid: int,
        moid: int,
        since: int,
        till: int,
        **read_options: Any,
    ) -> Series:
        self.reads.append(("signal", client_cid, sensor_mid, moid, since, till, read_options))
        st = signal_type_by_moid(moid)
        kind = st.time_series_type if st is not None else SeriesKind.INSTANTANEOUS
        s = self.signals.get((client_cid, sensor_mid, moid), empty_series())
        return _select(as_series(s), since, till, read_options.get("delta_t"), kind)

    def read_weather(
        self, lat: float, lon: float, moid: int, since: int, till: int, **read_options: Any
    ) -> Series:
        self.reads.append(("weather", lat, lon, moid, since, till, read_options))
        s = self.weather.get(moid, empty_series())
        return _select(
            as_series(s), since, till, read_options.get("delta_t"), SeriesKind.INSTANTANEOUS
        )

    def sensors_below(self, client_cid: int, node_mid: int) -> list[Member]:
        return list(self.tree.get((client_cid, node_mid), []))

    def write(
        self, client_cid: int, sensor_mid: int, moid: int, series: Series, origin: int
    ) -> int:
        key = (client_cid, sensor_mid, moid, origin)
        prior = self.written.get(key)
        self.written[key] = series if prior is None else pd.concat([prior, series]).sort_index()
        return len(series)
