"""Series arithmetic: `sum`, `difference`, `bound`, `scale`, `resample`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from besmart_server.server.graphs.operator_api import (
    MAX_STEP_MINUTES,
    Env,
    Incompatible,
    Operator,
    Params,
    Quantity,
    Series,
    empty_series,
    ns,
    operator,
    same_as_input,
)
from besmart_server.server.graphs.operators.signals import step_of
from besmart_server.server.signals.pipeline import subtract_rounded


class SumParams(Params):
    """How inputs with different timestamps combine."""

    align: Literal["inner", "outer"] = Field(
        default="inner", description="inner: only common times; outer: missing counts as 0"
    )


def _all_alike(p: Params, inputs: Sequence[Quantity | None]) -> Quantity | None:
    """Sums and differences add like to like: their known inputs must hold one quantity."""
    known = {q for q in inputs if q is not None}
    if len(known) > 1:
        what = " and ".join(sorted(q.describe() for q in known))
        raise Incompatible(("inputs",), f"the inputs hold different quantities: {what}")
    return inputs[0] if len(known) == 1 and None not in inputs else None


@operator("sum", SumParams, inputs=(1, None), output=_all_alike)
def sum_(inputs: Sequence[Series], p: SumParams, env: Env) -> Series:
    """The sum of the inputs at each time."""
    frame = pd.concat(list(inputs), axis=1, join=p.align)
    if frame.empty:
        return empty_series()
    return frame.sum(axis=1, min_count=1) if p.align == "outer" else frame.sum(axis=1)


class DifferenceParams(Params):
    """No parameters: the first input minus the second at their common times."""


@operator("difference", DifferenceParams, inputs=(2, 2), output=_all_alike)
def difference(inputs: Sequence[Series], p: DifferenceParams, env: Env) -> Series:
    """The first input minus the second, where both have a value."""
    a, b = inputs
    common = a.index.intersection(b.index)
    diff = subtract_rounded(
        np.asarray(a.loc[common], dtype=np.float64), np.asarray(b.loc[common], dtype=np.float64)
    )
    return pd.Series(diff, index=common)


class BoundParams(Params):
    """Which side of the second input the first is kept on."""

    keep: Literal["below", "above"] = Field(
        description="below: at most the second input (a P10 under its P50); above: at least"
    )


@operator("bound", BoundParams, inputs=(2, 2), output=_all_alike)
def bound(inputs: Sequence[Series], p: BoundParams, env: Env) -> Series:
    """The first input, moved to the second where it is on the wrong side of it; where the
    second has no value the first stays as it is. Quantiles forecast by separate models may
    cross; this puts them back in order, so a chart's band always contains its median."""
    a, b = inputs
    if len(a) == 0:
        return a
    ref = b.reindex(a.index).to_numpy(dtype=float)
    values = a.to_numpy(dtype=float)
    kept = np.fmin(values, ref) if p.keep == "below" else np.fmax(values, ref)
    # fmin/fmax take the other value where one is NaN: a missing first value stays missing
    return pd.Series(np.where(np.isnan(values), np.nan, kept), index=a.index)


class ScaleParams(Params):
    """y = x * factor + offset."""

    factor: float = 1.0
    offset: float = 0.0


@operator("scale", ScaleParams, inputs=(1, 1), output=same_as_input)
def scale(inputs: Sequence[Series], p: ScaleParams, env: Env) -> Series:
    """Multiply by a factor and add an offset."""
    return inputs[0] * p.factor + p.offset


class ResampleParams(Params):
    """A new step: `mean`/`sum` aggregate into epoch-aligned buckets (labelled by their start);
    `interpolate`, `ffill` and `split` (an interval's energy spread evenly) refine."""

    freq_minutes: int = Field(gt=0, le=MAX_STEP_MINUTES)
    how: Literal["mean", "sum", "interpolate", "ffill", "split"] = "mean"


def resample(series: Series, freq_minutes: int, how: str) -> Series:
    """`series` at a step of `freq_minutes` (see ResampleParams)."""
    if len(series) == 0:
        return empty_series()
    step = pd.Timedelta(minutes=freq_minutes)
    if how in ("mean", "sum"):
        buckets = series.resample(step, origin="epoch", label="left", closed="left")
        return (buckets.mean() if how == "mean" else buckets.sum(min_count=1)).dropna()
    src_step = step_of(series, freq_minutes)
    start = series.index[0].floor(step)
    end = series.index[-1] + src_step
    index = pd.date_range(start, end, freq=step, inclusive="left")
    if how == "interpolate":
        union = series.index.union(index)
        filled = series.reindex(union).interpolate(method="time", limit_area="inside")
        return filled.reindex(index).dropna()
    # each target interval takes the source interval [t, t + src_step) that contains it
    src = ns(series.index)
    pos = np.searchsorted(src, ns(index), side="right") - 1
    inside = (pos >= 0) & (ns(index) < src[np.maximum(pos, 0)] + src_step.value)
    values = series.to_numpy(dtype=float)[pos[inside]]
    if how == "split":
        values = values * (step / src_step)
    return pd.Series(values, index=index[inside])


@operator("resample", ResampleParams, inputs=(1, 1), output=same_as_input)
def resample_op(inputs: Sequence[Series], p: ResampleParams, env: Env) -> Series:
    """Change the step of a series."""
    return resample(inputs[0], p.freq_minutes, p.how)


OPERATORS: tuple[Operator[Any], ...] = (sum_, difference, bound, scale, resample_op)
