"""What an operator is written against: series, parameters, the run's I/O and `operator`.

The operators (`graphs/operators/*`) and the engine that runs them both import this module;
it imports neither, so the registry the engine uses can be built at import time without an
import cycle. Series between nodes are float `pd.Series` indexed by a UTC `DatetimeIndex`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, Generic, Literal, Protocol, TypeAlias, TypeVar

import holidays as holidays_lib
import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from besmart_server.schemas import ID_MAX
from besmart_server.server.signals import calendar

Series: TypeAlias = "pd.Series[float]"
Loc: TypeAlias = tuple[str | int, ...]

MS_PER_MINUTE: Final = 60_000
MS_PER_DAY: Final = 86_400_000
# Graphs compute on pandas' nanosecond timestamps (years 1677 to 2262): windows stay well inside,
# so steps and lookbacks added to them cannot overflow.
TIME_MIN_MS: Final = -2_208_988_800_000  # 1900-01-01T00:00:00Z
TIME_MAX_MS: Final = 7_258_118_400_000  # 2200-01-01T00:00:00Z
TIME_RANGE: Final = "1900-01-01 to 2200-01-01 (UTC)"
MAX_STEP_MINUTES: Final = 366 * 1440  # no step, bucket or freq_minutes is longer than a year
MAX_SHIFT_MINUTES: Final = 100 * 366 * 1440  # lookback/lookahead: 100 years at most


# --- time ------------------------------------------------------------------------------------


def ms_to_ts(ms: int) -> pd.Timestamp:
    """UTC unix milliseconds as a UTC timestamp."""
    return pd.Timestamp(ms, unit="ms", tz="UTC").as_unit("ns")


def ts_to_ms(ts: pd.Timestamp) -> int:
    """A timestamp as UTC unix milliseconds."""
    return int(ts.value // 1_000_000)


def times(series: Series) -> pd.DatetimeIndex:
    """A series' index as the DatetimeIndex every series between nodes has."""
    return pd.DatetimeIndex(series.index)


def ns(index: pd.Index[Any] | pd.DatetimeIndex) -> NDArray[np.int64]:
    """An index's times as int64 nanoseconds (pandas 3 picks other units by default)."""
    return np.asarray(pd.DatetimeIndex(index).as_unit("ns").asi8, dtype=np.int64)


def min_step(index: pd.Index[Any] | pd.DatetimeIndex) -> pd.Timedelta | None:
    """The smallest spacing of a sorted time index; None with fewer than two times."""
    t = ns(index)
    return pd.Timedelta(int((t[1:] - t[:-1]).min()), unit="ns") if len(t) > 1 else None


def grid(since: pd.Timestamp, till: pd.Timestamp, freq_minutes: int) -> pd.DatetimeIndex:
    """Interval starts `g`, since <= g < till, aligned to multiples of the step since the epoch."""
    step = pd.Timedelta(minutes=freq_minutes)
    start = since.ceil(step)  # ceil on a UTC timestamp aligns to the epoch
    return pd.date_range(start, till, freq=step, inclusive="left").as_unit("ns")


def empty_series() -> Series:
    """A float series with no points and a UTC index."""
    return pd.Series(np.array([], dtype=float), index=pd.DatetimeIndex([], tz="UTC").as_unit("ns"))


def as_series(values: Any) -> Series:
    """`values` as a sorted float series with a unique UTC DatetimeIndex (last duplicate wins)."""
    if not isinstance(values, pd.Series):
        raise TypeError(f"expected a pandas Series, got {type(values).__name__}")
    if len(values) == 0:
        return empty_series()
    index = pd.DatetimeIndex(values.index)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    index = index.as_unit("ns")
    out = pd.Series(np.asarray(values, dtype=float), index=index)
    out = out[~out.index.duplicated(keep="last")]
    return out.sort_index()


# --- the I/O the operators need -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    """A sensor below a node in the grid tree, with its energy-balance flags."""

    sensor_mid: int
    balance_calculation: bool
    negligible: bool = False
    uncertain: bool = False


class Context(Protocol):
    """What operators may do outside the engine; times are UTC ms, windows half-open."""

    def read_signal(
        self,
        client_cid: int,
        sensor_mid: int,
        moid: int,
        since: int,
        till: int,
        **read_options: Any,
    ) -> Series:
        """A signal over [since, till) with docs/domain.md's read options (delta_t, get_last)."""
        ...

    def read_weather(
        self, lat: float, lon: float, moid: int, since: int, till: int, **read_options: Any
    ) -> Series:
        """Weather at a place over [since, till), in the signal type's unit."""
        ...

    def sensors_below(self, client_cid: int, node_mid: int) -> list[Member]:
        """The sensors whose parent node is `node_mid`."""
        ...

    def write(
        self, client_cid: int, sensor_mid: int, moid: int, series: Series, origin: int
    ) -> int:
        """Collect points for a target (stored as one transaction per target); the count written."""
        ...


@dataclass(slots=True)
class Env:
    """What an operator sees of its run: the I/O context, the window and its own metrics."""

    ctx: Context
    since: pd.Timestamp
    till: pd.Timestamp
    run_time: pd.Timestamp
    node: int = 0
    item: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)

    def span(self, lookback_minutes: int = 0, lookahead_minutes: int = 0) -> tuple[int, int]:
        """The window widened by the given minutes, as UTC ms."""
        return (
            ts_to_ms(self.since) - lookback_minutes * MS_PER_MINUTE,
            ts_to_ms(self.till) + lookahead_minutes * MS_PER_MINUTE,
        )

    def write(
        self, client_cid: int, sensor_mid: int, moid: int, series: Series, origin: int
    ) -> int:
        """Write through the context and count the points per target."""
        n = self.ctx.write(client_cid, sensor_mid, moid, series, origin)
        key = target_key(client_cid, sensor_mid, moid, origin)
        self.written[key] = self.written.get(key, 0) + n
        return n


