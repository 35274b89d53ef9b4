"""The sensor tree's cycle rule."""

from __future__ import annotations

import pytest

from besmart_server.server.sensors.tree import creates_cycle

# A tree: 1 is the root; 2 and 3 below it; 4 below 2.
TREE = {1: None, 2: 1, 3: 1, 4: 2}


@pytest.mark.parametrize(
    ("node", "parent", "expected"),
    [
        pytest.param(1, 4, True, id="root-under-grandchild"),
        pytest.param(2, 4, True, id="under-own-child"),
        pytest.param(2, 2, True, id="self"),
        pytest.param(4, 3, False, id="move-to-sibling-branch"),
        pytest.param(3, 4, False, id="under-cousin"),
        pytest.param(5, 4, False, id="new-leaf"),
    ],
)
def test_creates_cycle(node: int, parent: int, expected: bool) -> None:
    assert creates_cycle(node, parent, TREE.get) is expected


def test_existing_loop_above_does_not_hang() -> None:
    broken = {1: 2, 2: 1, 3: None}
    assert creates_cycle(3, 1, broken.get) is False
    assert creates_cycle(1, 2, broken.get) is True
