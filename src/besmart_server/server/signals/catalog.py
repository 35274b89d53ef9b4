"""The catalog: units and signal types, and conversion between units of one dimension.

This module is the one catalog of the process. The tables `units` and `signal_types` hold
the same rows, upserted from these constants by the migrations (seed.py) and written by
nothing else, so that series and signal states can reference them; the code reads the
constants, never the tables (tests/unit/test_catalog.py checks that both agree).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import ArrayLike, NDArray


class SeriesKind(IntEnum):
    """`time_series_type` of a signal type: how its points aggregate."""

    INSTANTANEOUS = 0
    CUMULATIVE = 1
    INTERVAL = 2


class UnitMismatch(ValueError):
    """Two units of different dimensions: no conversion exists."""


class UnknownUnit(LookupError):
    """No unit with that symbol, alias or id."""


@dataclass(frozen=True, slots=True)
class Unit:
    """A unit; a value in it is `value * factor + offset` in its dimension's base unit."""

    unit_id: int
    symbol: str
    dimension: str
    factor: float
    offset: float
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SignalType:
    """A measured quantity: its unit, series kind, OBIS code and multiplier flags."""

    moid: int
    symbol: str
    description: str
    unit_symbol: str
    time_series_type: SeriesKind
    obis: str | None
    apply_current_ratio: bool
    apply_voltage_ratio: bool
    is_measurement: bool
    group_id: int
    group: str
    chart_expected_unit: str | None
    draw_chart: bool
    keep_prefix: bool

    @property
    def apply_multiplier(self) -> bool:
        """Whether apply_multiplier=true changes this type's values."""
        return self.apply_current_ratio or self.apply_voltage_ratio

    @property
    def unit(self) -> Unit:
        """The unit its values are stored in."""
        return unit_by_symbol(self.unit_symbol)

    @property
    def chart_unit(self) -> Unit | None:
        """The unit charts show it in, when it is not the stored one."""
        return (
            None if self.chart_expected_unit is None else unit_by_symbol(self.chart_expected_unit)
        )


# Base unit of each dimension: the one with factor 1 and offset 0 (Wh rather than J keeps the
# energy factors exact powers of ten).
UNITS: tuple[Unit, ...] = (
    Unit(1, "W", "power", 1.0, 0.0),
    Unit(2, "kW", "power", 1e3, 0.0),
    Unit(3, "MW", "power", 1e6, 0.0),
    Unit(4, "Wh", "energy", 1.0, 0.0, ("W.h",)),
    Unit(5, "kWh", "energy", 1e3, 0.0, ("kW.h",)),
    Unit(6, "MWh", "energy", 1e6, 0.0, ("MW.h",)),
    Unit(7, "var", "reactive_power", 1.0, 0.0, ("VAr",)),
    Unit(8, "kvar", "reactive_power", 1e3, 0.0, ("kVAr",)),
    Unit(9, "Mvar", "reactive_power", 1e6, 0.0, ("MVAr",)),
    Unit(10, "varh", "reactive_energy", 1.0, 0.0, ("var.h", "VArh")),
    Unit(11, "kvarh", "reactive_energy", 1e3, 0.0, ("kvar.h", "kVArh")),
    Unit(12, "Mvarh", "reactive_energy", 1e6, 0.0, ("Mvar.h", "MVArh")),
    Unit(13, "VA", "apparent_power", 1.0, 0.0),
    Unit(14, "kVA", "apparent_power", 1e3, 0.0),
    Unit(15, "VAh", "apparent_energy", 1.0, 0.0, ("VA.h",)),
    Unit(16, "kVAh", "apparent_energy", 1e3, 0.0, ("kVA.h",)),
    Unit(17, "V", "voltage", 1.0, 0.0),
    Unit(18, "kV", "voltage", 1e3, 0.0),
    Unit(19, "A", "current", 1.0, 0.0),
    Unit(20, "Hz", "frequency", 1.0, 0.0),
    Unit(21, "K", "temperature", 1.0, 0.0),
    Unit(22, "°C", "temperature", 1.0, 273.15, ("degC", "℃")),
    # °F → K: (F - 32) * 5/9 + 273.15 = F * 5/9 + (273.15 - 32 * 5/9)
    Unit(23, "°F", "temperature", 5.0 / 9.0, 273.15 - 32.0 * 5.0 / 9.0, ("degF", "℉")),
    Unit(24, "W/m2", "irradiance", 1.0, 0.0, ("W/m²", "W.m-2")),
    Unit(25, "kW/m2", "irradiance", 1e3, 0.0, ("kW/m²", "kW.m-2")),
    Unit(26, "m/s", "speed", 1.0, 0.0, ("m.s-1",)),
    Unit(27, "km/h", "speed", 1.0 / 3.6, 0.0, ("km.h-1",)),
    Unit(28, "°", "angle", 1.0, 0.0, ("deg",)),
    Unit(29, "%", "ratio", 1.0, 0.0, ("percent",)),
    Unit(30, "hPa", "pressure", 100.0, 0.0),
    Unit(31, "Pa", "pressure", 1.0, 0.0),
    Unit(32, "mm", "length", 1.0, 0.0),
)

