"""`newsletter dev` in a real headless Chromium: the studio on a real port, watching the
project's files, with the page following saves on disk.

Timing: the live tests wait for the change with a poll, then check it came within the
issue's 1 s. They were run 20 times in a row to show they are not flaky.
"""

from __future__ import annotations

import mailbox
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.settings import Settings
from pipeline.studio.server import Studio, start

pytestmark = pytest.mark.browser

HINGE = "2026-11-23-hip-hinge.md"
LIVE_DEADLINE = 1.0  # seconds from a save to the open page showing it (the figure)
FRAME = "#frame-box iframe.email:not(.loading)"
FRAME_HAS = """(text) => {
  const frame = document.querySelector('#frame-box iframe.email:not(.loading)');
  const doc = frame && frame.contentDocument;
  return Boolean(doc && doc.readyState === 'complete' && doc.body
    && doc.body.innerText.includes(text));
}"""


@pytest.fixture
def studio(settings: Settings) -> Iterator[Studio]:
    running = start(settings, port=0)
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield running
    running.stop()
    thread.join(timeout=5)


@pytest.fixture
def context_options() -> dict:
    return {"viewport": {"width": 1280, "height": 900}}


@pytest.fixture
def page(browser, studio: Studio, context_options: dict) -> Iterator[object]:
    context = browser.new_context(**context_options)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], errors


def open_module(page, studio: Studio, key: str = "hip-hinge", query: str = "") -> None:
    page.goto(f"{studio.url}/m/{key}{query}")
    page.wait_for_selector("body[data-live='connected']")
    page.wait_for_function(FRAME_HAS, arg="Hi Sample,")


def frame_eval(page, script: str) -> object:
    """Evaluate ``script`` (a function of the email's document) in the shown frame."""
    return page.evaluate(f"() => ({script})(document.querySelector('{FRAME}').contentDocument)")


def edit(path: Path, old: str, new: str) -> float:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return time.monotonic()


def outbox(settings: Settings) -> list:
    if not settings.outbox_dir.exists():
        return []
    return list(mailbox.Maildir(settings.outbox_dir, create=False))


# ---- index ---------------------------------------------------------------------------------


def test_index_lists_modules_and_follows_new_files(
    page, studio: Studio, settings: Settings, artifacts: Path
) -> None:
    page.goto(studio.url + "/")
    page.wait_for_selector("body[data-live='connected']")
    titles = page.locator("table.modules td.title a").all_inner_texts()
    assert titles == [
        "Master the Hip Hinge To Protect and Strengthen Your Lower Back",
        "The Bulletproof Back: 8-Week Coaching Program",
        "Three hinge mistakes, and how to fix them",  # the welcome sequence's steps
        "Welcome to Hinge Strength",
    ]
    assert page.locator("tr[data-key='hip-hinge'] .count.ok").inner_text() == "ok"
    page.screenshot(path=str(artifacts / "studio-index.png"), full_page=True)
    page.evaluate("window.__marker = 'kept'")
    (settings.content_dir / "2026-12-01-deadlift.md").write_text(
        "---\ntitle: Deadlift basics\ndate: 2026-12-01\nkind: update\n---\nHinge, then lift.\n"
    )
    page.wait_for_selector("tr[data-key='deadlift']", timeout=5000)
    assert page.locator("table.modules td.title a").first.inner_text() == "Deadlift basics"
    assert page.evaluate("window.__marker") == "kept"


# ---- module page ----------------------------------------------------------------------------


def test_module_page_shows_the_email_in_the_frame(page, studio: Studio, artifacts: Path) -> None:
    open_module(page, studio)
    title = frame_eval(page, "doc => doc.querySelector('img').alt")
    assert "hinging at the hips" in title
    loaded = frame_eval(page, "doc => [...doc.images].every(i => i.complete && i.naturalWidth > 0)")
    assert loaded, "the local hero image is served by the studio"
    assert page.locator(".inbox-row .from").inner_text() == "Coach Sam at Hinge Strength"
    assert 10 < clip_kb(page.locator("#clip").inner_text()) < 60  # the seed email's size
    fits = f"""() => {{
      const frame = document.querySelector('{FRAME}');
      const body = frame.contentDocument.body.getBoundingClientRect().height;
      return body > 1000 && Math.abs(frame.getBoundingClientRect().height - body) <= 2;
    }}"""
    page.wait_for_function(fits, timeout=5000)  # the frame grows to the email: no inner scroll
    page.screenshot(path=str(artifacts / "studio-module-desktop.png"))


def test_phone_makes_the_email_375px_with_no_horizontal_overflow(
    page, studio: Studio, artifacts: Path
) -> None:
    open_module(page, studio)
    page.click("[data-control='w'] button[data-value='phone']")
    page.wait_for_function(
        f"() => document.querySelector('{FRAME}').getBoundingClientRect().width === 375"
    )
    layout = frame_eval(
        page,
        """doc => ({width: doc.documentElement.clientWidth,
                   scroll: doc.documentElement.scrollWidth,
                   wide: [...doc.body.querySelectorAll('*')]
                     .filter(el => el.getBoundingClientRect().right > 376).length})""",
    )
    assert layout == {"width": 375, "scroll": 375, "wide": 0}
    assert "w=phone" in page.url  # a reload keeps the choice
    page.screenshot(path=str(artifacts / "studio-module-phone.png"))


