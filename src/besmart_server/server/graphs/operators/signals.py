"""Reading and writing signals: the `signals` and `write` operators and energy reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import pandas as pd
from pydantic import Field

from besmart_server.server.graphs.engine import (
    Env,
    Operator,
    Params,
    Series,
    Windowed,
    as_series,
    empty_series,
    min_step,
    ms_to_ts,
    operator,
)
from besmart_server.server.signals.catalog import convert, signal_type_by_moid, unit_by_symbol
from besmart_server.server.signals.pipeline import SeriesKind

MINUTE = pd.Timedelta(minutes=1)


def step_of(series: Series, default_minutes: int | None = None) -> pd.Timedelta:
    """The series' smallest spacing (its step), or the default when it has < 2 points."""
    step = min_step(series.index)
    if step is not None:
        return step
    if default_minutes is None:
        raise ValueError("a step cannot be inferred from fewer than two points")
    return pd.Timedelta(minutes=default_minutes)


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
        unit = {"W": "Wh", "kW": "kWh", "MW": "MWh"}.get(unit, unit)
        energy = pd.Series(convert(energy.to_numpy(), unit, "kWh"), index=energy.index)
    return energy


class SignalsParams(Windowed):
    """Which signal to read and with which read options (domain.md § Reading a signal)."""

    client_cid: int
    sensor_mid: int
    moid: int
    delta_t: int | None = Field(default=None, gt=0, description="bucket minutes")
    signal_origin_id: int | None = Field(default=None, ge=1, le=5)
    get_last: bool = True
    apply_multiplier: bool = False
    raw: bool = False
    output_unit_id: int | None = None
    energy_per_interval: bool = Field(
        default=False, description="kWh per delta_t bucket whatever the signal's kind"
    )


def _check_signals(p: SignalsParams, n_inputs: int) -> tuple[str, str] | None:
    if p.energy_per_interval and p.delta_t is None:
        return ("delta_t", "energy_per_interval needs delta_t")
    return None


@operator("signals", SignalsParams, check=_check_signals)
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

    client_cid: int
    sensor_mid: int
    moid: int
    origin: Literal[2, 3, 4]
    series_is: Literal["energy", "power"] | None = Field(
        default=None,
        description="what the input holds (kWh per interval or kW): converted to the target "
        "signal type's unit; None writes the values as they are",
    )
    clip_to_window: bool = True
    freq_minutes: int | None = Field(default=None, gt=0, description="step if not inferable")


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


@operator("write", WriteParams, inputs=(1, 1))
def write(inputs: Sequence[Series], p: WriteParams, env: Env) -> Series:
    """Write the input as points of a target signal; passes the input on."""
    series = inputs[0].dropna()
    if p.clip_to_window:
        series = series[(series.index >= env.since) & (series.index < env.till)]
    if p.series_is is not None:
        series = to_target_unit(series, p.moid, p.series_is, p.freq_minutes)
    n = env.write(p.client_cid, p.sensor_mid, p.moid, series, p.origin) if len(series) else 0
    env.metrics["points"] = n
    return inputs[0]


OPERATORS: tuple[Operator[Any], ...] = (signals, write)

__all__ = ["OPERATORS", "empty_series", "read_energy", "step_of", "to_target_unit"]
