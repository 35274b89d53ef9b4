"""What a demo load has made so far, handed from one feature's demo loader to the next.

Below every `server/*/demo.py`, so that the loaders and `besmart_server.demo`, which runs
them in order, do not import each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection

from besmart_server.server.db import now_ms

DAY_MS = 86_400_000


@dataclass
class DemoInfo:
    """What the demo created, for the CLI to print."""

    client_cid: int
    login: str
    password: str
    # The UTC day (ms at 00:00) the demo's data runs up to: today's for a newcomer, a fixed
    # one where figures must be reproducible (`besmart graph quality`).
    today: int = field(default_factory=lambda: now_ms() // DAY_MS * DAY_MS)
    # Demo sensors by role: "station", "transformer", "meter_1", "meter_2" (has a meter
    # swap), "pv" → sensor_mid; later loaders write data and weather for them.
    sensors: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


DemoLoader = Callable[[Connection, DemoInfo], None]