_ENERGY = (1, "energy")
_POWER = (2, "power")
_VOLTAGE = (3, "voltage")
_CURRENT = (4, "current")
_QUALITY = (5, "power quality")
_STORAGE = (6, "storage")
_WEATHER = (7, "weather")

# (apply_current_ratio, apply_voltage_ratio): the table's CT·VT, CT, VT and —
_CT_VT = (True, True)
_CT = (True, False)
_VT = (False, True)
_NO_RATIO = (False, False)

_INST = SeriesKind.INSTANTANEOUS
_CUM = SeriesKind.CUMULATIVE
_INTV = SeriesKind.INTERVAL


def _type(
    moid: int,
    symbol: str,
    description: str,
    unit_symbol: str,
    kind: SeriesKind,
    obis: str | None,
    group: tuple[int, str],
    mult: tuple[bool, bool] = _NO_RATIO,
    *,
    measured: bool = True,
    chart_unit: str | None = None,
) -> SignalType:
    # Energy and power may be shown with another prefix (kWh as MWh); the rest keep theirs.
    keep_prefix = group not in (_ENERGY, _POWER)
    return SignalType(
        moid,
        symbol,
        description,
        unit_symbol,
        kind,
        obis,
        mult[0],
        mult[1],
        measured,
        group[0],
        group[1],
        chart_unit,
        True,
        keep_prefix,
    )


# moids below 1000 are the real service's, so public clients' configurations work unchanged;
# 1000 and above are this project's own.
SIGNAL_TYPES: tuple[SignalType, ...] = (
    _type(32, "A+", "Active energy import register", "kWh", _CUM, "1.8.0", _ENERGY, _CT_VT),
    _type(34, "A-", "Active energy export register", "kWh", _CUM, "2.8.0", _ENERGY, _CT_VT),
    _type(36, "R1", "Reactive energy register, QI", "kvarh", _CUM, "5.8.0", _ENERGY, _CT_VT),
    _type(38, "R2", "Reactive energy register, QII", "kvarh", _CUM, "6.8.0", _ENERGY, _CT_VT),
    _type(40, "R3", "Reactive energy register, QIII", "kvarh", _CUM, "7.8.0", _ENERGY, _CT_VT),
    _type(42, "R4", "Reactive energy register, QIV", "kvarh", _CUM, "8.8.0", _ENERGY, _CT_VT),
    _type(44, "S+", "Apparent energy import register", "kVAh", _CUM, "9.8.0", _ENERGY, _CT_VT),
    _type(46, "S-", "Apparent energy export register", "kVAh", _CUM, "10.8.0", _ENERGY, _CT_VT),
    _type(53, "U1", "Phase L1 voltage", "V", _INST, "32.7.0", _VOLTAGE, _VT),
    _type(54, "U2", "Phase L2 voltage", "V", _INST, "52.7.0", _VOLTAGE, _VT),
    _type(55, "U3", "Phase L3 voltage", "V", _INST, "72.7.0", _VOLTAGE, _VT),
    _type(56, "I1", "Phase L1 current", "A", _INST, "31.7.0", _CURRENT, _CT),
    _type(57, "I2", "Phase L2 current", "A", _INST, "51.7.0", _CURRENT, _CT),
    _type(58, "I3", "Phase L3 current", "A", _INST, "71.7.0", _CURRENT, _CT),
    _type(70, "P_PV", "PV generation power", "kW", _INST, None, _POWER),
    _type(103, "F", "Frequency", "Hz", _INST, "14.7.0", _QUALITY),
    _type(139, "T_AIR", "Air temperature", "K", _INST, None, _WEATHER, chart_unit="°C"),
    _type(1001, "P+", "Active power import", "kW", _INST, "1.7.0", _POWER, _CT_VT),
    _type(1002, "P-", "Active power export", "kW", _INST, "2.7.0", _POWER, _CT_VT),
    _type(1003, "Q+", "Reactive power import", "kvar", _INST, "3.7.0", _POWER, _CT_VT),
    _type(1004, "Q-", "Reactive power export", "kvar", _INST, "4.7.0", _POWER, _CT_VT),
    _type(1011, "EA+", "Active energy import per period", "kWh", _INTV, None, _ENERGY, _CT_VT),
    _type(1012, "EA-", "Active energy export per period", "kWh", _INTV, None, _ENERGY, _CT_VT),
    # The forecasts' P10/P90 bands, series of their own so that a band never overwrites the P50
    # (written to the forecast quantity itself at origin 2); the multiplier flags follow it.
    _type(
        1013,
        "EA+_P10",
        "Active energy import per period, forecast P10",
        "kWh",
        _INTV,
        None,
        _ENERGY,
        _CT_VT,
        measured=False,
    ),
    _type(
        1014,
        "EA+_P90",
        "Active energy import per period, forecast P90",
        "kWh",
        _INTV,
        None,
        _ENERGY,
        _CT_VT,
        measured=False,
    ),
    _type(1021, "SOC", "Storage state of charge", "%", _INST, None, _STORAGE),
    _type(1031, "GHI", "Global horizontal irradiance", "W/m2", _INST, None, _WEATHER),
    _type(1032, "DNI", "Direct normal irradiance", "W/m2", _INST, None, _WEATHER),
    _type(1033, "DHI", "Diffuse horizontal irradiance", "W/m2", _INST, None, _WEATHER),
    _type(1034, "GHI_CS", "Clear-sky GHI, computed", "W/m2", _INST, None, _WEATHER, measured=False),
    _type(1041, "WS", "Wind speed", "m/s", _INST, None, _WEATHER),
    _type(1042, "WD", "Wind direction", "°", _INST, None, _WEATHER),
    _type(1043, "CLOUD", "Cloud cover", "%", _INST, None, _WEATHER),
    _type(1044, "RH", "Relative humidity", "%", _INST, None, _WEATHER),
    _type(1045, "PRES", "Air pressure", "hPa", _INST, None, _WEATHER),
    _type(1046, "PRECIP", "Precipitation per period", "mm", _INTV, None, _WEATHER),
    _type(
        1071,
        "P_PV_P10",
        "PV generation power, forecast P10",
        "kW",
        _INST,
        None,
        _POWER,
        measured=False,
    ),
    _type(
        1072,
        "P_PV_P90",
        "PV generation power, forecast P90",
        "kW",
        _INST,
        None,
        _POWER,
        measured=False,
    ),
)

