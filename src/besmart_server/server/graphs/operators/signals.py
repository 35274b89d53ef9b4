"""Reading and writing signals: the `signals` and `write` operators and energy reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import pandas as pd
from pydantic import Field

from besmart_server.server.errors import Invalid
from besmart_server.server.graphs.operator_api import (
    ENERGY_PER_INTERVAL,
    MAX_STEP_MINUTES,
    POWER,
    Env,
    Id,
    Incompatible,
    Kind,
    Operator,
    Params,
    Quantity,
    Series,
    Windowed,
    as_series,
    empty_series,
    min_step,
    ms_to_ts,
    operator,
)
from besmart_server.server.signals.catalog import (
    SeriesKind,
    UnknownUnit,
    convert,
    signal_type_by_moid,
    unit_by_id,
    unit_by_symbol,
)

MINUTE = pd.Timedelta(minutes=1)


def step_of(series: Series, default_minutes: int | None = None) -> pd.Timedelta:
    """The series' smallest spacing (its step), or the default when it has < 2 points."""
    step = min_step(series.index)
    if step is not None:
        return step
    if default_minutes is None:
        raise ValueError("a step cannot be inferred from fewer than two points")
    return pd.Timedelta(minutes=default_minutes)


_KINDS: dict[SeriesKind, Kind] = {
    SeriesKind.INSTANTANEOUS: "instantaneous",
    SeriesKind.CUMULATIVE: "cumulative",
    SeriesKind.INTERVAL: "interval",
}
# Power units read_energy turns into energy per interval (kW * hours = kWh).
_POWER_TO_ENERGY = {"W": "Wh", "kW": "kWh", "MW": "MWh"}


def quantity_of(moid: int, output_unit_id: int | None = None) -> Quantity | None:
    """What a read of signal type `moid` holds (None for a type the catalog does not know)."""
    st = signal_type_by_moid(moid)
    if st is None:
        return None
    try:
        unit = unit_by_id(output_unit_id) if output_unit_id is not None else None
    except UnknownUnit:
        unit = None  # the read itself answers 422 for it
    dimension = (unit or unit_by_symbol(st.unit_symbol)).dimension
    return Quantity(dimension, _KINDS[st.time_series_type])


def energy_problem(moid: int) -> str | None:
    """Why signal type `moid` cannot be read as energy per interval (None: it can, or the type
    is unknown, which the read itself answers with 404)."""
    st = signal_type_by_moid(moid)
    if st is None:
        return None
    unit = unit_by_symbol(st.unit_symbol)
    if unit.dimension == "energy" or unit.symbol in _POWER_TO_ENERGY:
        return None
    return (
        f"signal type {moid} ({st.symbol}, {st.unit_symbol}) is neither active energy nor "
        "active power: it cannot be read as energy per interval"
    )


def read_energy(
    env: Env,
    client_cid: int,
    sensor_mid: int,
    moid: int,
    since: int,
    till: int,
    delta_t: int,
    **options: Any,
) -> Series:
    """Energy in kWh per `delta_t` bucket of [since, till), whatever the signal's kind.

    A cumulative register is read one bucket further so the last bucket's consumption is the
    difference of the counters at its two ends; power (kW) becomes mean power * bucket hours.
    """
    st = signal_type_by_moid(moid)
    step = pd.Timedelta(minutes=delta_t)
    kind = st.time_series_type if st is not None else SeriesKind.INTERVAL
    dimension = unit_by_symbol(st.unit_symbol).dimension if st is not None else "energy"
    extra = delta_t * 60_000 if kind == SeriesKind.CUMULATIVE else 0
    raw = as_series(
        env.ctx.read_signal(
            client_cid, sensor_mid, moid, since, till + extra, delta_t=delta_t, **options
        )
    )
    if kind == SeriesKind.CUMULATIVE:
        counters = raw.reindex(pd.date_range(ms_to_ts(since), ms_to_ts(till + extra), freq=step))
        energy = (counters.shift(-1) - counters).iloc[:-1]
    elif dimension == "power":
        energy = raw * (step / pd.Timedelta(hours=1))
    else:
        energy = raw
    energy = energy.dropna()
    energy = energy[energy.index < ms_to_ts(till)]
    if st is not None:
        unit = st.unit_symbol if dimension != "power" else "kWh"
        unit = _POWER_TO_ENERGY.get(unit, unit)
        energy = pd.Series(convert(energy.to_numpy(), unit, "kWh"), index=energy.index)
    return energy


class SignalsParams(Windowed):
    """Which signal to read and with which read options (docs/domain.md, "Reading a signal")."""

    client_cid: Id
    sensor_mid: Id
    moid: Id
    delta_t: int | None = Field(
        default=None, gt=0, le=MAX_STEP_MINUTES, description="bucket minutes"
    )
    signal_origin_id: int | None = Field(default=None, ge=1, le=5)
    get_last: bool = True
    apply_multiplier: bool = False
    raw: bool = False
    output_unit_id: Id | None = None
    energy_per_interval: bool = Field(
        default=False, description="kWh per delta_t bucket whatever the signal's kind"
    )


def _check_signals(p: SignalsParams, n_inputs: int) -> tuple[str, str] | None:
    if p.energy_per_interval and p.delta_t is None:
        return ("delta_t", "energy_per_interval needs delta_t")
    if p.energy_per_interval and (problem := energy_problem(p.moid)) is not None:
        return ("moid", problem)
    st = signal_type_by_moid(p.moid)
    if p.output_unit_id is not None and st is not None:
        try:
            unit = unit_by_id(p.output_unit_id)
        except UnknownUnit:
            return ("output_unit_id", f"Unknown unit id {p.output_unit_id}")
        have = unit_by_symbol(st.unit_symbol)
        if unit.dimension != have.dimension:
            return (
                "output_unit_id",
                f"Cannot convert {have.symbol} ({have.dimension}) to {unit.symbol} "
                f"({unit.dimension})",
            )
    return None


