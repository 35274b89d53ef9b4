"""The built-in operators, one module per family, gathered into the registry graphs name."""

from __future__ import annotations

from typing import Any

from besmart_server.server.graphs.operator_api import Operator
from besmart_server.server.graphs.operators import (
    arithmetic,
    balance,
    estimation,
    forecast,
    gap_fill,
    generation,
    profile,
    pv,
    signals,
    weather,
    wind,
)

_FAMILIES = (signals, weather, arithmetic, pv, wind, generation, profile, estimation, forecast)


def _registry() -> dict[str, Operator[Any]]:
    registry: dict[str, Operator[Any]] = {}
    for family in (*_FAMILIES, balance, gap_fill):
        for op in family.OPERATORS:
            if op.name in registry:
                raise RuntimeError(f"operator {op.name!r} registered twice")
            registry[op.name] = op
    return registry


REGISTRY: dict[str, Operator[Any]] = _registry()
