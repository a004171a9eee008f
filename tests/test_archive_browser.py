"""The archive in a real headless Chromium: it fits a phone and a desktop in light and
dark, and the signup form on an issue page works end to end against a running
`newsletter serve`, from a static host (another origin) and from the app's /archive/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from archive_helpers import add_readers, runner, send, update_module, write_module
from helpers import confirm_link, free_port, read_outbox, running_server, set_site, text_part

from pipeline.settings import Settings, load_settings
from subscribers.store import Store

pytestmark = pytest.mark.browser
HARD = """
A very long word: {word}.

A long link: <https://hingestrength.example.com/articles/a/very/long/path/that/goes/on/and/on/without/any/break/at/all/really>

```
{code} = compute(with_many, arguments, that, never, wrap, at, all)
```

> A quote, with **bold** and a [link](https://example.com).

1. One
2. Two
   - nested item with more words than fit on one narrow line of a phone screen

---

![An inline picture](images/hip-hinge.png)
""".format(word="Pneumono" + "ultramicroscopicsilicovolcanoconiosis" * 2, code="a_line" * 12)


def overflow(page: object) -> int:
    """How many CSS pixels the page is wider than the window (0: no sideways scroll)."""
    return page.evaluate(
        "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - document.documentElement.clientWidth"
    )


def test_pages_fit_375_and_1280_px_in_light_and_dark(
    browser: object, project: Path, test_env: dict[str, str], settings: Settings, artifacts: Path
) -> None:
    run = runner(project, test_env)
    add_readers(settings)
    title = "A Title With Averyveryverylongwordthatmightnotfitonaphone And More Words"
    front = update_module(title, "image: images/hip-hinge.png\nimage_alt: A hinge")
    write_module(settings, "hard-case", front, HARD)
    for slug in ("bulletproof-back-program", "hip-hinge", "hard-case"):
        send(run, slug)
    assert run("archive").exit_code == 0
    out = settings.var_dir / "archive"
    pages = ["index.html", "hip-hinge/index.html", "bulletproof-back-program/index.html"]
    pages.append("hard-case/index.html")
    for width in (375, 1280):
        for scheme in ("light", "dark"):
            page = browser.new_page(viewport={"width": width, "height": 800}, color_scheme=scheme)
            try:
                for name in pages:
                    page.goto((out / name).as_uri())
                    assert overflow(page) == 0, f"{name} at {width}px ({scheme})"
                    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
                    expected = "rgb(13, 17, 23)" if scheme == "dark" else "rgb(243, 244, 246)"
                    assert background == expected, (name, scheme)  # palette's page colour
                    shot = f"archive-{name.split('/')[0].replace('.html', '')}-{width}-{scheme}.png"
                    page.screenshot(path=str(artifacts / shot), full_page=True)
                    if name == "hip-hinge/index.html":  # the first screen, for the README
                        page.screenshot(path=str(artifacts / shot.replace(".png", "-top.png")))
                # Images are there and loaded (copied next to the page).
                page.goto((out / "hard-case" / "index.html").as_uri())
                loaded = page.evaluate(
                    "[...document.images].map(i => i.complete && i.naturalWidth > 0)"
                )
                assert loaded == [True, True]
            finally:
                page.close()


@pytest.fixture
def served(project: Path, test_env: dict[str, str], tmp_path: Path) -> Iterator[Settings]:
    """`newsletter serve` on a free port, with hip-hinge sent and the archive built."""
    port = free_port()
    config = project / "newsletter.toml"
    set_site(config, base_url=f"http://127.0.0.1:{port}")
    settings = load_settings(config, env=test_env)
    run = runner(project, test_env)
    add_readers(settings)
    send(run, "hip-hinge")
    assert run("archive").exit_code == 0
    with running_server(config, test_env, port=port, log=tmp_path / "serve.log"):
        yield settings


def sign_up(page: object, url: str, email: str, settings: Settings) -> None:
    """Fill in the form on an archive page, then confirm through the emailed link."""
    page.goto(url)
    assert page.locator("form.nl-form").count() == 1
    page.fill("#nl-email", email)
    page.fill("#nl-name", "Archive Visitor")
    page.uncheck("input[name=topics][value=offers]")
    page.click("form.nl-form button[type=submit]")
    page.wait_for_selector("text=Check your inbox")
    confirmation = wait_for_mail(settings, email)
    page.goto(confirm_link(text_part(confirmation)))
    assert page.inner_text("#confirmed").startswith(f"Thank you: {email} is confirmed")


def wait_for_mail(settings: Settings, email: str) -> object:
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = [m for m in read_outbox(settings.outbox_dir) if email in m["To"]]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no confirmation email to {email}")


def subscribed(settings: Settings, email: str) -> tuple[str, tuple[str, ...], str]:
    with Store.from_settings(settings) as store:
        sub = store.find(email)
        assert sub is not None
        consent = store.consents_for(sub.id)[0]
        return sub.status, sub.topics, f"{consent['source']}: {consent['wording']}"


def test_signup_from_an_issue_page_on_a_static_host(
    browser: object, served: Settings, static_site: tuple[str, Path], artifacts: Path
) -> None:
    import shutil

    host, root = static_site
    shutil.copytree(served.var_dir / "archive", root, dirs_exist_ok=True)
    page = browser.new_page(viewport={"width": 375, "height": 800})
    try:
        sign_up(page, f"{host}/hip-hinge/", "static.visitor@example.com", served)
        page.screenshot(path=str(artifacts / "archive-signup-confirmed.png"), full_page=True)
    finally:
        page.close()
    status, topics, consent = subscribed(served, "static.visitor@example.com")
    assert (status, topics) == ("active", ("updates",))
    assert consent.startswith("archive: Get the next issues of Hinge Strength by email")


def test_signup_from_an_issue_page_served_by_the_app(browser: object, served: Settings) -> None:
    base = served.base_url
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []  # the app's own pages have no icon: its favicon.ico 404 is fine
    page.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and not m.location["url"].endswith("/favicon.ico")
            else None
        ),
    )
    try:
        page.goto(f"{base}/archive/")
        page.click("text=Master the Hip Hinge")
        page.wait_for_load_state("load")
        assert page.url == f"{base}/archive/hip-hinge/index.html"
        assert page.evaluate("document.images[0].naturalWidth") > 0  # the hero, from /archive/
        sign_up(page, page.url, "app.visitor@example.com", served)
    finally:
        page.close()
    assert errors == []  # no Content-Security-Policy refusal, nothing broken
    status, topics, _ = subscribed(served, "app.visitor@example.com")
    assert (status, topics) == ("active", ("updates",))
