"""The constants of the wire format, shared by the server and the client (one definition).

A point on the wire is (time, value, type, origin, acq_time) in columns (docs/domain.md,
"Points"). The server stores and checks with these bounds; the client checks with the same
ones before it sends, so a write of many requests is refused before the first one rather
than by a 422 half-way through. Nothing here imports the server or the client.
"""

from __future__ import annotations

from typing import Final

# The value type of a point: its wire name and the int8 code the server keeps in columns.
TYPE_DBL: Final = 0  # a double
TYPE_INT: Final = 1  # an integer a double carries exactly (|value| < INT_LIMIT)
TYPE_STR: Final = 2  # text
TYPE_RM: Final = 3  # a tombstone: removes the point of the same time (value ignored)
# Wire names indexed by type code, and back.
TYPE_NAMES: Final[tuple[str, ...]] = ("DBL", "INT", "STR", "RM")
TYPE_CODES: Final[dict[str, int]] = {name: code for code, name in enumerate(TYPE_NAMES)}

# Where a value comes from (the `origin` column).
ORIGIN_MEASURED: Final = 1
ORIGIN_PREDICTED: Final = 2
ORIGIN_CALCULATED: Final = 3
ORIGIN_ESTIMATED: Final = 4
ORIGIN_CORRECTED: Final = 5
ORIGIN_NAMES: Final[dict[int, str]] = {
    ORIGIN_MEASURED: "measured",
    ORIGIN_PREDICTED: "predicted",
    ORIGIN_CALCULATED: "calculated",
    ORIGIN_ESTIMATED: "estimated",
    ORIGIN_CORRECTED: "corrected",
}
ORIGINS: Final = frozenset(ORIGIN_NAMES)

# Capture times a read can ask for (since <= time < till within ±2**62, with room for the
# store's `till + 1`): a point outside them could be stored but never read back (UTC ms).
TIME_MIN: Final = -(2**62)
TIME_MAX: Final = 2**62
# Numbers the wire carries and every computed value stays finite from: an INT is a JSON
# integer that a double holds exactly (|v| < 2**53: a larger one would silently round); any
# number is at most VALUE_MAX in magnitude, so that sums of a read's points, stitching offsets
# and unit conversions (factors up to 1e6 apart) stay far from the double's 1.8e308.
INT_LIMIT: Final = float(2**53)  # |INT| < this
VALUE_MAX: Final = 1e250  # |value| <= this
# How far ahead of the server's clock an acq_time may be (clients' clocks drift).
ACQ_SKEW_MS: Final = 60_000
