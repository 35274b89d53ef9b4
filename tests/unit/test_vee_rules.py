"""vee.rules: each rule on crafted series, with a hit and a near miss."""

from __future__ import annotations

import numpy as np
import pytest

from besmart_server.server.vee import rules as r

Q = 900_000
H = 3_600_000
DAY = 86_400_000


def grid(n: int, start: int = 0) -> r.I64:
    return np.arange(start, start + n * Q, Q, dtype=np.int64)


def wavy(n: int) -> r.F64:
    """A plausible load: a daily wave with some noise, always positive."""
    t = np.arange(n)
    rng = np.random.default_rng(7)
    return 1.0 + 0.5 * np.sin(2 * np.pi * t / 96) + rng.normal(0, 0.02, n)


def test_gaps_inside_and_at_the_edges_and_a_late_reading_within_the_factor() -> None:
    t = grid(20)
    t = t[(t < 5 * Q) | (t >= 9 * Q)]  # 4 readings missing
    found = r.gaps(t, since=0, till=22 * Q)
    assert [(f.since, f.till, f.detail["missing"]) for f in found] == [
        (5 * Q, 9 * Q, 4),
        (20 * Q, 22 * Q, 2),
    ]
    # near miss: one reading 1.4 steps after the previous one is late, not missing
    late = grid(10).copy()
    late[5:] += int(0.4 * Q)
    assert r.gaps(late, since=0, till=int(late[-1]) + Q, th=r.Thresholds(step_ms=Q)) == []


def test_negative_interval_energy() -> None:
    v = np.array([0.2, 0.3, -0.1, -0.2, 0.0, 0.1])
    found = r.negative(grid(6), v)
    assert [(f.since, f.till, f.rule) for f in found] == [(2 * Q, 4 * Q, r.Rule.NEGATIVE)]
    assert found[0].detail["min"] == -0.2
    assert r.negative(grid(6), np.abs(v)) == []  # zero is not negative


def test_register_decrease_swap_and_rollover() -> None:
    t = grid(5)
    v = np.array([100.0, 101.0, 99.5, 100.0, 101.0])
    found = r.register_decrease(t, v)
    assert [(f.since, f.detail["before"], f.detail["after"]) for f in found] == [
        (2 * Q, 101.0, 99.5)
    ]
    # a meter swap between the two readings explains the drop
    assert r.register_decrease(t, v, swaps=[2 * Q]) == []
    assert r.register_decrease(t, v, swaps=[Q + 1]) == []
    assert len(r.register_decrease(t, v, swaps=[3 * Q])) == 1  # after it: no excuse
    # a 5-digit register rolls over at 100000
    roll = np.array([99_990.0, 99_998.0, 3.0, 9.0, 12.0])
    assert len(r.register_decrease(t, roll)) == 1
    assert r.register_decrease(t, roll, th=r.Thresholds(meter_max_digits=5)) == []
    # near miss for the rollover: a drop from the middle of the range is a decrease
    mid = np.array([50_000.0, 50_001.0, 3.0, 9.0, 12.0])
    assert len(r.register_decrease(t, mid, th=r.Thresholds(meter_max_digits=5))) == 1


def test_spike_by_hampel_and_a_near_miss() -> None:
    n = 96 * 2
    v = wavy(n)
    assert r.spikes(grid(n), v) == []  # the wave and its noise are not spikes
    v[100] = 6.0
    found = r.spikes(grid(n), v)
    assert [(f.since, f.till) for f in found] == [(100 * Q, 101 * Q)]
    assert found[0].detail["value"] == 6.0
    # near miss: a step change (a new level for hours) is not a spike
    step = np.where(np.arange(n) < 100, 1.0, 3.0) + np.random.default_rng(1).normal(0, 0.02, n)
    assert r.spikes(grid(n), step) == []


def test_flatline_of_24_hours_and_a_near_miss() -> None:
    n = 96 * 3
    v = wavy(n)
    v[10 : 10 + 96] = 1.234  # exactly 24 h of one value
    found = r.flatlines(grid(n), v)
    assert [(f.since, f.till, f.rule) for f in found] == [(10 * Q, 106 * Q, r.Rule.FLATLINE)]
    v = wavy(n)
    v[10 : 10 + 95] = 1.234  # 23 h 45 min
    assert r.flatlines(grid(n), v) == []
    # zeros are the zero-run rule's, not a flatline
    v[10 : 10 + 200] = 0.0
    assert r.flatlines(grid(n), v) == []


