"""signals.completeness: reading interval, points per day against the expected, gaps."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import numpy as np

from besmart_server.server.signals import completeness as c

Q = 900_000
DAY = c.DAY_MS


def test_daily_counts_against_the_reading_interval() -> None:
    t = np.arange(0, 2 * DAY, Q, dtype=np.int64)
    t = t[(t < DAY + 6 * 3_600_000) | (t >= DAY + 12 * 3_600_000)]  # 6 h missing on day 2
    assert c.reading_step(t) == Q
    d = c.daily(t, since=0, till=2 * DAY, step=Q)
    assert d.day.tolist() == [0, DAY]
    assert d.count.tolist() == [96, 72]
    assert d.expected.tolist() == [96, 96]
    # a window that starts mid-day expects only its part of the day
    d = c.daily(t, since=DAY // 2, till=DAY, step=Q)
    assert d.expected.tolist() == [48]
    assert d.count.tolist() == [96]  # (counts are of the points given)


def test_local_days_of_a_time_zone_follow_its_dst_changes() -> None:
    # Europe/Warsaw springs forward on 2026-03-29: that local day has 23 hours
    warsaw = ZoneInfo("Europe/Warsaw")
    start = 1_774_652_400_000  # 2026-03-28T00:00+01:00
    till = start + 3 * DAY - 3_600_000  # 2026-03-31T00:00+02:00
    t = np.arange(start, till, Q, dtype=np.int64)
    d = c.daily(t, since=start, till=till, step=Q, tz=warsaw)
    assert d.day.tolist() == [start, start + DAY, start + 2 * DAY - 3_600_000]
    assert d.expected.tolist() == [96, 92, 96]
    assert d.count.tolist() == [96, 92, 96]


def test_gaps_inside_and_at_the_window_edges_longest_first() -> None:
    t = np.array([2 * Q, 3 * Q, 4 * Q, 9 * Q, 10 * Q], dtype=np.int64)
    gaps = c.gaps(t, since=0, till=20 * Q, step=Q)
    assert [(g.since, g.till, g.missing) for g in gaps] == [
        (11 * Q, 20 * Q, 9),  # after the last reading
        (5 * Q, 9 * Q, 4),
        (0, 2 * Q, 2),  # before the first
    ]
    assert c.gaps(np.arange(0, 20 * Q, Q, dtype=np.int64), since=0, till=20 * Q, step=Q) == []
    assert c.reading_step(np.array([5], dtype=np.int64)) is None
