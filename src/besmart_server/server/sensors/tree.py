"""The sensor tree's one rule, pure: a sensor's parent chain never loops (no database)."""

from __future__ import annotations

from collections.abc import Callable


def creates_cycle(node: int, new_parent: int, parent_of: Callable[[int], int | None]) -> bool:
    """Would making `new_parent` the parent of `node` close a loop in the tree?

    Walks up from `new_parent`; a loop that already exists above it without `node` ends
    the walk (it is not this change's cycle)."""
    seen: set[int] = set()
    current: int | None = new_parent
    while current is not None and current not in seen:
        if current == node:
            return True
        seen.add(current)
        current = parent_of(current)
    return False