def target_key(client_cid: int, sensor_mid: int, moid: int, origin: int) -> str:
    """How a run record names a written series: `cid.mid/moid/origin`."""
    return f"{client_cid}.{sensor_mid}/{moid}/{origin}"


# --- operators ------------------------------------------------------------------------------


class Params(BaseModel):
    """Base of every operator's parameters: unknown keys are an error."""

    # NaN and infinities (JSON bodies may carry them) are never meaningful parameters.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Windowed(Params):
    """Parameters of operators that may look beyond the run's window."""

    lookback_minutes: int = Field(
        default=0, ge=0, le=MAX_SHIFT_MINUTES, description="extend the window backwards"
    )
    lookahead_minutes: int = Field(
        default=0, ge=0, le=MAX_SHIFT_MINUTES, description="extend the window forwards"
    )


def _time_zone(value: str) -> str:
    try:
        calendar.zone(value)
    except calendar.CalendarError:
        raise ValueError(
            f"unknown time zone {value!r}: an IANA name such as Europe/Warsaw"
        ) from None
    return value


def _country(value: str | None) -> str | None:
    if value is not None and value not in holidays_lib.list_supported_countries():
        raise ValueError(
            f"no public holidays are known for country {value!r}: an ISO 3166 alpha-2 code "
            "such as PL, or null for none"
        )
    return value


# Checked when the params are validated, so a bad zone or country is a 422 naming the parameter
# before anything runs (pandas and `holidays` would only fail half-way through the run).
TimeZone: TypeAlias = Annotated[str, AfterValidator(_time_zone)]
Country: TypeAlias = Annotated[str | None, AfterValidator(_country)]

# An id of a client, sensor, signal type or unit: a larger number would fail in the database.
Id: TypeAlias = Annotated[int, Field(ge=0, le=ID_MAX)]

Kind: TypeAlias = Literal["instantaneous", "cumulative", "interval"]


@dataclass(frozen=True, slots=True)
class Quantity:
    """What a series between nodes holds, as far as the graph tells before it runs: the
    dimension of its unit (the catalog's: energy, power, voltage...) and how its points relate
    in time (readings of a register, energy per interval, or instantaneous values)."""

    dimension: str
    kind: Kind

    def describe(self) -> str:
        """For error messages."""
        return {
            ("energy", "interval"): "energy per interval (kWh)",
            ("energy", "cumulative"): "energy register readings",
            ("power", "instantaneous"): "power (kW)",
        }.get((self.dimension, self.kind), f"{self.kind} {self.dimension}")


ENERGY_PER_INTERVAL: Final = Quantity("energy", "interval")
POWER: Final = Quantity("power", "instantaneous")


class Incompatible(Exception):
    """Raised by an operator's `output` rule: what flows into it cannot be used as asked.
    `where` is relative to the node, e.g. ("params", "moid") or ("inputs",)."""

    def __init__(self, where: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message


P = TypeVar("P", bound=Params)
OpFn: TypeAlias = Callable[[Sequence[Series], P, Env], Series]
Check: TypeAlias = Callable[[P, int], tuple[str, str] | None]
# What a node outputs given its params and its inputs' quantities (None: not known); raises
# Incompatible when the inputs do not fit. Without one, a node's output is not known.
Output: TypeAlias = Callable[[P, Sequence[Quantity | None]], Quantity | None]


def same_as_input(p: Params, inputs: Sequence[Quantity | None]) -> Quantity | None:
    """The `output` of operators that keep their (first) input's quantity."""
    return inputs[0] if inputs else None


def produces(quantity: Quantity) -> Callable[[Params, Sequence[Quantity | None]], Quantity]:
    """The `output` of operators that always make the same quantity."""

    def output(p: Params, inputs: Sequence[Quantity | None]) -> Quantity:
        return quantity

    return output


@dataclass(frozen=True, slots=True)
class Operator(Generic[P]):
    """A function a graph node may name: its typed parameters and how many inputs it takes."""

    name: str
    params: type[P]
    fn: OpFn[P]
    min_inputs: int = 0
    max_inputs: int | None = 0  # None: any number
    check: Check[P] | None = None  # cross-field rules: (param, message) when broken
    doc: str = ""
    output: Output[P] | None = None

    def __call__(self, inputs: Sequence[Series], params: P, env: Env) -> Series:
        """Run the operator on already validated params."""
        return self.fn(inputs, params, env)


Registry: TypeAlias = Mapping[str, Operator[Any]]


def operator(
    name: str,
    params: type[P],
    *,
    inputs: tuple[int, int | None] = (0, 0),
    check: Check[P] | None = None,
    output: Output[P] | None = None,
) -> Callable[[OpFn[P]], Operator[P]]:
    """Declare a function as the operator `name` with its parameter model, input arity and
    (optionally) the quantity it outputs."""

    def wrap(fn: OpFn[P]) -> Operator[P]:
        doc = (fn.__doc__ or "").strip().splitlines()
        first = doc[0] if doc else ""
        return Operator(name, params, fn, inputs[0], inputs[1], check, first, output)

    return wrap
