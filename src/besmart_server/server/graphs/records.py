"""The one place a graph run's record becomes JSON.

Operators fill their metrics with whatever numpy and pandas hand them (`np.int64` counts,
`np.float32` sums, timestamps); the standard encoders reject those, and a run that fails only
when its record is stored has done all its work for nothing. Every record passes through
`dumps` before it is stored or answered, and the answer is parsed back from that text, so
what a client sees is exactly what was stored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson
import pandas as pd

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _plain(value: Any) -> Any:
    """What orjson cannot encode by itself, as plain JSON values (TypeError otherwise)."""
    if isinstance(value, np.generic):  # numpy scalars orjson leaves out (np.bool_, np.str_...)
        item = value.item()
        return None if isinstance(item, float) and not math.isfinite(item) else item
    if isinstance(value, pd.Timestamp):
        return int(value.as_unit("ns").value // 1_000_000)  # UTC ms, as everywhere in the API
    if isinstance(value, pd.Timedelta):
        return value.total_seconds()
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, pd.Series | pd.Index):
        return value.to_numpy().tolist()
    raise TypeError(f"a run record cannot hold a {type(value).__name__}")


def dumps(record: Mapping[str, Any]) -> str:
    """A run record as JSON text: numpy scalars and arrays as numbers and lists, timestamps as
    UTC ms, NaN and infinities as null."""
    return orjson.dumps(record, default=_plain, option=_OPTIONS).decode()


def plain(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record as the JSON values `dumps` stores."""
    out: dict[str, Any] = orjson.loads(dumps(record))
    return out
