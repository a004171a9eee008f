"""The rendered seed email in a real headless Chromium, at phone and desktop widths."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.content import find_module, load_module
from pipeline.preview import write_preview
from pipeline.settings import Settings

pytestmark = pytest.mark.browser

LAYOUT = """() => {
  const width = window.innerWidth;
  const images = [...document.images].map(img => {
    const box = img.getBoundingClientRect();
    return {src: img.src, alt: img.alt, loaded: img.complete && img.naturalWidth > 0,
            left: box.left, right: box.right, width: box.width};
  });
  const wide = [...document.body.querySelectorAll('*')]
    .filter(el => el.getBoundingClientRect().right > width + 1)
    .map(el => el.tagName + '.' + el.className).slice(0, 5);
  return {width, scrollWidth: document.documentElement.scrollWidth, images, wide};
}"""


@pytest.mark.parametrize("width", [375, 600])
def test_seed_email_fits_the_screen(
    browser, settings: Settings, tmp_path: Path, artifacts: Path, width: int
) -> None:
    module = load_module(find_module(settings, "hip-hinge"), settings)
    files = write_preview(module, settings, tmp_path, token="browser-test")
    page = browser.new_page(viewport={"width": width, "height": 900})
    try:
        page.goto(files.paths[0].as_uri())
        page.wait_for_load_state("load")
        layout = page.evaluate(LAYOUT)
        page.screenshot(path=str(artifacts / f"seed-email-{width}px.png"), full_page=True)
    finally:
        page.close()
    assert layout["scrollWidth"] <= width, f"horizontal overflow: {layout['wide']}"
    assert layout["wide"] == []
    assert layout["images"], "the seed email has a hero image"
    for img in layout["images"]:
        assert img["loaded"], f"image did not load: {img['src']}"
        assert img["left"] >= 0 and img["right"] <= width, img
        assert img["alt"]
    hero = layout["images"][0]
    column = min(width, 600) - 48  # the card's 24 px padding on each side
    assert column - 1 <= hero["width"] <= column  # fills the column on phones too
