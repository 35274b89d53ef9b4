"""Demo graph runs: a PV forecast for the demo PV installation and a load forecast for the
apartment block meter, each with its P10-P90 band, for the last measured day (to score against
the measurements) and the day ahead, and the energy balance of the demo transformer.

Runs inside the demo's transaction, as the demo loader (an admin), after the sensors, their
month of data and the demo weather are stored. Without the demo weather the PV run is left out.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import Connection, select

from besmart_server.server.access import Principal
from besmart_server.server.demo_info import DemoInfo
from besmart_server.server.graphs import engine
from besmart_server.server.graphs.builtin import builtin_graph
from besmart_server.server.graphs.context import DbContext
from besmart_server.server.sensors import service as sensors
from besmart_server.server.sensors.catalog import SENSOR_TYPE_IDS
from besmart_server.server.sensors.tables import sensors as sensors_table
from besmart_server.server.signals.catalog import signal_type_by_symbol
from besmart_server.server.weather import service as weather

DAY_MS: Final = 86_400_000
MONTH_DAYS: Final = 30  # the demo signal data: the 30 days before the current UTC day
_LOADER: Final = Principal(user_id=None, login="demo-loader", is_admin=True)


def _moid(symbol: str) -> int:
    t = signal_type_by_symbol(symbol)
    assert t is not None, symbol
    return t.moid


def _place(conn: Connection, mid: int) -> tuple[float, float]:
    row = conn.execute(
        select(sensors_table.c.lat, sensors_table.c.lon).where(sensors_table.c.mid == mid)
    ).one()
    return float(row.lat), float(row.lon)


def _run(conn: Connection, name: str, body: Any, since: int, till: int) -> engine.RunRecord:
    ctx = DbContext.inside(conn, _LOADER)
    record = engine.run(name, builtin_graph(name), body, since, till, ctx)
    ctx.flush(record.run_time)
    return record


def demo_bodies(conn: Connection, info: DemoInfo) -> dict[str, dict[str, Any]]:
    """The body of each demo run by graph name (the residual sensor must exist already)."""
    cid, roles = info.client_cid, info.sensors
    bodies: dict[str, dict[str, Any]] = {}
    if "pv" in roles and weather.weather_client(conn, create=False) is not None:
        lat, lon = _place(conn, roles["pv"])
        bodies["pv_forecast"] = {
            "client_cid": cid,
            "sensor_mid": roles["pv"],
            "lat": lat,
            "lon": lon,
            "params": {"power": 9.8, "inclination": 35, "orientation": 180},
            "weather_origin": 3,  # the demo weather is a typical year (model data)
            "band": True,  # P10 and P90 too: the sensor page draws them as a band
        }
    if "meter_2" in roles:
        lat, lon = _place(conn, roles["meter_2"])
        bodies["load_forecast"] = {
            "client_cid": cid,
            "sensor_mid": roles["meter_2"],
            "lat": lat,
            "lon": lon,
            "band": True,
        }
    if "transformer" in roles and "residual" in roles:
        bodies["balance"] = {
            "client_cid": cid,
            "node_mid": roles["transformer"],
            "residual_sensor_mid": roles["residual"],
            "moid": _moid("P+"),  # what the transformer measures; meters as primary P+
        }
    return bodies


def load(conn: Connection, info: DemoInfo) -> None:
    """Demo loader: run the three demo graphs and note what they wrote."""
    if "transformer" in info.sensors:
        created = sensors.create_sensor(
            conn,
            _LOADER,
            client_cid=info.client_cid,
            fields=sensors.SensorFields(
                name="Transformer T1 balance residual (losses, untracked)",
                sensor_type_id=SENSOR_TYPE_IDS["energy meter"],
                sensor_eid="BAL-KRK-001",
                node_id=info.sensors["transformer"],
                balance_calculation=False,
            ),
        )
        info.sensors["residual"] = created.sensor_mid
    today = info.today
    # The forecasts run for the last measured day too, so that the sensor page has a forecast
    # to score against what was measured (MAE, rMAE, skill), and for the day ahead.
    yesterday, tomorrow = (today - DAY_MS, today), (today, today + DAY_MS)
    windows = {
        "pv_forecast": (yesterday, tomorrow),
        "load_forecast": (yesterday, tomorrow),
        "balance": ((today - MONTH_DAYS * DAY_MS, today),),
    }
    done = []
    bodies = demo_bodies(conn, info)
    for name, body in bodies.items():
        points = 0
        for since, till in windows[name]:
            record = _run(conn, name, body, since, till)
            points += sum(record.points_written.values())
        done.append(f"{name} ({points} points)")
    if "pv_forecast" not in bodies:
        done.append("no PV forecast (no demo PV installation or no demo weather)")
    info.notes.append(
        "Demo graph runs: "
        + ", ".join(done)
        + "; e.g. POST /api/tasks/graphs/run/name?graph_name=balance (see README)."
    )