# A forecast quantity → its P10 and P90 signal types (what a forecast graph with `band` writes
# by default; charts draw them as a band around the forecast).
FORECAST_BANDS: dict[int, tuple[int, int]] = {1011: (1013, 1014), 70: (1071, 1072)}

_BY_SYMBOL: dict[str, Unit] = {u.symbol: u for u in UNITS}
_BY_ALIAS: dict[str, Unit] = {a: u for u in UNITS for a in u.aliases}
_BY_ID: dict[int, Unit] = {u.unit_id: u for u in UNITS}
_TYPES_BY_MOID: dict[int, SignalType] = {t.moid: t for t in SIGNAL_TYPES}
_TYPES_BY_SYMBOL: dict[str, SignalType] = {t.symbol: t for t in SIGNAL_TYPES}


def unit_by_symbol(symbol: str) -> Unit:
    """The unit with this symbol or alias (case-sensitive: mW is not MW); UnknownUnit if none."""
    unit = _BY_SYMBOL.get(symbol) or _BY_ALIAS.get(symbol)
    if unit is None:
        raise UnknownUnit(f"Unknown unit {symbol!r}")
    return unit


def unit_by_id(unit_id: int) -> Unit:
    """The unit with this id; UnknownUnit if none."""
    try:
        return _BY_ID[unit_id]
    except KeyError:
        raise UnknownUnit(f"Unknown unit id {unit_id}") from None


def signal_type_by_moid(moid: int) -> SignalType | None:
    """The signal type with this moid, if any."""
    return _TYPES_BY_MOID.get(moid)


def signal_type_by_symbol(symbol: str) -> SignalType | None:
    """The signal type with this symbol, if any."""
    return _TYPES_BY_SYMBOL.get(symbol)


def _unit(unit: Unit | str) -> Unit:
    return unit if isinstance(unit, Unit) else unit_by_symbol(unit)


def convert(values: ArrayLike, from_unit: Unit | str, to_unit: Unit | str) -> NDArray[np.float64]:
    """Values in `from_unit` expressed in `to_unit`; UnitMismatch across dimensions."""
    src, dst = _unit(from_unit), _unit(to_unit)
    if src.dimension != dst.dimension:
        raise UnitMismatch(
            f"Cannot convert {src.symbol} ({src.dimension}) to {dst.symbol} ({dst.dimension})"
        )
    arr = np.array(values, dtype=np.float64)  # a copy: callers may keep their input
    if src.factor == dst.factor and src.offset == dst.offset:
        return arr  # same scale: exact, no rounding
    if src.offset == 0.0 and dst.offset == 0.0:
        return arr * (src.factor / dst.factor)  # one multiplication: kWh → Wh stays exact
    return (arr * src.factor + (src.offset - dst.offset)) / dst.factor
