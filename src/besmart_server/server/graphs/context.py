"""The engine's `Context` over the database: reads through the signal and weather services,
the grid tree from the sensors table, writes collected during a run and flushed afterwards.

Each read is its own short read transaction, so a long run holds no lock; the writes of a run
are kept in memory until it has finished (a failing run writes nothing) and are then stored
through `signals.service.write` in one transaction per target series, every point with
`acq_time` = the run's time, so a re-run adds a newer version beside the earlier one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd
from sqlalchemy import Connection, select

from besmart_server.schemas.users import Role
from besmart_server.server.access import Principal, sensor_for
from besmart_server.server.db import Database
from besmart_server.server.errors import Invalid, NotFound
from besmart_server.server.graphs.operator_api import Member, Series, as_series, empty_series, ns
from besmart_server.server.sensors.tables import sensors
from besmart_server.server.signals import service as signals
from besmart_server.server.signals.columns import Columns
from besmart_server.server.signals.pipeline import Frame, round_significant
from besmart_server.server.signals.store import SeriesStore
from besmart_server.server.vee import audit as vee_audit
from besmart_server.server.weather import service as weather
from besmart_server.wire import TYPE_DBL, TYPE_INT

Target = tuple[int, int, int]  # (client_cid, sensor_mid, moid)

_SIGNAL_OPTIONS: Final = frozenset(
    {"get_last", "signal_origin_id", "delta_t", "raw", "apply_multiplier", "output_unit_id", "tz"}
)
_WEATHER_OPTIONS: Final = frozenset({"get_last", "signal_origin_id", "delta_t", "tz"})
_NUMERIC: Final = (TYPE_DBL, TYPE_INT)


def _series(f: Frame) -> Series:
    """A read's numeric points (DBL/INT) as a float series on a UTC index; other types are
    left out."""
    if not len(f):
        return empty_series()
    keep = np.isin(f.type, _NUMERIC)
    index = pd.to_datetime(f.time[keep], unit="ms", utc=True)
    return as_series(pd.Series(f.value[keep], index=index))


def _options(given: dict[str, Any], allowed: frozenset[str], what: str) -> dict[str, Any]:
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise Invalid(f"Unknown {what} read option {unknown[0]!r}", loc=("read_options",))
    return given


Transactions = Callable[..., AbstractContextManager[Connection]]  # (*, write: bool)


def within(conn: Connection) -> Transactions:
    """Transactions inside one open connection: reads use it as it is, each flush a SAVEPOINT
    (for callers that own the transaction, such as the demo loader)."""

    @contextmanager
    def transaction(*, write: bool = True) -> Iterator[Connection]:
        if not write:
            yield conn
            return
        with conn.begin_nested():
            yield conn

    return transaction


@dataclass
class DbContext:
    """The graph engine's I/O against one database, on behalf of one principal.

    `transaction` opens the transactions (`Database.transaction`, or `within(conn)`).
    `as_of` (UTC ms) makes every signal read see the data as it stood then: only versions
    acquired before it (backtests without leakage). Writes wait in `pending` for `flush`.
    """

    transaction: Transactions
    dialect: str
    principal: Principal
    as_of: int | None = None
    max_points_per_read: int = 5_000_000
    max_window_days: int | None = None  # each read's window, as a data read checks it (413)
    weather_radius_km: float = 50.0
    weather_neighbours: int = 4
    store: SeriesStore | None = None
    # Who a run's estimated/corrected writes are audited as (VEE), e.g. "graph run 7 by ann",
    # and the method: None writes no audit (backtests, tests).
    audit_as: tuple[str, str] | None = None
    pending: dict[tuple[int, int, int, int], list[Series]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def __post_init__(self) -> None:
        if self.store is None:
            self.store = SeriesStore(self.dialect)

    @classmethod
    def over(cls, db: Database, principal: Principal, **options: Any) -> DbContext:
        """A context that opens its own transactions on `db`."""
        return cls(db.transaction, db.dialect, principal, **options)

    @classmethod
    def inside(cls, conn: Connection, principal: Principal, **options: Any) -> DbContext:
        """A context inside the caller's transaction on `conn`."""
        return cls(within(conn), conn.dialect.name, principal, **options)

    @property
    def _store(self) -> SeriesStore:
        assert self.store is not None  # __post_init__
        return self.store

    def read_signal(
        self,
        client_cid: int,
        sensor_mid: int,
        moid: int,
        since: int,
        till: int,
        **read_options: Any,
    ) -> Series:
        """A signal through the read pipeline (as of `self.as_of` when set)."""
        opts = _options(read_options, _SIGNAL_OPTIONS, "signal")
        q = signals.ReadQuery(
            client_cid=client_cid,
            sensor_mid=sensor_mid,
            signal_type_moid=moid,
            since=since,
            till=till,
            get_last=bool(opts.get("get_last", False)),
            signal_origin_id=opts.get("signal_origin_id"),
            delta_t=opts.get("delta_t"),
            raw=bool(opts.get("raw", False)),
            apply_multiplier=bool(opts.get("apply_multiplier", False)),
            output_unit_id=opts.get("output_unit_id"),
            as_of=self.as_of,
            tz=opts.get("tz"),
        )
        budget = signals.ReadBudget(self.max_points_per_read, max_window_days=self.max_window_days)
        with self.transaction(write=False) as conn:
            got = signals.read_frame(conn, self._store, self.principal, q, budget=budget)
        return _series(got.frame)

    def read_weather(
        self, lat: float, lon: float, moid: int, since: int, till: int, **read_options: Any
    ) -> Series:
        """Weather at a place through the weather service; empty where no grid point is near."""
        opts = _options(read_options, _WEATHER_OPTIONS, "weather")
        q = weather.WeatherQuery(
            lat=lat,
            lon=lon,
            signal_type_moid=moid,
            since=since,
            till=till,
            delta_t=opts.get("delta_t"),
            signal_origin_id=opts.get("signal_origin_id"),
            get_last=bool(opts.get("get_last", True)),
            tz=opts.get("tz"),
        )
        budget = signals.ReadBudget(self.max_points_per_read, max_window_days=self.max_window_days)
        try:
            with self.transaction(write=False) as conn:
                got = weather.read_weather_frame(
                    conn,
                    self._store,
                    q,
                    radius_km=self.weather_radius_km,
                    neighbours=self.weather_neighbours,
                    budget=budget,
                )
        except NotFound:
            return empty_series()
        return _series(got.frame)

    def sensors_below(self, client_cid: int, node_mid: int) -> list[Member]:
        """The node's children in the grid tree with their balance flags (node readable)."""
        with self.transaction(write=False) as conn:
            sensor_for(conn, self.principal, client_cid, node_mid, Role.read)
            rows = conn.execute(
                select(
                    sensors.c.mid,
                    sensors.c.balance_calculation,
                    sensors.c.negligible,
                    sensors.c.uncertain,
                )
                .where(sensors.c.client_cid == client_cid, sensors.c.node_id == node_mid)
                .order_by(sensors.c.mid)
            ).all()
        return [
            Member(int(r.mid), bool(r.balance_calculation), bool(r.negligible), bool(r.uncertain))
            for r in rows
        ]

    def write(
        self, client_cid: int, sensor_mid: int, moid: int, series: Series, origin: int
    ) -> int:
        """Keep the points for `flush`; the count of finite points kept."""
        s = series[np.isfinite(series.to_numpy(dtype=float))]
        if len(s):
            self.pending[(client_cid, sensor_mid, moid, origin)].append(s)
        return len(s)

    def targets(self) -> list[Target]:
        """The series the run has written so far."""
        return sorted({(cid, mid, moid) for cid, mid, moid, _ in self.pending})

    def fresh_run_time(self, conn: Connection, at_least_ms: int) -> int:
        """A run_time for `flush` into `conn` that no stored version of the pending targets
        has (their series locked until `conn` commits): two runs over one series that
        started in the same millisecond store two versions, not one."""
        keys = {(mid, moid) for _, mid, moid, _ in self.pending}
        return self._store.fresh_stamp(conn, keys, at_least_ms)

    def flush(self, run_time: int, *, into: Connection | None = None) -> dict[Target, int]:
        """Store the collected points, one transaction per target series, with acq_time =
        `run_time`; the points stored per target. Targets stored before a failure stay, unless
        `into` is given: then every target is a SAVEPOINT of that one transaction, which the
        caller commits together with whatever says the run is done."""
        transaction = self.transaction if into is None else within(into)
        by_target: dict[Target, list[tuple[int, Series]]] = defaultdict(list)
        for (cid, mid, moid, origin), parts in self.pending.items():
            for part in parts:
                by_target[(cid, mid, moid)].append((origin, part))
        stored: dict[Target, int] = {}
        for target in sorted(by_target):
            columns = _columns(by_target[target], run_time)
            cid, mid, moid = target
            item = signals.WriteItem(cid, mid, moid, None, columns, ("graph", "write"))
            with transaction() as conn:
                stored[target] = signals.write(conn, self._store, self.principal, [item])
                # Audited, not queued for validation: the rules check measured points
                # (origin 1) and a run writes origins 2, 3 and 4 only (signals.write operator).
                if self.audit_as is not None:
                    who, method = self.audit_as
                    vee_audit.record_write(
                        conn, self._store, self.principal, item, who=who, method=method
                    )
            del_keys = [k for k in self.pending if k[:3] == target]
            for k in del_keys:
                del self.pending[k]
        return stored


def _columns(parts: list[tuple[int, Series]], run_time: int) -> Columns:
    """The parts of one target as write columns (later parts win on equal time and origin),
    values rounded to 15 significant digits as every computed value is (issue #14: a residual
    0.3 - 0.2 is stored as 0.1, not 0.09999999999999998)."""
    times, origins, values = [], [], []
    for origin, s in parts:
        t = ns(s.index) // 1_000_000
        times.append(t)
        origins.append(np.full(t.shape[0], origin, dtype=np.int64))
        values.append(s.to_numpy(dtype=np.float64))
    time = np.concatenate(times)
    n = time.shape[0]
    return Columns(
        time=time,
        origin=np.concatenate(origins),
        type=np.full(n, TYPE_DBL, dtype=np.int8),
        value=round_significant(np.concatenate(values)),
        text=None,
        acq_ms=np.full(n, run_time, dtype=np.int64),
    )
