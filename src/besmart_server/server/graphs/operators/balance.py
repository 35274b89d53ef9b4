"""`balance`: a node's energy minus its children's that count in the balance; the residual."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from besmart_server.server.graphs.operator_api import (
    ENERGY_PER_INTERVAL,
    MAX_STEP_MINUTES,
    Env,
    Id,
    Member,
    Operator,
    Params,
    Series,
    operator,
    produces,
)
from besmart_server.server.graphs.operators.signals import energy_problem, read_energy
from besmart_server.server.signals.pipeline import subtract_rounded


def balance(parent: Series, children: Mapping[int, Series]) -> tuple[Series, dict[str, Any]]:
    """Residual = parent - Σ children in every interval where all of them have a value.

    parent == Σ children + residual holds in each returned interval up to float rounding.
    """
    frame = pd.concat({-1: parent, **children}, axis=1, join="outer").sort_index()
    complete = frame.notna().all(axis=1)
    full = frame[complete]
    values = full.to_numpy(dtype=float)
    inputs = values[:, 0]
    outputs = values[:, 1:].sum(axis=1) if values.shape[1] > 1 else np.zeros(len(full))
    residual = pd.Series(subtract_rounded(inputs, outputs), index=full.index)
    total_in = float(inputs.sum())
    metrics: dict[str, Any] = {
        "intervals": len(full),
        "intervals_incomplete": int((~complete).sum()),
        "input_kWh": float(inputs.sum()),
        "outputs_kWh": float(outputs.sum()),
        "residual_kWh": float(residual.sum()),
        "residual_share": float(residual.sum() / total_in) if abs(total_in) > 1e-9 else None,
    }
    return residual, metrics


def split_members(members: Sequence[Member]) -> tuple[list[int], list[int], list[int]]:
    """(included, negligible ones left out, uncertain ones included but flagged)."""
    counted = [m for m in members if m.balance_calculation]
    included = [m.sensor_mid for m in counted if not m.negligible]
    negligible = [m.sensor_mid for m in counted if m.negligible]
    uncertain = [m.sensor_mid for m in counted if m.uncertain and not m.negligible]
    return included, negligible, uncertain


class BalanceParams(Params):
    """The node, which energy signal to balance and at which step."""

    client_cid: Id
    node_mid: Id
    moid: Id = Field(default=32, description="an energy signal: A+ register by default")
    delta_t: int = Field(default=15, gt=0, le=MAX_STEP_MINUTES)
    get_last: bool = True
    apply_multiplier: bool = Field(
        default=False, description="read primary-side values (CT/VT ratios of the states)"
    )
    skip_children_without_data: bool = Field(
        default=False,
        description="leave out (and list) counted children with no data in the window, instead "
        "of leaving every interval incomplete",
    )


def _check(p: BalanceParams, n_inputs: int) -> tuple[str, str] | None:
    problem = energy_problem(p.moid)
    return None if problem is None else ("moid", problem)


@operator("balance", BalanceParams, check=_check, output=produces(ENERGY_PER_INTERVAL))
def balance_op(inputs: Sequence[Series], p: BalanceParams, env: Env) -> Series:
    """The node's residual energy (kWh per interval): its own minus its counted children's."""
    since, till = env.span()
    members = env.ctx.sensors_below(p.client_cid, p.node_mid)
    included, negligible, uncertain = split_members(members)

    options: dict[str, Any] = {"get_last": p.get_last}
    if p.apply_multiplier:
        options["apply_multiplier"] = True

    def energy(mid: int) -> Series:
        return read_energy(env, p.client_cid, mid, p.moid, since, till, p.delta_t, **options)

    children = {mid: energy(mid) for mid in included}
    no_data = [mid for mid, s in children.items() if not len(s.dropna())]
    if p.skip_children_without_data:
        children = {mid: s for mid, s in children.items() if mid not in no_data}
    residual, metrics = balance(energy(p.node_mid), children)
    metrics |= {
        "children": sorted(children),
        "negligible_excluded": negligible,
        "uncertain": uncertain,
        "without_data": no_data,
    }
    env.metrics.update(metrics)
    return residual


OPERATORS: tuple[Operator[Any], ...] = (balance_op,)
