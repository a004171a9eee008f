"""Colours: WCAG contrast arithmetic, the template palette, and the dark-mode previews."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.contrast import forced_dark, parse_hex, ratio, required
from pipeline.darkmode import dark_preview, dark_styles, forced_dark_preview
from pipeline.errors import TemplateError
from pipeline.palette import PAIRS, contrast_problems, load_palette
from pipeline.render import compile_campaign, dark_mode_css
from pipeline.settings import Settings


def test_contrast_ratios_match_wcag_reference_values() -> None:
    assert ratio(parse_hex("#000"), parse_hex("#fff")) == pytest.approx(21)
    assert ratio(parse_hex("#767676"), parse_hex("#ffffff")) == pytest.approx(4.54, abs=0.01)
    # the footer: #6b7280 on #f3f4f6 was 4.39:1, under AA
    assert ratio(parse_hex("#6b7280"), parse_hex("#f3f4f6")) == pytest.approx(4.39, abs=0.01)
    assert ratio(parse_hex("#c2410c"), parse_hex("#ffffff")) == ratio(
        parse_hex("#ffffff"), parse_hex("#c2410c")
    )


@pytest.mark.parametrize(
    ("size", "bold", "minimum"),
    [(16, False, 4.5), (18, True, 4.5), (19, True, 3.0), (23, False, 4.5), (24, False, 3.0)],
)
def test_large_text_needs_three_to_one(size: float, bold: bool, minimum: float) -> None:
    assert required(size, bold) == minimum


def test_forced_dark_turns_light_dark_and_keeps_the_hue() -> None:
    assert forced_dark(parse_hex("#ffffff")) == (0, 0, 0)
    assert forced_dark(parse_hex("#000000")) == (255, 255, 255)
    r, g, b = forced_dark(parse_hex("#c2410c"))  # the orange stays orange, lighter
    assert r > g > b and r > 200


def test_the_shipped_palette_passes_in_light_dark_and_forced_dark(settings: Settings) -> None:
    palette = load_palette(settings.templates_dir)
    assert contrast_problems(palette) == []
    for pair in PAIRS:  # every pair is measured in all three views
        for mode in ("light", "dark"):
            colours = palette.mode(mode)
            fg, bg = parse_hex(colours[pair.fg]), parse_hex(colours[pair.bg])
            assert ratio(fg, bg) >= required(pair.size_px, pair.bold), (mode, pair)


def edit_palette(settings: Settings, old: str, new: str) -> Path:
    path = settings.templates_dir / "email" / "palette.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


def test_a_low_contrast_colour_is_reported_with_its_line(settings: Settings) -> None:
    path = edit_palette(settings, 'muted = "#4b5563"', 'muted = "#6b7280"')
    problems = contrast_problems(load_palette(settings.templates_dir))
    assert [(p.mode, p.pair.fg, p.pair.bg) for p in problems] == [("light", "muted", "page")]
    line = next(n for n, t in enumerate(path.read_text().splitlines(), 1) if "#6b7280" in t)
    assert problems[0].line == line
    assert "4.39:1, under WCAG AA 4.5:1" in str(problems[0])


def test_a_dark_colour_too_close_to_its_background_is_reported(settings: Settings) -> None:
    edit_palette(settings, 'text = "#e6edf3"', 'text = "#3b4048"')
    problems = contrast_problems(load_palette(settings.templates_dir))
    assert [(p.mode, p.pair.where) for p in problems] == [("dark", "body text")]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('card = "#ffffff"', 'card = "white"', "light.card: expected a colour like #1f2328"),
        ('card = "#ffffff"', 'kard = "#ffffff"', "[light] is missing card"),
        ("[dark]", "[night]", "[dark] section is missing"),
        ('page = "#f3f4f6"', 'page = "#f3f4f6', "palette.toml:7: expected newline"),
    ],
)
def test_a_bad_palette_names_file_and_line(
    settings: Settings, old: str, new: str, message: str
) -> None:
    edit_palette(settings, old, new)
    with pytest.raises(TemplateError) as err:
        load_palette(settings.templates_dir)
    assert err.value.path.endswith("palette.toml")
    assert message.lower() in str(err.value).lower()


def test_dark_preview_applies_the_dark_styles_everywhere(settings: Settings) -> None:
    from pipeline.content import find_module, load_module

    module = load_module(find_module(settings, "hip-hinge"), settings)
    html = compile_campaign(module, settings).html_template.fill(
        dict.fromkeys(("first_name", "name", "email", "unsubscribe_url", "preferences_url"), "x")
    )
    css = dark_styles(html)
    assert "@media (prefers-color-scheme: dark)" in css and "[data-ogsc]" in css
    assert css == dark_mode_css(settings)  # what the studio can ask for without an email
    dark = dark_preview(html)
    assert "prefers-color-scheme" not in dark and "@media all {" in dark.replace("all{", "all {")
    assert '<meta name="color-scheme" content="dark">' in dark
    forced = forced_dark_preview(html)
    assert "@media not all" in forced and "invert(1) hue-rotate(180deg)" in forced
    assert dark_styles("<html><head><style>p{}</style></head></html>") == ""