def test_zero_run_and_marked_outage() -> None:
    n = 96 * 3
    v = wavy(n)
    v[0:100] = 0.0
    found = r.zero_runs(grid(n), v)
    assert [(f.since, f.till) for f in found] == [(0, 100 * Q)]
    assert r.zero_runs(grid(n), v, outages=[(0, 50 * Q)]) == []  # the rest is only 12.5 h
    assert r.zero_runs(grid(n), v, th=r.Thresholds(zero_hours=26)) == []


def test_high_against_history_and_contracted_power() -> None:
    v = np.array([1.0, 2.0, 4.1, 3.9, 1.0])
    found = r.high(grid(5), v, historical_max=2.0, energy_per_interval=False)
    assert [(f.since, f.till) for f in found] == [(2 * Q, 3 * Q)]
    assert found[0].detail["limit"] == 4.0
    assert r.high(grid(5), v, historical_max=2.1, energy_per_interval=False) == []
    # 10 kW contracted: 2.5 kWh in a quarter-hour is the most an interval may hold
    th = r.Thresholds(contracted_power_kw=10)
    e = np.array([2.4, 2.5, 2.6, 1.0, 0.0])
    found = r.high(grid(5), e, historical_max=None, energy_per_interval=True, th=th)
    assert [(f.since, f.detail["limit"]) for f in found] == [(2 * Q, 2.5)]
    assert r.high(grid(5), e, historical_max=None, energy_per_interval=False) == []


def test_future_timestamps() -> None:
    t = grid(4, start=DAY)
    assert r.future(t, now_ms=int(t[-1])) == []
    assert r.future(t, now_ms=int(t[-1]) - 60_000) == []  # within the skew
    found = r.future(t, now_ms=DAY + Q)
    assert [(f.since, f.detail["points"]) for f in found] == [(DAY + 2 * Q, 2)]


def test_sum_check_register_against_intervals() -> None:
    it = grid(96 * 2)
    energy = np.full(len(it), 0.25)
    reg_t = np.array([0, DAY - Q, DAY, 2 * DAY - Q], dtype=np.int64)
    # day 1 agrees (95 intervals between its first and last reading); day 2 is 3 kWh short
    reg_v = np.array([1000.0, 1000.0 + 95 * 0.25, 1024.0, 1024.0 + 95 * 0.25 - 3.0])
    found = r.sum_check(reg_t, reg_v, it, energy)
    assert [(f.since, f.till) for f in found] == [(DAY, 2 * DAY - Q)]
    assert found[0].detail["interval_sum"] == pytest.approx(23.75)
    # near miss: within 1 % of the advance
    reg_v[3] = 1024.0 + 95 * 0.25 * 0.995
    assert r.sum_check(reg_t, reg_v, it, energy) == []


def test_rewrite_of_measured_data() -> None:
    t = np.array([0, Q, 2 * Q, Q, 2 * Q, 5 * Q], dtype=np.int64)
    acq = np.array([1, 1, 1, 2, 2, 2], dtype=np.int64)
    v = np.array([1.0, 2.0, 3.0, 2.0, 3.5, 9.0])
    found = r.rewrites(t, acq, v)
    assert [(f.since, f.till, f.detail) for f in found] == [
        (2 * Q, 3 * Q, {"points": 1, "before": 3.0, "after": 3.5})
    ]
    # the same value written again is not a conflict
    v[4] = 3.0
    assert r.rewrites(t, acq, v) == []


def test_thresholds_merge_and_reject_bad_overrides() -> None:
    th = r.DEFAULTS.merged({"flatline_hours": 12, "contracted_power_kw": 40.5})
    assert th.flatline_hours == 12
    assert th.contracted_power_kw == 40.5
    assert r.DEFAULTS.merged({"spike_half_window": 4.0}).spike_half_window == 4
    for bad in ({"nope": 1}, {"zero_hours": "x"}, {"zero_hours": -1}, {"spike_half_window": 2.5}):
        with pytest.raises(ValueError, match="threshold"):
            r.DEFAULTS.merged(bad)


def test_spike_is_not_judged_across_a_gap() -> None:
    n = 96 * 2
    t = grid(n)
    v = np.where((np.arange(n) % 96) < 48, 0.3, 2.0)  # night low, day high
    keep = ~((np.arange(n) >= 96 + 40) & (np.arange(n) < 96 + 60))  # the morning missing
    assert r.spikes(t[keep], v[keep]) == []
    # the same jump with the neighbourhood complete is a step, not a spike, too
    assert r.spikes(t, v) == []


