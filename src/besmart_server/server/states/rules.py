"""Pure rules of sensor states: half-open installation periods, no database."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Period:
    """A half-open period [since, till) in UTC ms; `till` None is open-ended."""

    since: int
    till: int | None
    id: int = 0


def is_ordered(since: int, till: int | None) -> bool:
    """True when the period is non-empty: `since < till` (an open end always is)."""
    return till is None or since < till


def overlap(a: Period, b: Period) -> bool:
    """True when two half-open periods share an instant (touching ends do not overlap)."""
    a_before_b_ends = b.till is None or a.since < b.till
    b_before_a_ends = a.till is None or b.since < a.till
    return a_before_b_ends and b_before_a_ends


def first_overlap(candidate: Period, others: Iterable[Period]) -> Period | None:
    """The earliest of `others` that `candidate` overlaps, if any (pass others without it)."""
    hits = [p for p in others if overlap(candidate, p)]
    return min(hits, key=lambda p: (p.since, p.id)) if hits else None
