"""Demo weather: a typical year from pvlib's bundled TMY3 sample, placed at the demo sensors.

Source: NSRDB TMY3 station 723170 (Greensboro Piedmont Triad Intl., NC, 36.10 N 79.95 W),
the file `723170TYA.CSV` that pvlib ships in `pvlib/data/`. pvlib has no sample for Kraków,
so for the demo this typical year is transposed: it is put into calendar year 2026 (the year
of the demo's meter data) and its local standard time is read as Kraków's (UTC+1), so that
midday stays midday. The values remain those of a site 14 degrees further south: the demo
shows how weather is stored and read, not Kraków's climate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
from sqlalchemy import Connection

from besmart_server.server.demo_info import DemoInfo
from besmart_server.server.weather import service
from besmart_server.server.weather.providers import ProviderResult, ProviderSeries
from besmart_server.server.weather.providers.files import read_weather_file

# Where the demo sensors stand (sensors/demo.py) and the year of their data.
LAT: Final = 50.06
LON: Final = 19.94
YEAR: Final = 2026
SAMPLE: Final = "723170TYA.CSV"
_SAMPLE_TZ_HOURS: Final = -5  # the file's header: local standard time is UTC-5
_TARGET_TZ_HOURS: Final = round(LON / 15)  # Kraków's standard time: UTC+1
HOUR_MS: Final = 3_600_000


def sample_path() -> Path:
    """pvlib's bundled TMY3 sample file."""
    import pvlib  # type: ignore[import-untyped]  # pvlib ships no type hints

    return Path(pvlib.__file__).parent / "data" / SAMPLE


def demo_weather(acq_time: int = 0) -> ProviderResult:
    """The sample's typical year in 2026, local time re-read as Kraków's, at the demo place."""
    result = read_weather_file(sample_path(), lat=LAT, lon=LON, year=YEAR, acq_time=acq_time)
    shift = (_SAMPLE_TZ_HOURS - _TARGET_TZ_HOURS) * HOUR_MS
    moved = {
        symbol: ProviderSeries(s.time + np.int64(shift), s.value, s.origin, s.acq_time)
        for symbol, s in result.items()
    }
    return ProviderResult(
        moved,
        lat=LAT,
        lon=LON,
        elevation_m=None,
        source=f"pvlib sample {SAMPLE} (TMY3, Greensboro NC) transposed to the demo location",
    )


def load(conn: Connection, info: DemoInfo) -> None:
    """Demo loader: store the demo weather at the demo location (grid point of its own)."""
    # A fixed acquisition time (the start of 2026) keeps a re-run of the demo idempotent.
    summary = service.import_weather(conn, demo_weather(acq_time=1_767_225_600_000))
    info.notes.append(
        f"weather: {summary.total} hourly points of {YEAR} at ({LAT}, {LON}) "
        f"from pvlib's {SAMPLE} (see README); e.g. GET /api/weather/{LAT}/{LON}/139/data"
    )
