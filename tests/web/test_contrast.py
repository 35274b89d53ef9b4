"""WCAG AA contrast of the stylesheet's colour pairs, light and dark: 4.5:1 for text, 3:1 for
what a person must see that is not text (1.4.11: control borders, the focus ring, chart lines)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CSS = (Path(__file__).parents[2] / "src/besmart_server/web/static/app.css").read_text()


def _palette(block: str) -> dict[str, str]:
    return dict(re.findall(r"--([a-z0-9-]+):\s*(#[0-9a-fA-F]{6})", block))


LIGHT = _palette(CSS[CSS.index(":root") : CSS.index("}")])
dark_at = CSS.index("prefers-color-scheme: dark")
DARK = {**LIGHT, **_palette(CSS[dark_at : CSS.index("}\n}", dark_at)])}


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


# (text, background) pairs the pages use
PAIRS = [
    ("fg", "bg"),
    ("fg", "card"),
    ("muted", "bg"),
    ("muted", "card"),
    ("accent", "card"),
    ("accent", "bg"),
    ("accent-fg", "accent"),
    ("error", "card"),
    ("error", "bg"),
    ("fresh", "card"),
    ("late", "card"),
    ("stale", "card"),
    ("none", "card"),
]


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize(("text", "background"), PAIRS)
def test_text_contrast_is_at_least_4_5(scheme: str, text: str, background: str) -> None:
    palette = LIGHT if scheme == "light" else DARK
    assert contrast(palette[text], palette[background]) >= 4.5


# (graphic, background) pairs: borders of inputs and buttons, the focus ring, the chart lines
# of each origin and the flag spans' colours, on the cards and the page
GRAPHICS = [
    (g, b)
    for g in ("control", "accent", "m1", "m2", "m3", "m4", "m5", "late", "error")
    for b in ("card", "bg")
]


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize(("graphic", "background"), GRAPHICS)
def test_graphics_contrast_is_at_least_3(scheme: str, graphic: str, background: str) -> None:
    palette = LIGHT if scheme == "light" else DARK
    assert contrast(palette[graphic], palette[background]) >= 3.0


def test_the_dark_palette_differs() -> None:
    assert DARK["bg"] != LIGHT["bg"]
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
