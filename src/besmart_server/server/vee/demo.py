"""Demo: meter 1's 15-minute energy (EA+, what an AMI meter's load profile channel reports),
with the defects a real month has, validated so the quality view has something to show.

The series is meter 1's P+ as energy per quarter-hour (consistent with its A+ register, so the
sum check holds where nothing is wrong) with: a 90-minute gap five days before the demo day
(filled linearly), an 8-hour gap three days before (like-day, scaled to the register), a spike
eight days before, and a stuck value repeated for 26 hours twelve days before. Only this new
series is touched: the graphs' figures (A+, P+) are unchanged.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from sqlalchemy import Connection

from besmart_server.server.demo_info import DemoInfo
from besmart_server.server.signals import service as signals
from besmart_server.server.signals.columns import Columns
from besmart_server.server.signals.store import SeriesStore
from besmart_server.server.vee import service
from besmart_server.server.vee.service import Window
from besmart_server.server.vee.worker import ROBOT
from besmart_server.wire import TYPE_DBL

Q_MS: Final = 900_000
HOUR_MS: Final = 3_600_000
DAY_MS: Final = 86_400_000
DAYS: Final = 30
P_PLUS, A_PLUS, EA_PLUS = 1001, 32, 1011


def defects(end: int) -> dict[str, tuple[int, int]]:
    """The demo's defects, [since, till) in UTC ms, relative to the demo day `end`."""
    return {
        "short gap": (end - 5 * DAY_MS + 10 * HOUR_MS, end - 5 * DAY_MS + 11 * HOUR_MS + 2 * Q_MS),
        "long gap": (end - 3 * DAY_MS + 6 * HOUR_MS, end - 3 * DAY_MS + 14 * HOUR_MS),
        "spike": (end - 8 * DAY_MS + 12 * HOUR_MS, end - 8 * DAY_MS + 12 * HOUR_MS + Q_MS),
        "flatline": (end - 13 * DAY_MS, end - 12 * DAY_MS + 2 * HOUR_MS),
    }


def load(conn: Connection, info: DemoInfo) -> None:
    """Write meter 1's EA+ with the defects, then validate it and its register."""
    mid = info.sensors.get("meter_1")
    if mid is None:
        return
    cid, end = info.client_cid, info.today
    store = SeriesStore(conn.dialect.name)
    budget = signals.ReadBudget(10_000_000)
    q = signals.ReadQuery(cid, mid, P_PLUS, end - DAYS * DAY_MS, end, get_last=True, raw=True)
    p = signals.read_frame(conn, store, ROBOT, q, budget=budget).frame
    if not len(p):
        return
    t, e = p.time, np.round(p.value * 0.25, 4)  # kW over a quarter-hour, as kWh
    d = defects(end)
    spike = (t >= d["spike"][0]) & (t < d["spike"][1])
    e = np.where(spike, np.round(e * 6.0, 4), e)
    lo, hi = d["flatline"]
    stuck = (t >= lo) & (t < hi)
    if stuck.any():
        e = np.where(stuck, e[int(np.argmax(stuck))], e)
    keep = np.ones(len(t), dtype=bool)
    for name in ("short gap", "long gap"):
        keep &= ~((t >= d[name][0]) & (t < d[name][1]))
    t, e = t[keep], e[keep]
    n = len(t)
    cols = Columns(
        time=t,
        origin=np.ones(n, dtype=np.int64),
        type=np.full(n, TYPE_DBL, dtype=np.int8),
        value=e,
        text=None,
        acq_ms=None,
    )
    signals.write(conn, store, ROBOT, [signals.WriteItem(cid, mid, EA_PLUS, None, cols, ("demo",))])
    for moid in (EA_PLUS, A_PLUS):
        service.run(
            conn, store, ROBOT, Window(cid, mid, moid, end - DAYS * DAY_MS, end), budget=budget
        )
    info.notes.append(
        "Demo quality: meter 1's 15-minute energy (EA+) has two gaps, a spike and a 26-hour "
        "flatline, validated (GET .../signals/1011/quality)."
    )