def test_queued_windows_of_a_series_merge_when_near_and_up_to_a_number_of_points() -> None:
    from types import SimpleNamespace

    from besmart_server.server.vee.worker import MERGE_POINTS, merged_windows

    day = 86_400_000

    def row(i: int, mid: int, since: int, till: int, points: int = 96) -> SimpleNamespace:
        return SimpleNamespace(
            id=i,
            client_cid=1,
            sensor_mid=mid,
            signal_type_moid=1011,
            since=since,
            till=till,
            points=points,
        )

    rows = [
        row(1, 3, 0, day),
        row(2, 3, day + day // 2, 2 * day),  # half a day after: merged
        row(3, 4, 0, day),  # another series: its own window
        row(4, 3, 10 * day, 11 * day),  # eight days after: its own window
        row(5, 3, 11 * day, 400 * day),  # adjacent and a year long, still merged
        row(6, 3, 400 * day, 401 * day, MERGE_POINTS - 2 * 96),  # up to the points: merged
        row(7, 3, 401 * day, 402 * day, 1),  # adjacent, but one point too many
        row(8, 5, 0, day, MERGE_POINTS + 1),  # a window too large alone is still one
    ]
    got = {(w.sensor_mid, w.since, w.till): ids for w, ids in merged_windows(rows)}
    assert got == {
        (3, 0, 2 * day): [1, 2],
        (3, 10 * day, 401 * day): [4, 5, 6],
        (3, 401 * day, 402 * day): [7],
        (4, 0, day): [3],
        (5, 0, day): [8],
    }


def _hampel_reference(times: r.I64, values: r.F64, th: r.Thresholds) -> list[r.Finding]:
    """The spike rule as first written: both medians over every window (np.median)."""
    k = th.spike_half_window
    if len(values) < 2 * k + 1:
        return []
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(values, k, mode="reflect"), 2 * k + 1)
    med = np.median(windows, axis=1)
    mad = np.median(np.abs(windows - med[:, None]), axis=1) * r.MAD_TO_SIGMA
    dev = np.abs(values - med)
    floor = np.maximum(th.spike_min_abs, th.spike_min_rel * np.abs(med))
    hit = (dev > th.spike_sigmas * mad) & (dev > floor)
    step = r.series_step(times, th)
    if step:
        tpad = np.pad(times, k, mode="edge")
        hit &= tpad[2 * k :] - tpad[: -2 * k] <= 2 * k * step * th.gap_factor
    return [
        r.Finding(
            int(times[i]),
            int(times[i]) + (step or 1),
            r.Rule.SPIKE,
            r.Severity.WARNING,
            {"value": float(values[i]), "median": float(med[i]), "sigma": float(mad[i])},
        )
        for i in np.flatnonzero(hit).tolist()
    ]


@pytest.mark.parametrize("seed", range(40))
def test_spikes_find_what_both_medians_over_every_window_find(seed: int) -> None:
    """The rolling median and the sigma computed only where a point clears the floor give
    the findings, medians and sigmas of the plain definition, on noise with spikes, flat
    stretches (a sigma of 0), a gap, NaN, and thresholds of every kind."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 600))
    v = wavy(n) * rng.choice([1.0, 1000.0]) + rng.normal(0, rng.choice([0.0, 0.01, 0.3]), n)
    edges = [i for i in (0, 1, n - 2, n - 1) if 0 <= i < n]  # where the padding decides the median
    for i in [*rng.integers(0, n, int(rng.integers(0, 8))), *edges]:
        v[i] *= rng.choice([-5.0, 4.0, 30.0])
    if n > 40 and seed % 3 == 0:
        v[10:30] = 2.0  # flat: a sigma of 0 around it
    if seed % 7 == 0:
        v[rng.integers(0, n)] = np.nan
    t = grid(n)
    if n > 100 and seed % 5 == 0:
        t[n // 2 :] += 12 * Q  # a gap
    th = r.Thresholds(
        spike_half_window=int(rng.integers(1, 12)),
        spike_sigmas=float(rng.choice([2.0, 6.0])),
        spike_min_abs=float(rng.choice([0.0, 0.5])),
        spike_min_rel=float(rng.choice([0.0, 0.2, 1.0])),
    )
    got = r.spikes(t, v, th)
    want = _hampel_reference(t, v, th)
    assert got == want
    if seed == 1:
        assert got  # the spikes drawn are found: the comparison is not of two empty lists
