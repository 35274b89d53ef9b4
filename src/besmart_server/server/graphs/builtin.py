"""The graphs shipped by name; their template parameters are what a run's body supplies."""

from __future__ import annotations

import copy
from typing import Any, Final

from besmart_server.server.errors import NotFound
from besmart_server.server.signals.catalog import FORECAST_BANDS

_NO_DEFAULT: Final = object()


def T(path: str, default: Any = _NO_DEFAULT) -> dict[str, Any]:  # reads as a marker
    """A template parameter filled from the body at `path` (dotted), with an optional default."""
    return {"$param": path} if default is _NO_DEFAULT else {"$param": path, "default": default}


def _edges(*pairs: tuple[int, int]) -> list[dict[str, int]]:
    return [{"from": a, "to": b} for a, b in pairs]


CID, MID = T("client_cid"), T("sensor_mid")
FREQ = T("profile_signal_freq_minutes", 15)
ZONE = T("zone_signals_freq_minutes", 1440)  # readings one period either side close the edges
AROUND = {"lookback_minutes": ZONE, "lookahead_minutes": ZONE}
BAND = T("band", False)


def _band_nodes(
    forecast: dict[str, Any], write: dict[str, Any], moids: tuple[int, int]
) -> list[dict[str, Any]]:
    """A forecast graph's optional P10 and P90 (body key `band`): each is the forecast node at
    that quantile, bounded by the P50 (separate models may cross) and written to a signal type
    of its own (`p10_moid`, `p90_moid`) at the P50's origin, which a band would overwrite."""
    out: list[dict[str, Any]] = []
    for quantile, keep, key, moid in (
        (0.1, "below", "p10_moid", moids[0]),
        (0.9, "above", "p90_moid", moids[1]),
    ):
        out += [
            {
                "function": forecast["function"],
                "params": {**forecast["params"], "quantile": quantile, "enabled": BAND},
            },
            {"function": "bound", "params": {"keep": keep}},
            {
                "function": "write",
                "params": {**write["params"], "moid": T(key, moid), "enabled": BAND},
            },
        ]
    return out


def _band_edges(inputs: tuple[int, ...], p50: int, first: int) -> list[dict[str, int]]:
    """Edges of `_band_nodes` appended from node `first`: the forecast's inputs feed each band
    forecast, which with the P50 node feeds its bound, which feeds its write."""
    pairs: list[tuple[int, int]] = []
    for f in (first, first + 3):
        pairs += [(i, f) for i in inputs]
        pairs += [(f, f + 1), (p50, f + 1), (f + 1, f + 2)]
    return _edges(*pairs)


# The real service's body: a list of {"client_cid", "sensor_mid", "profile_signal_moid",
# "profile_signal_freq_minutes", "zone_signals_freq_minutes", "lat", "lon",
# "signal_discrepancy_tolerance_kWh", "params": {"type", "power", "inclination", "orientation",
# "efficiency", "cut_in_speed", "cut_out_speed", "hub_height"}}. Extra keys this graph reads,
# all optional: zone_signal_moid (32, A+), estimation_mode (net_import), profile (H25), timezone.
ESTIMATION: Final[dict[str, Any]] = {
    "nodes": [
        {
            "function": "signals",
            "params": {
                "client_cid": CID,
                "sensor_mid": MID,
                "moid": T("zone_signal_moid", 32),
                "signal_origin_id": 1,
                **AROUND,
            },
        },
        {
            "function": "profile",
            "params": {
                "profile": T("profile", "H25"),
                "timezone": T("timezone", "Europe/Warsaw"),
                "freq_minutes": FREQ,
                **AROUND,
            },
        },
        {
            "function": "generation",
            "params": {
                "type": T("params.type", None),
                "lat": T("lat", None),
                "lon": T("lon", None),
                "power": T("params.power", None),
                "inclination": T("params.inclination", 30.0),
                "orientation": T("params.orientation", 180.0),
                "efficiency": T("params.efficiency", 0.86),
                "cut_in_speed": T("params.cut_in_speed", 3.0),
                "cut_out_speed": T("params.cut_out_speed", 25.0),
                "hub_height": T("params.hub_height", 80.0),
                "freq_minutes": FREQ,
                **AROUND,
            },
        },
        {
            "function": "estimation",
            "params": {
                "mode": T("estimation_mode", "net_import"),
                "freq_minutes": FREQ,
                "signal_discrepancy_tolerance_kWh": T("signal_discrepancy_tolerance_kWh", 0.0),
            },
        },
        {
            "function": "write",
            "params": {
                "client_cid": CID,
                "sensor_mid": MID,
                "moid": T("profile_signal_moid", 1011),
                "origin": 4,
                "series_is": "energy",
                "freq_minutes": FREQ,
            },
        },
    ],
    "edges": _edges((0, 3), (1, 3), (2, 3), (3, 4)),
}

