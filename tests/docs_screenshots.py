"""Copy a few of the browser tests' screenshots into docs/screenshots/ for the README.

    .venv/bin/pytest tests/test_browser_darkmode.py && .venv/bin/python tests/docs_screenshots.py

The full set (every width, light and dark, full pages) stays in tests/artifacts/; the
copies are the first screen of each, as JPEG, to keep the repository small.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "tests" / "artifacts"
DOCS = REPO / "docs" / "screenshots"
PICKS = [
    *(f"email-hip-hinge-{w}px-{s}-top" for w in (320, 375, 600) for s in ("light", "dark")),
    "email-hip-hinge-forced-dark",
    "email-images-off-320px-light",
    "email-images-off-320px-dark",
    "archive-hip-hinge-375-light-top",  # tests/test_archive_browser.py
    "archive-hip-hinge-1280-dark-top",
]


def main() -> None:
    DOCS.mkdir(parents=True, exist_ok=True)
    for name in PICKS:
        with Image.open(ARTIFACTS / f"{name}.png") as img:
            target = DOCS / f"{name.removesuffix('-top')}.jpg"
            img.convert("RGB").save(target, quality=80, optimize=True)
            print(f"{target.relative_to(REPO)}: {target.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
