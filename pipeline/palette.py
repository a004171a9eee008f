"""The colours of the email templates (``templates/email/palette.toml``), light and dark.

Templates read them as ``color.KEY`` (light) and ``dark.KEY``; :data:`PAIRS` says which
text colour sits on which background, so ``newsletter check`` can measure every pair
in light mode, dark mode and under forced inversion (:func:`contrast_problems`).
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.contrast import RGB, forced_dark, parse_hex, ratio, required, to_hex
from pipeline.errors import TemplateError

FILE = "palette.toml"
MODES = ("light", "dark")
KEYS = (
    "page",
    "card",
    "text",
    "heading",
    "muted",
    "link",
    "accent",
    "button",
    "button_text",
    "rule",
    "panel",
    "panel_text",
)


@dataclass(frozen=True)
class Pair:
    """A text colour on a background, as the templates use them."""

    fg: str
    bg: str
    where: str
    size_px: float = 16
    bold: bool = False


# Every place the base templates put text on a colour. Sizes are the smallest used there.
PAIRS = (
    Pair("text", "card", "body text"),
    Pair("heading", "card", "headings", 19, True),
    Pair("heading", "card", "the site name", 22, True),
    Pair("link", "card", "links in the body"),
    Pair("muted", "card", "quotes", 16),
    Pair("muted", "page", "footer and 'View in your browser'", 13),
    Pair("button_text", "button", "the button label", 18, True),
    Pair("panel_text", "panel", "alt text of images while images are off"),
)


@dataclass(frozen=True)
class Palette:
    path: Path
    light: dict[str, str]
    dark: dict[str, str]
    lines: dict[tuple[str, str], int]  # (mode, key) -> line in the file

    def mode(self, name: str) -> dict[str, str]:
        return self.light if name == "light" else self.dark

    def line_of(self, mode: str, key: str) -> int:
        return self.lines.get((mode, key), 1)


@dataclass(frozen=True)
class LowContrast:
    """A pair under the AA minimum, with where to change it."""

    mode: str  # light | dark | forced dark
    pair: Pair
    fg: str
    bg: str
    ratio: float
    minimum: float
    line: int

    def __str__(self) -> str:
        return (
            f"{self.mode}: {self.pair.where}: {self.pair.fg} {self.fg} on {self.pair.bg} "
            f"{self.bg} is {self.ratio:.2f}:1, under WCAG AA {self.minimum:g}:1"
        )


def load_palette(templates_dir: Path) -> Palette:
    """The palette of ``templates_dir/email``; a TemplateError names a bad file and line."""
    path = templates_dir / "email" / FILE
    try:
        stat = path.stat()
    except OSError as exc:
        raise TemplateError(
            str(path), None, "the colour palette is missing", hint="copy it from the repository"
        ) from exc
    return _load(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _load(path: Path, mtime_ns: int, size: int) -> Palette:
    text = path.read_text(encoding="utf-8")
    lines = _key_lines(text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        raise TemplateError(str(path), int(found[1]) if found else None, str(exc)) from exc
    modes = {}
    for mode in MODES:
        table = data.get(mode)
        if not isinstance(table, dict):
            raise TemplateError(str(path), None, f"[{mode}] section is missing")
        modes[mode] = _colours(path, mode, table, lines)
    return Palette(path, modes["light"], modes["dark"], lines)


def _colours(
    path: Path, mode: str, table: dict[str, object], lines: dict[tuple[str, str], int]
) -> dict[str, str]:
    missing = [key for key in KEYS if key not in table]
    if missing:
        where = lines.get((mode, "")) or None
        raise TemplateError(str(path), where, f"[{mode}] is missing {', '.join(missing)}")
    colours = {}
    for key, value in table.items():
        try:
            colours[key] = to_hex(parse_hex(str(value)))
        except ValueError as exc:
            raise TemplateError(str(path), lines.get((mode, key)), f"{mode}.{key}: {exc}") from None
    return colours


def _key_lines(text: str) -> dict[tuple[str, str], int]:
    """(section, key) -> 1-based line; (section, "") is the section header."""
    found: dict[tuple[str, str], int] = {}
    section = ""
    for number, line in enumerate(text.splitlines(), start=1):
        header = re.match(r"\s*\[([A-Za-z_]+)\]", line)
        if header:
            section = header[1]
            found[(section, "")] = number
            continue
        key = re.match(r"\s*([A-Za-z_]+)\s*=", line)
        if key:
            found[(section, key[1])] = number
    return found


def contrast_problems(palette: Palette) -> list[LowContrast]:
    """Every pair under AA: light and dark as written, and the light colours as a forced
    dark mode (Gmail's and Outlook's apps) turns them."""
    found = []
    views: list[tuple[str, str, Callable[[RGB], RGB]]] = [
        ("light", "light", _same),
        ("dark", "dark", _same),
        ("forced dark", "light", forced_dark),
    ]
    for label, mode, transform in views:
        colours = palette.mode(mode)
        for pair in PAIRS:
            fg = transform(parse_hex(colours[pair.fg]))
            bg = transform(parse_hex(colours[pair.bg]))
            measured = ratio(fg, bg)
            minimum = required(pair.size_px, pair.bold)
            if measured < minimum:
                line = palette.line_of(mode, pair.fg)
                found.append(
                    LowContrast(label, pair, to_hex(fg), to_hex(bg), measured, minimum, line)
                )
    return found


def _same(rgb: RGB) -> RGB:
    return rgb
