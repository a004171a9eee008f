"""`newsletter dev`: re-rendering a module after a save, and a save reaching the browser.

1. Re-render: what the studio does for an open page after a save of its Markdown file
   (load and check the module, compile it for the studio and as sent, personalise,
   write the .eml, read the inbox row), timed per save after the cache is emptied.
2. Save to browser: the studio runs on 127.0.0.1 with its watcher; a headless Chromium
   (Debian's) has the module page open. Each round writes a new word into the file; the
   page itself records (Date.now(), same clock as this process) the first animation
   frame whose email frame shows the word. Skipped when Chromium is not installed.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench import Row
from pipeline.settings import Settings, load_settings
from pipeline.studio import Workspace
from pipeline.studio.readers import sample
from pipeline.studio.server import start

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
RENDERS = 60
SAVES = 20
FILE = "2026-11-23-hip-hinge.md"
WATCH = """(word) => {
  window.__seenAt = 0;
  const look = () => {
    const frame = document.querySelector('#frame-box iframe.email:not(.loading)');
    const doc = frame && frame.contentDocument;
    if (doc && doc.body && doc.body.innerText.includes(word)) window.__seenAt = Date.now();
    else requestAnimationFrame(look);
  };
  look();
}"""


def run() -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench-studio-") as tmp:
        settings = _project(Path(tmp))
        rows = [_rerender(settings)]
        if Path(CHROMIUM).exists():
            rows.append(_save_to_browser(settings))
        else:
            print(f"bench_studio: {CHROMIUM} missing, no browser row", file=sys.stderr)
    return rows


def _project(root: Path) -> Settings:
    for name in ("content", "templates"):
        shutil.copytree(REPO / name, root / name)
    shutil.copy(REPO / "newsletter.toml", root / "newsletter.toml")
    return load_settings(root / "newsletter.toml", env={"NEWSLETTER_SECRET_KEY": "bench"})


def _rerender(settings: Settings) -> Row:
    workspace = Workspace(settings)
    path = settings.content_dir / FILE
    original = path.read_text()
    entry = workspace.find("hip-hinge")
    reader = sample(settings, "sample")
    workspace.render(entry, reader)  # warm: templates compiled, parsers loaded
    timings = []
    for i in range(RENDERS):
        path.write_text(original.replace("Learning how to hinge", f"Edit {i}: hinge"))
        workspace.changed([path])  # what the watcher calls
        start = time.perf_counter()
        rendered = workspace.render(entry, reader)
        timings.append((time.perf_counter() - start) * 1000)
        assert f"Edit {i}: hinge" in rendered.html
    path.write_text(original)
    workspace.close()
    return Row(
        "studio",
        "re-render after a save (median)",
        statistics.median(timings),
        "ms",
        "<= 50",
        "load + check + 2 compiles + .eml, seed module",
    )


def _save_to_browser(settings: Settings) -> Row:
    from playwright.sync_api import sync_playwright

    studio = start(settings, port=0)
    thread = threading.Thread(target=studio.serve_forever, daemon=True)
    thread.start()
    path = settings.content_dir / FILE
    original = path.read_text()
    latencies = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{studio.url}/m/hip-hinge")
            page.wait_for_selector("body[data-live='connected']")
            for i in range(SAVES):
                word = f"Bench save {i}"
                page.evaluate(WATCH, word)
                saved = time.time() * 1000
                path.write_text(original.replace("Learning how to hinge", word))
                page.wait_for_function("() => window.__seenAt > 0", timeout=10_000)
                latencies.append(page.evaluate("window.__seenAt") - saved)
                time.sleep(0.2)  # let the swap settle: each round starts from a quiet page
            browser.close()
    finally:
        path.write_text(original)
        studio.stop()
        thread.join(timeout=5)
    return Row(
        "studio",
        "save to Chromium showing it (median)",
        statistics.median(latencies),
        "ms",
        "<= 1000",
        f"watch + render + page swap + frame load; max {max(latencies):.0f} ms",
    )
