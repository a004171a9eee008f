"""The seed emails in a real headless Chromium, light and dark, at 320, 375 and 600 px.

Every visible run of text is measured against what is actually painted behind it
(computed colours, backgrounds composited up the tree) and must reach WCAG AA: 4.5:1,
or 3:1 for large text. With images blocked, every image keeps its box and shows its
alt text, also at AA. Screenshots go to tests/artifacts/ (docs/screenshots/ holds a
copy of some for the README: tests/docs_screenshots.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.content import find_module, load_module
from pipeline.darkmode import dark_preview, forced_dark_preview
from pipeline.render import Recipient, compile_campaign
from pipeline.settings import Settings

pytestmark = pytest.mark.browser

SEEDS = ["hip-hinge", "bulletproof-back-program"]
WIDTHS = [320, 375, 600]
SCHEMES = ["light", "dark"]
READER = Recipient("browser", "ann@example.com", "Ann Lee", "0.Tk0NU_cfUsORZBglIhp5MQ")

# Every visible text node: its colour, the colour painted behind it, size and weight.
TEXT_RUNS = """() => {
  const parse = (c) => {
    const m = c && c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(parseFloat);
    return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1};
  };
  const blend = (top, under) => ({
    r: top.r * top.a + under.r * (1 - top.a), g: top.g * top.a + under.g * (1 - top.a),
    b: top.b * top.a + under.b * (1 - top.a), a: 1});
  const lin = (v) => { v /= 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const lum = (c) => 0.2126 * lin(c.r) + 0.7152 * lin(c.g) + 0.0722 * lin(c.b);
  const ratio = (a, b) => {
    const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
    return (x + 0.05) / (y + 0.05);
  };
  const dark = matchMedia('(prefers-color-scheme: dark)').matches;
  const canvas = dark ? {r: 18, g: 18, b: 18, a: 1} : {r: 255, g: 255, b: 255, a: 1};
  const behind = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const bg = parse(getComputedStyle(e).backgroundColor);
      if (bg && bg.a > 0) { layers.push(bg); if (bg.a >= 1) break; }
    }
    return layers.reverse().reduce((under, top) => blend(top, under), canvas);
  };
  const runs = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent.replace(/[\\s\\u034f\\u200c]+/g, ' ').trim();
    const el = node.parentElement;
    if (!text || !el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})) continue;
    const range = document.createRange(); range.selectNodeContents(node);
    const box = range.getBoundingClientRect();
    if (box.width < 1 || box.height < 1) continue;
    const style = getComputedStyle(el);
    const bg = behind(el);
    const fg = blend(parse(style.color), bg);
    const size = parseFloat(style.fontSize), bold = parseInt(style.fontWeight) >= 700;
    runs.push({text: text.slice(0, 60), tag: el.tagName, size, bold,
               ratio: Math.round(ratio(fg, bg) * 100) / 100,
               required: size >= 24 || (bold && size >= 18.66) ? 3 : 4.5,
               fg: style.color,
               bg: `rgb(${Math.round(bg.r)}, ${Math.round(bg.g)}, ${Math.round(bg.b)})`});
  }
  return {runs, scrollWidth: document.documentElement.scrollWidth,
          body: getComputedStyle(document.body).backgroundColor};
}"""

# With images blocked: each image's box and its alt text against the box's own background.
IMAGES = """() => [...document.images].map(img => {
  const s = getComputedStyle(img), box = img.getBoundingClientRect();
  return {alt: img.alt, width: box.width, height: box.height, loaded: img.naturalWidth > 0,
          color: s.color, background: s.backgroundColor, fontSize: parseFloat(s.fontSize),
          fontFamily: s.fontFamily};
})"""


def email_file(settings: Settings, tmp_path: Path, slug: str, view=lambda html: html) -> Path:
    module = load_module(find_module(settings, slug), settings)
    html = compile_campaign(module, settings, preview=True).personalize(READER).html
    path = tmp_path / f"{slug}.html"
    path.write_text(view(html), encoding="utf-8")
    return path


def measure(browser, path: Path, width: int, scheme: str, shot: Path | None = None) -> dict:
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
    try:
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        found = page.evaluate(TEXT_RUNS)
        if shot is not None:
            page.screenshot(path=str(shot), full_page=True)
            page.screenshot(path=str(shot.with_name(shot.stem + "-top.png")))
        return found
    finally:
        page.close()


def low(runs: list[dict]) -> list[dict]:
    return [r for r in runs if r["ratio"] < r["required"]]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("slug", SEEDS)
def test_every_text_run_meets_wcag_aa(
    browser, settings: Settings, tmp_path: Path, artifacts: Path, slug: str, width: int, scheme: str
) -> None:
    shot = artifacts / f"email-{slug}-{width}px-{scheme}.png"
    found = measure(browser, email_file(settings, tmp_path, slug), width, scheme, shot)
    runs = found["runs"]
    assert len(runs) > 30, "the whole email was measured"
    texts = " ".join(r["text"] for r in runs)
    for part in ("View in your browser", "Unsubscribe", "Hinge Strength", "Hi Ann,"):
        assert part in texts  # footer, top bar, masthead and body are all among them
    assert low(runs) == [], f"{scheme} {width}px: text under WCAG AA"
    assert found["scrollWidth"] <= width, "horizontal overflow"


@pytest.mark.parametrize("slug", SEEDS)
def test_dark_mode_really_changes_the_colours(
    browser, settings: Settings, tmp_path: Path, slug: str
) -> None:
    path = email_file(settings, tmp_path, slug)
    light = measure(browser, path, 600, "light")
    dark = measure(browser, path, 600, "dark")
    assert light["body"] != dark["body"]
    light_bg = {r["bg"] for r in light["runs"]}
    dark_bg = {r["bg"] for r in dark["runs"]}
    assert "rgb(255, 255, 255)" in light_bg and "rgb(255, 255, 255)" not in dark_bg
    # body text is light on dark in dark mode
    hi = next(r for r in dark["runs"] if r["text"] == "Hi Ann,")
    assert hi["fg"] == "rgb(230, 237, 243)" and hi["bg"] == "rgb(22, 27, 34)"


def test_dark_preview_shows_dark_mode_in_a_light_browser(
    browser, settings: Settings, tmp_path: Path, artifacts: Path
) -> None:
    """What a preview tool (the studio's Dark view) shows without emulating anything."""
    emulated = measure(browser, email_file(settings, tmp_path, "hip-hinge"), 375, "dark")
    (tmp_path / "p").mkdir()
    preview = email_file(settings, tmp_path / "p", "hip-hinge", dark_preview)
    shown = measure(browser, preview, 375, "light", artifacts / "email-hip-hinge-dark-preview.png")
    pairs = [(r["text"], r["fg"], r["bg"]) for r in shown["runs"]]
    assert pairs == [(r["text"], r["fg"], r["bg"]) for r in emulated["runs"]]


def test_forced_dark_preview_inverts_the_email(
    browser, settings: Settings, tmp_path: Path, artifacts: Path
) -> None:
    path = email_file(settings, tmp_path, "hip-hinge", forced_dark_preview)
    page = browser.new_page(viewport={"width": 375, "height": 900}, color_scheme="dark")
    try:
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        page.screenshot(path=str(artifacts / "email-hip-hinge-forced-dark.png"))
        pixel = page.evaluate("() => getComputedStyle(document.documentElement).filter")
        body = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    finally:
        page.close()
    assert pixel == "invert(1) hue-rotate(180deg)"
    assert body == "rgb(243, 244, 246)"  # its own dark styles are off: the light page, inverted


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("width", [320, 600])
def test_images_off_keep_their_box_and_readable_alt_text(
    browser, settings: Settings, tmp_path: Path, artifacts: Path, width: int, scheme: str
) -> None:
    path = email_file(settings, tmp_path, "hip-hinge")
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
    try:
        page.route("**/*.png", lambda route: route.abort())  # as a client blocking images
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        images = page.evaluate(IMAGES)
        page.screenshot(path=str(artifacts / f"email-images-off-{width}px-{scheme}.png"))
    finally:
        page.close()
    (hero,) = images
    assert not hero["loaded"]
    column = min(width, 600) - 48
    assert hero["width"] == pytest.approx(column, abs=1)
    assert hero["height"] == pytest.approx(column / 2, abs=1)  # 1200 x 600: the box stays
    assert hero["fontSize"] == 16 and "Helvetica" in hero["fontFamily"]
    assert hero["background"] == "rgb(229, 231, 235)" and hero["color"] == "rgb(31, 35, 40)"