def test_a_remote_image_that_cannot_load_shows_its_alt_text(
    page, studio: Studio, settings: Settings
) -> None:
    """Offline: local images come from the studio; a remote one falls back to its alt."""
    (settings.content_dir / "2026-12-02-chart.md").write_text(
        "---\ntitle: Progress chart\ndate: 2026-12-02\nkind: update\n---\nHi.\n\n"
        "![Weekly squat volume](http://127.0.0.1:9/chart.png)\n"
    )
    open_module(page, studio, "chart")
    page.wait_for_function(
        f"() => document.querySelector('{FRAME}').contentDocument"
        ".querySelector('img[src*=\"chart.png\"]')?.complete"
    )
    image = frame_eval(
        page,
        """doc => { const img = doc.querySelector('img[src*="chart.png"]');
                   return {alt: img.alt, loaded: img.naturalWidth > 0,
                           shown: img.getBoundingClientRect().width > 0}; }""",
    )
    assert image == {"alt": "Weekly squat volume", "loaded": False, "shown": True}


@pytest.mark.parametrize("path", ["/", "/m/hip-hinge?w=phone"])
def test_studio_pages_fit_a_phone(browser, studio: Studio, artifacts: Path, path: str) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 800})
    page = context.new_page()
    try:
        page.goto(studio.url + path)
        page.wait_for_selector("body[data-live='connected']")
        width = page.evaluate("document.documentElement.scrollWidth")
        name = "index" if path == "/" else "module"
        page.screenshot(path=str(artifacts / f"studio-{name}-375px.png"), full_page=True)
    finally:
        context.close()
    assert width <= 375


# ---- live ------------------------------------------------------------------------------------


def test_saving_the_markdown_updates_the_open_page_without_a_reload(
    page, studio: Studio, settings: Settings, artifacts: Path
) -> None:
    open_module(page, studio)
    page.click("[data-control='w'] button[data-value='phone']")
    page.click("[data-control='theme'] button[data-value='inverted']")
    page.wait_for_function(
        f"() => document.querySelector('{FRAME}')?.contentDocument"
        "?.documentElement.dataset.studioInverted === 'true'"
    )
    page.evaluate("window.__marker = 'kept'; window.scrollTo(0, 500)")
    scrolled = page.evaluate("window.scrollY")
    assert scrolled == 500

    saved = edit(settings.content_dir / HINGE, "Learning how to hinge", "Saved edit one: hinge")
    page.wait_for_function(FRAME_HAS, arg="Saved edit one: hinge", timeout=5000)
    took = time.monotonic() - saved

    assert took < LIVE_DEADLINE, f"the page showed the save after {took:.2f} s"
    assert page.evaluate("window.__marker") == "kept", "the page was reloaded"
    assert page.evaluate("window.scrollY") == scrolled
    assert page.get_attribute("[data-value='phone']", "aria-pressed") == "true"
    assert page.get_attribute("[data-value='inverted']", "aria-pressed") == "true"
    assert frame_eval(page, "doc => doc.documentElement.dataset.studioInverted") == "true"
    assert page.evaluate(f"document.querySelector('{FRAME}').getBoundingClientRect().width") == 375
    assert "Saved edit one: hinge" in page.locator("#text").inner_text()  # the Text tab too
    page.screenshot(path=str(artifacts / "studio-live-update.png"))


def test_a_broken_front_matter_shows_file_line_then_recovers(
    page, studio: Studio, settings: Settings, artifacts: Path
) -> None:
    open_module(page, studio)
    page.evaluate("window.__marker = 'kept'")
    path = settings.content_dir / HINGE
    good = path.read_text()

    saved = edit(path, "date: 2026-11-23", "date: 2026-13-45")
    page.wait_for_selector("#failure:not([hidden])", timeout=5000)
    took = time.monotonic() - saved
    failure = page.locator("#failure").inner_text()
    assert f"{HINGE}:3" in failure and "date: expected YYYY-MM-DD" in failure
    assert "date: 2026-13-45" in failure  # the line itself, in the code frame
    assert page.locator("#frame-box").is_hidden()
    assert page.locator("#checks .count.error").inner_text() == "1 error"
    assert took < LIVE_DEADLINE, f"the error showed after {took:.2f} s"
    page.screenshot(path=str(artifacts / "studio-broken-front-matter.png"))

    path.write_text(good.replace("Learning how to hinge", "Fixed again: hinge"))
    page.wait_for_function(FRAME_HAS, arg="Fixed again: hinge", timeout=5000)
    assert page.locator("#failure").is_hidden()
    assert page.locator("#checks .count.ok").inner_text() == "ok"
    assert page.evaluate("window.__marker") == "kept"