# Body: {"client_cid", "sensor_mid", "lat", "lon", "params": {"power", "inclination",
# "orientation", "efficiency"}}; optional moid (70, P_PV), freq_minutes, bias_days,
# weather_origin (2: forecasts; 3 for typical-year or model weather), quantile (0.1: the P10),
# band (false; true also writes the P10 and P90 to p10_moid (1071, P_PV_P10) and p90_moid
# (1072, P_PV_P90) at origin 2).
_PV_SITE = {
    "lat": T("lat"),
    "lon": T("lon"),
    "power": T("params.power"),
    "inclination": T("params.inclination", 30.0),
    "orientation": T("params.orientation", 180.0),
    "efficiency": T("params.efficiency", 0.86),
}
_PV_P50 = {
    "function": "forecast_pv",
    "params": {
        **_PV_SITE,
        "freq_minutes": T("freq_minutes", 15),
        "bias_days": T("bias_days", 14),
        "weather_origin": T("weather_origin", 2),
        "history_weather_origin": T("history_weather_origin", None),
        "quantile": T("quantile", None),
    },
}
_PV_WRITE = {
    "function": "write",
    "params": {
        "client_cid": CID,
        "sensor_mid": MID,
        "moid": T("forecast_moid", 70),
        "origin": 2,
        "series_is": "power",
        "freq_minutes": T("freq_minutes", 15),
    },
}
PV_FORECAST: Final[dict[str, Any]] = {
    "nodes": [
        {
            "function": "signals",
            "params": {
                "client_cid": CID,
                "sensor_mid": MID,
                "moid": T("moid", 70),
                "delta_t": T("freq_minutes", 15),
                "signal_origin_id": 1,
                "lookback_minutes": T("history_minutes", 14 * 1440),
            },
        },
        _PV_P50,
        _PV_WRITE,
        *_band_nodes(_PV_P50, _PV_WRITE, FORECAST_BANDS[70]),
    ],
    "edges": _edges((0, 1), (1, 2)) + _band_edges((0,), 1, 3),
}

# Body: {"client_cid", "sensor_mid"}; optional lat/lon (temperature), moid (32, A+),
# forecast_moid (1011, EA+ per interval), freq_minutes, history_minutes, timezone, country (PL)
# and subdivision (holidays), quantile (0.1: the P10 instead of the mean), band (false; true
# also writes the P10 and P90 to p10_moid (1013, EA+_P10) and p90_moid (1014, EA+_P90)).
_LOAD_P50 = {
    "function": "forecast_load",
    "params": {
        "freq_minutes": T("freq_minutes", 15),
        "timezone": T("timezone", "Europe/Warsaw"),
        "country": T("country", "PL"),
        "subdivision": T("subdivision", None),
        "quantile": T("quantile", None),
    },
}
_LOAD_WRITE = {
    "function": "write",
    "params": {
        "client_cid": CID,
        "sensor_mid": MID,
        "moid": T("forecast_moid", 1011),
        "origin": 2,
        "series_is": "energy",
        "freq_minutes": T("freq_minutes", 15),
    },
}
LOAD_FORECAST: Final[dict[str, Any]] = {
    "nodes": [
        {
            "function": "signals",
            "params": {
                "client_cid": CID,
                "sensor_mid": MID,
                "moid": T("moid", 32),
                "delta_t": T("freq_minutes", 15),
                "energy_per_interval": True,
                "signal_origin_id": 1,
                "lookback_minutes": T("history_minutes", 28 * 1440),
            },
        },
        {
            "function": "weather",
            "params": {
                "lat": T("lat", None),
                "lon": T("lon", None),
                "moid": 139,
                "lookback_minutes": T("history_minutes", 28 * 1440),
            },
        },
        _LOAD_P50,
        _LOAD_WRITE,
        *_band_nodes(_LOAD_P50, _LOAD_WRITE, FORECAST_BANDS[1011]),
    ],
    "edges": _edges((0, 2), (1, 2), (2, 3)) + _band_edges((0, 1), 2, 4),
}

# Body: {"client_cid", "node_mid", "residual_sensor_mid"}; optional moid (32), residual_moid
# (1011), delta_t (15), apply_multiplier (true: primary side), skip_children_without_data (true).
BALANCE: Final[dict[str, Any]] = {
    "nodes": [
        {
            "function": "balance",
            "params": {
                "client_cid": CID,
                "node_mid": T("node_mid"),
                "moid": T("moid", 32),
                "delta_t": T("delta_t", 15),
                "apply_multiplier": T("apply_multiplier", True),
                "skip_children_without_data": T("skip_children_without_data", True),
            },
        },
        {
            "function": "write",
            "params": {
                "client_cid": CID,
                "sensor_mid": T("residual_sensor_mid"),
                "moid": T("residual_moid", 1011),
                "origin": 3,
                "series_is": "energy",
                "freq_minutes": T("delta_t", 15),
            },
        },
    ],
    "edges": _edges((0, 1)),
}

# Body: {"client_cid", "sensor_mid", "moid"}; optional freq_minutes, max_linear_minutes.
GAP_FILL: Final[dict[str, Any]] = {
    "nodes": [
        {
            "function": "signals",
            "params": {
                "client_cid": CID,
                "sensor_mid": MID,
                "moid": T("moid"),
                "delta_t": T("freq_minutes", 15),
                "signal_origin_id": 1,
                "lookback_minutes": T("context_minutes", 1440),
            },
        },
        {
            "function": "gap_fill",
            "params": {
                "freq_minutes": T("freq_minutes", 15),
                "max_linear_minutes": T("max_linear_minutes", 120),
            },
        },
        {
            "function": "write",
            "params": {"client_cid": CID, "sensor_mid": MID, "moid": T("moid"), "origin": 4},
        },
    ],
    "edges": _edges((0, 1), (1, 2)),
}

BUILTIN: Final[dict[str, dict[str, Any]]] = {
    "estimation": ESTIMATION,
    "pv_forecast": PV_FORECAST,
    "load_forecast": LOAD_FORECAST,
    "balance": BALANCE,
    "gap_fill": GAP_FILL,
}


def builtin_graph(name: str) -> dict[str, Any]:
    """A copy of the shipped graph `name`; NotFound if there is none."""
    try:
        return copy.deepcopy(BUILTIN[name])
    except KeyError:
        raise NotFound(f"Graph {name!r} not found") from None
