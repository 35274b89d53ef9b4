"""The seeded catalog: ids and symbols, the domain table, and unit conversion."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from besmart_server.server.db import Database
from besmart_server.server.signals.catalog import (
    SIGNAL_TYPES,
    UNITS,
    SeriesKind,
    Unit,
    UnitMismatch,
    UnknownUnit,
    convert,
    signal_type_by_moid,
    signal_type_by_symbol,
    unit_by_id,
    unit_by_symbol,
)
from besmart_server.server.signals.tables import signal_types, units

SAME_DIMENSION_PAIRS = [
    (a, b) for a, b in itertools.product(UNITS, UNITS) if a.dimension == b.dimension
]
DOMAIN_UNITS = (
    "W kW MW Wh kWh MWh var kvar Mvar varh kvarh Mvarh VA kVA VAh kVAh V kV A Hz K °C °F "
    "W/m2 kW/m2 m/s km/h ° % hPa Pa mm"
)
OWN_TYPES = (
    "P+ P- Q+ Q- EA+ EA- EA+_P10 EA+_P90 SOC GHI DNI DHI GHI_CS WS WD CLOUD RH PRES PRECIP "
    "P_PV_P10 P_PV_P90"
)
DIMENSIONS = {
    "power",
    "energy",
    "reactive_power",
    "reactive_energy",
    "apparent_power",
    "apparent_energy",
    "voltage",
    "current",
    "frequency",
    "temperature",
    "irradiance",
    "speed",
    "angle",
    "ratio",
    "pressure",
    "length",
}


def test_ids_and_symbols_are_unique() -> None:
    assert len({u.unit_id for u in UNITS}) == len(UNITS)
    names = [u.symbol for u in UNITS] + [a for u in UNITS for a in u.aliases]
    assert len(set(names)) == len(names)
    assert len({t.moid for t in SIGNAL_TYPES}) == len(SIGNAL_TYPES)
    assert len({t.symbol for t in SIGNAL_TYPES}) == len(SIGNAL_TYPES)


def test_units_are_the_domain_list() -> None:
    assert [u.symbol for u in UNITS] == DOMAIN_UNITS.split()
    assert {u.dimension for u in UNITS} == DIMENSIONS


@pytest.mark.parametrize("dimension", sorted(DIMENSIONS))
def test_each_dimension_has_one_base_unit(dimension: str) -> None:
    bases = [u for u in UNITS if u.dimension == dimension and (u.factor, u.offset) == (1.0, 0.0)]
    assert len(bases) == 1


def test_every_signal_type_unit_exists() -> None:
    for t in SIGNAL_TYPES:
        unit_by_symbol(t.unit_symbol)
        if t.chart_expected_unit is not None:
            chart = unit_by_symbol(t.chart_expected_unit)
            assert chart.dimension == unit_by_symbol(t.unit_symbol).dimension, t.symbol


@pytest.mark.parametrize(
    ("symbol", "moid", "unit", "kind", "obis", "ct", "vt"),
    [
        pytest.param("A+", 32, "kWh", SeriesKind.CUMULATIVE, "1.8.0", True, True, id="A+"),
        pytest.param("A-", 34, "kWh", SeriesKind.CUMULATIVE, "2.8.0", True, True, id="A-"),
        pytest.param("R1", 36, "kvarh", SeriesKind.CUMULATIVE, "5.8.0", True, True, id="R1"),
        pytest.param("R4", 42, "kvarh", SeriesKind.CUMULATIVE, "8.8.0", True, True, id="R4"),
        pytest.param("S-", 46, "kVAh", SeriesKind.CUMULATIVE, "10.8.0", True, True, id="S-"),
        pytest.param("U2", 54, "V", SeriesKind.INSTANTANEOUS, "52.7.0", False, True, id="U2"),
        pytest.param("I3", 58, "A", SeriesKind.INSTANTANEOUS, "71.7.0", True, False, id="I3"),
        pytest.param("P_PV", 70, "kW", SeriesKind.INSTANTANEOUS, None, False, False, id="P_PV"),
        pytest.param("F", 103, "Hz", SeriesKind.INSTANTANEOUS, "14.7.0", False, False, id="F"),
        pytest.param("T_AIR", 139, "K", SeriesKind.INSTANTANEOUS, None, False, False, id="T_AIR"),
    ],
)
def test_real_service_moids(
    symbol: str, moid: int, unit: str, kind: SeriesKind, obis: str | None, ct: bool, vt: bool
) -> None:
    t = signal_type_by_symbol(symbol)
    assert t is not None
    assert signal_type_by_moid(moid) is t
    assert (t.moid, t.unit_symbol, t.time_series_type, t.obis) == (moid, unit, kind, obis)
    assert (t.apply_current_ratio, t.apply_voltage_ratio, t.apply_multiplier) == (ct, vt, ct or vt)


def test_own_types_have_high_moids_and_the_table_symbols() -> None:
    real = {32, 34, 36, 38, 40, 42, 44, 46, 53, 54, 55, 56, 57, 58, 70, 103, 139}
    assert {t.moid for t in SIGNAL_TYPES} >= real
    own = [t for t in SIGNAL_TYPES if t.moid not in real]
    assert all(t.moid >= 1000 for t in own)
    assert [t.symbol for t in own] == OWN_TYPES.split()
    kinds = {s: signal_type_by_symbol(s) for s in ("EA+", "PRECIP", "GHI", "SOC")}
    assert {s: t.time_series_type for s, t in kinds.items() if t} == {
        "EA+": SeriesKind.INTERVAL,
        "PRECIP": SeriesKind.INTERVAL,
        "GHI": SeriesKind.INSTANTANEOUS,
        "SOC": SeriesKind.INSTANTANEOUS,
    }


def test_temperature_types_chart_in_celsius() -> None:
    temperatures = [
        t for t in SIGNAL_TYPES if unit_by_symbol(t.unit_symbol).dimension == "temperature"
    ]
    assert temperatures
    assert all(t.chart_expected_unit == "°C" for t in temperatures)


@pytest.mark.parametrize(
    ("alias", "symbol"),
    [
        pytest.param("kW.h", "kWh", id="kW.h"),
        pytest.param("kWh", "kWh", id="symbol-itself"),
        pytest.param("kvar.h", "kvarh", id="kvar.h"),
        pytest.param("degC", "°C", id="degC"),
        pytest.param("W/m²", "W/m2", id="superscript-two"),
    ],
)
def test_unit_by_symbol_accepts_aliases(alias: str, symbol: str) -> None:
    assert unit_by_symbol(alias).symbol == symbol


@pytest.mark.parametrize("symbol", ["mW", "kwh", "", "J"])
def test_unknown_unit_raises(symbol: str) -> None:
    with pytest.raises(UnknownUnit):
        unit_by_symbol(symbol)


def test_unit_by_id() -> None:
    assert unit_by_id(5).symbol == "kWh"
    with pytest.raises(UnknownUnit):
        unit_by_id(0)


@pytest.mark.parametrize(
    ("value", "src", "dst", "want"),
    [
        pytest.param(1.5, "kWh", "Wh", 1500.0, id="kWh-to-Wh"),
        pytest.param(2500.0, "Wh", "kWh", 2.5, id="Wh-to-kWh"),
        pytest.param(3.0, "MWh", "kWh", 3000.0, id="MWh-to-kWh"),
        pytest.param(0.0, "°C", "K", 273.15, id="0C-is-273.15K"),
        pytest.param(0.0, "K", "°C", -273.15, id="0K-is-minus-273.15C"),
        pytest.param(100.0, "°C", "°F", 212.0, id="100C-is-212F"),
        pytest.param(32.0, "°F", "°C", 0.0, id="32F-is-0C"),
        pytest.param(-40.0, "°F", "°C", -40.0, id="minus-40-meet"),
        pytest.param(0.0, "°F", "K", 255.37222222222223, id="0F-in-K"),
        pytest.param(36.0, "km/h", "m/s", 10.0, id="km/h-to-m/s"),
        pytest.param(1013.25, "hPa", "Pa", 101325.0, id="hPa-to-Pa"),
        pytest.param(0.8, "kW/m2", "W/m2", 800.0, id="kW/m2-to-W/m2"),
        pytest.param(11.0, "kV", "V", 11000.0, id="kV-to-V"),
    ],
)
def test_known_conversions(value: float, src: str, dst: str, want: float) -> None:
    got = convert([value], src, dst)
    assert got.dtype == np.float64
    assert got.tolist() == pytest.approx([want], rel=1e-12, abs=1e-9)


def test_convert_same_unit_is_exact_copy() -> None:
    values = np.array([0.1, 1e300, -3.3])
    got = convert(values, "kWh", unit_by_symbol("kW.h"))
    assert got.tolist() == values.tolist()
    assert got is not values


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        pytest.param("kWh", "kW", id="energy-to-power"),
        pytest.param("kvarh", "kWh", id="reactive-to-active"),
        pytest.param("°C", "%", id="temperature-to-ratio"),
    ],
)
def test_convert_across_dimensions_raises(src: str, dst: str) -> None:
    with pytest.raises(UnitMismatch, match="Cannot convert"):
        convert([1.0], src, dst)
    assert issubclass(UnitMismatch, ValueError)


@settings(max_examples=200, deadline=None)
@given(
    pair=st.sampled_from(SAME_DIMENSION_PAIRS),
    values=st.lists(st.floats(-1e9, 1e9, allow_nan=False), min_size=1, max_size=20),
)
def test_conversion_round_trips(pair: tuple[Unit, Unit], values: list[float]) -> None:
    src, dst = pair
    back = convert(convert(values, src, dst), dst, src)
    np.testing.assert_allclose(back, values, rtol=1e-12, atol=1e-6)


@settings(max_examples=200, deadline=None)
@given(
    pair=st.sampled_from(SAME_DIMENSION_PAIRS),
    value=st.floats(-1e6, 1e6, allow_nan=False),
)
def test_conversion_goes_through_the_base(pair: tuple[Unit, Unit], value: float) -> None:
    src, dst = pair
    # In the base unit both sides must name the same quantity.
    got = float(convert([value], src, dst)[0])
    assert got * dst.factor + dst.offset == pytest.approx(
        value * src.factor + src.offset, rel=1e-12, abs=1e-6
    )


def test_the_catalog_tables_hold_the_catalog(db: Database) -> None:
    """The code reads the catalog module, never the tables: the migrations seed the tables
    from it (series and signal states reference them), row for row."""
    with db.transaction(write=False) as conn:
        unit_rows = conn.execute(select(units).order_by(units.c.unit_id)).all()
        type_rows = conn.execute(select(signal_types).order_by(signal_types.c.moid)).all()
    assert [(r.unit_id, r.symbol, r.dimension, r.factor, r.offset) for r in unit_rows] == [
        (u.unit_id, u.symbol, u.dimension, u.factor, u.offset)
        for u in sorted(UNITS, key=lambda u: u.unit_id)
    ]
    assert [
        (
            r.moid,
            r.symbol,
            r.description,
            r.unit_id,
            r.time_series_type,
            r.obis_mapping,
            r.apply_current_ratio,
            r.apply_voltage_ratio,
            r.is_measurement,
            r.group_id,
            r.group_name,
            r.chart_expected_unit,
            r.draw_chart,
            r.keep_prefix,
        )
        for r in type_rows
    ] == [
        (
            t.moid,
            t.symbol,
            t.description,
            t.unit.unit_id,
            int(t.time_series_type),
            t.obis,
            t.apply_current_ratio,
            t.apply_voltage_ratio,
            t.is_measurement,
            t.group_id,
            t.group,
            t.chart_expected_unit,
            t.draw_chart,
            t.keep_prefix,
        )
        for t in sorted(SIGNAL_TYPES, key=lambda t: t.moid)
    ]
