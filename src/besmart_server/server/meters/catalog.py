"""System meter types seeded by migration (the catalog `meter_type_id` refers to)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MeterTypeSeed:
    """One system meter type."""

    id: int
    meter_type_name: str
    description: str
    number_of_phases: int | None
    is_ami: bool = False
    is_dcu: bool = False
    is_balance: bool = False


METER_TYPES: tuple[MeterTypeSeed, ...] = (
    MeterTypeSeed(1, "1-phase electronic", "Single-phase electronic energy meter", 1),
    MeterTypeSeed(2, "3-phase electronic", "Three-phase electronic energy meter", 3),
    MeterTypeSeed(3, "3-phase CT-connected", "Three-phase meter behind current transformers", 3),
    MeterTypeSeed(4, "1-phase AMI", "Single-phase smart meter with remote reading", 1, is_ami=True),
    MeterTypeSeed(5, "3-phase AMI", "Three-phase smart meter with remote reading", 3, is_ami=True),
    MeterTypeSeed(
        6, "Balancing meter", "Station or feeder meter used for energy balance", 3, is_balance=True
    ),
    MeterTypeSeed(
        7, "Data concentrator", "Data concentrator unit (DCU) for AMI meters", None, is_dcu=True
    ),
)