def _signals_output(p: SignalsParams, inputs: Sequence[Quantity | None]) -> Quantity | None:
    if p.energy_per_interval:
        return ENERGY_PER_INTERVAL
    return quantity_of(p.moid, p.output_unit_id)


@operator("signals", SignalsParams, check=_check_signals, output=_signals_output)
def signals(inputs: Sequence[Series], p: SignalsParams, env: Env) -> Series:
    """Read a signal over the (widened) window."""
    since, till = env.span(p.lookback_minutes, p.lookahead_minutes)
    options: dict[str, Any] = {"get_last": p.get_last}
    if p.signal_origin_id is not None:
        options["signal_origin_id"] = p.signal_origin_id
    if p.energy_per_interval:
        assert p.delta_t is not None  # _check_signals
        out = read_energy(
            env, p.client_cid, p.sensor_mid, p.moid, since, till, p.delta_t, **options
        )
    else:
        for name in ("delta_t", "output_unit_id"):
            if getattr(p, name) is not None:
                options[name] = getattr(p, name)
        if p.apply_multiplier:
            options["apply_multiplier"] = True
        if p.raw:
            options["raw"] = True
        out = as_series(
            env.ctx.read_signal(p.client_cid, p.sensor_mid, p.moid, since, till, **options)
        )
    env.metrics["points_read"] = len(out)
    return out


class WriteParams(Params):
    """Where the input goes and as which origin (2 forecast, 3 calculated, 4 estimated)."""

    client_cid: Id
    sensor_mid: Id
    moid: Id
    origin: Literal[2, 3, 4]
    series_is: Literal["energy", "power"] | None = Field(
        default=None,
        description="what the input holds (kWh per interval or kW): converted to the target "
        "signal type's unit; None writes the values as they are",
    )
    clip_to_window: bool = True
    freq_minutes: int | None = Field(
        default=None, gt=0, le=MAX_STEP_MINUTES, description="step if not inferable"
    )
    enabled: bool = Field(
        default=True, description="false: write nothing (an optional branch, e.g. the band)"
    )


def to_target_unit(series: Series, moid: int, series_is: str, freq_minutes: int | None) -> Series:
    """kWh per interval or kW in the unit of signal type `moid` (energy ↔ power by the step)."""
    st = signal_type_by_moid(moid)
    if st is None or len(series) == 0:
        return series
    dimension = unit_by_symbol(st.unit_symbol).dimension
    hours = step_of(series, freq_minutes) / pd.Timedelta(hours=1)
    values = series.to_numpy(dtype=float)
    if series_is == "energy" and dimension == "power":
        values, unit = values / hours, "kW"
    elif series_is == "power" and dimension == "energy":
        values, unit = values * hours, "kWh"
    else:
        unit = "kWh" if series_is == "energy" else "kW"
    return pd.Series(convert(values, unit, st.unit_symbol), index=series.index)


def _write_output(p: WriteParams, inputs: Sequence[Quantity | None]) -> Quantity | None:
    """The input passes on; what is written must fit the target signal type."""
    given = inputs[0]
    target = quantity_of(p.moid)
    st = signal_type_by_moid(p.moid)
    if target is None or st is None:
        return given  # an unknown type: the write itself answers for it
    name = f"signal type {p.moid} ({st.symbol}, {st.unit_symbol})"
    if p.series_is is not None:
        if target not in (ENERGY_PER_INTERVAL, POWER):
            raise Incompatible(
                ("params", "moid"),
                f"series_is={p.series_is!r} converts to energy per interval or power; {name} "
                f"holds {target.describe()}",
            )
        claimed = ENERGY_PER_INTERVAL if p.series_is == "energy" else POWER
        if given is not None and given != claimed:
            raise Incompatible(
                ("params", "series_is"),
                f"series_is={p.series_is!r}, but the input holds {given.describe()}",
            )
    elif given is not None and given != target:
        raise Incompatible(
            ("params", "moid"),
            f"the input holds {given.describe()}; {name} holds {target.describe()} (set "
            "series_is to convert energy per interval and power)",
        )
    return given


@operator("write", WriteParams, inputs=(1, 1), output=_write_output)
def write(inputs: Sequence[Series], p: WriteParams, env: Env) -> Series:
    """Write the input as points of a target signal; passes the input on."""
    if not p.enabled:
        return inputs[0]
    series = inputs[0].dropna()
    if p.clip_to_window:
        series = series[(series.index >= env.since) & (series.index < env.till)]
    if p.series_is is not None:
        if len(series) == 1 and p.freq_minutes is None:
            raise Invalid(
                "a single point's step (to convert energy and power) is unknown: give freq_minutes",
                loc=("nodes", env.node, "params", "freq_minutes"),
            )
        series = to_target_unit(series, p.moid, p.series_is, p.freq_minutes)
    n = env.write(p.client_cid, p.sensor_mid, p.moid, series, p.origin) if len(series) else 0
    env.metrics["points"] = n
    if n == 0:
        env.metrics["warning"] = "no points to write in the window"
    return inputs[0]


OPERATORS: tuple[Operator[Any], ...] = (signals, write)

__all__ = ["OPERATORS", "empty_series", "read_energy", "step_of", "to_target_unit"]