def test_a_template_edit_updates_every_open_page(page, studio: Studio, settings: Settings) -> None:
    open_module(page, studio, "bulletproof-back-program")
    base = settings.templates_dir / "email" / "base.mjml.j2"
    edit(base, "Update your preferences", "Choose what you get")
    page.wait_for_function(FRAME_HAS, arg="Choose what you get", timeout=5000)


# ---- readers, send test, dark --------------------------------------------------------------------


def test_a_sample_reader_with_markup_in_the_name_is_shown_escaped(page, studio: Studio) -> None:
    open_module(page, studio)
    page.select_option("#reader", "tricky")
    page.wait_for_function(FRAME_HAS, arg="Hi <Ava>,", timeout=5000)
    assert frame_eval(page, "doc => doc.querySelectorAll('ava').length") == 0
    assert "reader=tricky" in page.url


def test_send_test_puts_a_message_in_the_outbox(
    page, studio: Studio, settings: Settings, artifacts: Path
) -> None:
    open_module(page, studio)
    page.fill("#send-to", "me@example.com")
    page.click("#send-form button[type=submit]")
    page.wait_for_selector("#send-result[data-ok='true']", timeout=10000)
    assert "test message sent to me@example.com via outbox" in page.inner_text("#send-result")
    (mail,) = outbox(settings)
    assert mail["To"] == "me@example.com" and mail["Subject"].startswith("[TEST] ")
    assert not (settings.var_dir / "newsletter.db").exists()  # recorded nowhere
    page.screenshot(path=str(artifacts / "studio-send-test.png"))


def test_another_site_cannot_make_the_studio_send(
    page, studio: Studio, settings: Settings, static_site: tuple[str, Path]
) -> None:
    """A page on another origin posts the form at the studio, as a hostile site would."""
    url, site = static_site
    (site / "index.html").write_text(
        f'<form method="post" action="{studio.url}/send-test/hip-hinge">'
        '<input name="to" value="victim@example.com"><input name="csrf" value="guess">'
        '<button id="go">win a prize</button></form>'
    )
    page.goto(f"{url}/index.html")
    with page.expect_response(lambda r: "/send-test/" in r.url) as answer:
        page.click("#go")
    assert answer.value.status == 403
    assert outbox(settings) == []


@pytest.mark.parametrize("context_options", [{"color_scheme": "dark"}])
def test_dark_applies_the_emails_dark_rules_and_inverted_darkens_it(
    page, studio: Studio, artifacts: Path
) -> None:
    """The author's desktop is dark: Light must stay light; Dark applies the email's own
    prefers-color-scheme rules; Inverted darkens light backgrounds as Gmail's apps do."""
    title = "doc => getComputedStyle(doc.querySelector('.nl-title h1')).color"
    card = "doc => getComputedStyle(doc.querySelector('.nl-card')).backgroundColor"
    open_module(page, studio)
    assert luminance(frame_eval(page, card)) > 0.8  # light, although the desktop is dark
    assert luminance(frame_eval(page, title)) < 0.2
    page.screenshot(path=str(artifacts / "studio-light.png"))

    page.click("[data-control='theme'] button[data-value='dark']")
    page.wait_for_function(
        f"() => document.querySelector('{FRAME}')?.src.includes('scheme=dark')"
        f" && ({FRAME_HAS})('Hi Sample,')"
    )
    assert luminance(frame_eval(page, card)) < 0.2  # the email's dark palette
    assert luminance(frame_eval(page, title)) > 0.6
    assert "email's own" in page.locator("#theme-note .when-dark").inner_text()
    page.screenshot(path=str(artifacts / "studio-dark.png"))

    page.click("[data-control='theme'] button[data-value='inverted']")
    page.wait_for_function(
        f"() => document.querySelector('{FRAME}')?.contentDocument"
        "?.documentElement.dataset.studioInverted === 'true'"
    )
    background = frame_eval(page, card)
    text = frame_eval(page, "doc => getComputedStyle(doc.querySelector('.body p')).color")
    assert luminance(background) < 0.1 and luminance(text) > 0.5, (background, text)
    hero = frame_eval(page, "doc => getComputedStyle(doc.querySelector('img')).filter")
    assert hero == "none"  # images are left alone
    page.screenshot(path=str(artifacts / "studio-inverted.png"))


def test_dark_on_an_email_without_dark_styles_says_so(
    page, studio: Studio, settings: Settings
) -> None:
    (settings.templates_dir / "email" / "dark.css.j2").write_text("")  # an author removed them
    open_module(page, studio, query="?theme=dark")
    note = page.locator("#theme-note .when-dark")
    assert note.is_visible()
    assert "no prefers-color-scheme: dark rules" in note.inner_text()


def clip_kb(text: str) -> float:
    """The KB figure of the Gmail clip meter."""
    return float(re.search(r"([\d.]+) KB of 102 KB", text).group(1))


def luminance(css: str) -> float:
    """Relative luminance of ``rgb(r, g, b)``."""
    r, g, b = (int(v) / 255 for v in css[css.index("(") + 1 : css.index(")")].split(",")[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b
