"""WCAG 2 contrast of two colours, and how a forced dark mode (Gmail's apps) shows a colour.

Ratios follow WCAG 2.2 (relative luminance of sRGB): AA asks 4.5:1 for text and 3:1
for large text (24 px and up, or bold from 18.66 px, i.e. 14 pt).
"""

from __future__ import annotations

import re

AA_TEXT = 4.5
AA_LARGE = 3.0
HEX_RE = re.compile(r"#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})\Z")

RGB = tuple[int, int, int]


def parse_hex(value: str) -> RGB:
    """``#abc`` or ``#aabbcc`` -> (r, g, b); ValueError otherwise."""
    found = HEX_RE.match(value.strip())
    if not found:
        raise ValueError(f"expected a colour like #1f2328, got {value!r}")
    digits = found.group(1)
    if len(digits) == 3:
        digits = "".join(ch * 2 for ch in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def to_hex(rgb: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _linear(channel: int) -> float:
    c = channel / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def luminance(rgb: RGB) -> float:
    """WCAG relative luminance, 0 (black) .. 1 (white)."""
    r, g, b = (_linear(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def ratio(fg: RGB, bg: RGB) -> float:
    """Contrast ratio, 1..21."""
    a, b = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def required(size_px: float, bold: bool) -> float:
    """The AA minimum for text of this size and weight."""
    large = size_px >= 24 or (bold and size_px >= 18.66)
    return AA_LARGE if large else AA_TEXT


# CSS hue-rotate(180deg) (Filter Effects spec, feColorMatrix type="hueRotate").
HUE_180 = (
    (-0.574, 1.430, 0.144),
    (0.426, 0.430, 0.144),
    (0.426, 1.430, -0.856),
)


def forced_dark(rgb: RGB) -> RGB:
    """The colour under ``filter: invert(1) hue-rotate(180deg)``: light turns dark and
    hues stay roughly where they were, as Gmail's and Outlook's apps invert an email
    that brings no dark mode of its own."""
    inverted = [255 - c for c in rgb]
    out = []
    for row in HUE_180:
        value = sum(k * c for k, c in zip(row, inverted, strict=True))
        out.append(max(0, min(255, round(value))))
    return out[0], out[1], out[2]
