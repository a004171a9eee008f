"""The whole signup journey in a real headless Chromium against a real `newsletter serve`.

Form -> confirmation email in the outbox Maildir -> its link -> confirmed page ->
RFC 8058 one-click POST to the email's List-Unsubscribe URL -> unsubscribed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import (
    confirm_link,
    free_port,
    running_server,
    set_base_url,
    text_part,
    unsubscribe_url,
    wait_for_outbox,
)

from pipeline.settings import Settings, load_settings
from subscribers.store import Store

pytestmark = pytest.mark.browser


@pytest.fixture
def server(project: Path, test_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    set_base_url(project / "newsletter.toml", base)
    log = tmp_path / "serve.log"
    with running_server(project / "newsletter.toml", test_env, port=port, workers=1, log=log):
        yield base


@pytest.fixture
def served_settings(project: Path, test_env: dict[str, str], server: str) -> Settings:
    return load_settings(project / "newsletter.toml", env=test_env)


def test_signup_confirm_and_one_click_unsubscribe_in_a_real_browser(
    browser: object, server: str, served_settings: Settings, artifacts: Path
) -> None:
    page = browser.new_page(viewport={"width": 800, "height": 900})
    try:
        _journey(page, server, served_settings, artifacts)
    finally:
        page.close()


def _journey(page: object, server: str, settings: Settings, artifacts: Path) -> None:
    # 1. The hosted signup page, filled in like a reader would.
    page.goto(f"{server}/subscribe")
    assert page.title() == "Subscribe"
    page.fill("#nl-email", "reader@example.com")
    page.fill("#nl-name", "Riley Reader")
    page.uncheck("input[name=topics][value=offers]")
    page.screenshot(path=str(artifacts / "signup-1-form.png"), full_page=True)
    page.click("button[type=submit]")
    page.wait_for_selector("text=Check your inbox")
    page.screenshot(path=str(artifacts / "signup-2-thanks.png"), full_page=True)

    # 2. The confirmation email, read from the outbox Maildir (the mailer sends it).
    [msg] = wait_for_outbox(settings.outbox_dir, 1)
    assert msg["To"] == "Riley Reader <reader@example.com>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = confirm_link(text_part(msg))
    assert link.startswith(f"{server}/confirm/")

    # 3. Its link confirms.
    page.goto(link)
    assert page.inner_text("#confirmed").startswith("Thank you: reader@example.com is confirmed")
    assert "Content updates" in page.inner_text("main")
    assert "Program offers" not in page.inner_text("main")
    page.screenshot(path=str(artifacts / "signup-3-confirmed.png"), full_page=True)
    with Store.from_settings(settings) as store:
        sub = store.find("reader@example.com")
        assert (sub.status, sub.topics, sub.name) == ("active", ("updates",), "Riley Reader")
        consent = store.consents_for(sub.id)[0]
        assert consent["user_agent"] and "Chrome" in consent["user_agent"]

    # 4. A mail client's RFC 8058 one-click POST to the List-Unsubscribe URL.
    url = unsubscribe_url(msg["List-Unsubscribe"])
    assert url.startswith(f"{server}/unsubscribe/")
    resp = page.request.post(url, form={"List-Unsubscribe": "One-Click"})
    assert resp.status == 200
    with Store.from_settings(settings) as store:
        assert store.find("reader@example.com").status == "unsubscribed"
        assert list(store.eligible_recipients("updates")) == []

    # 5. The same URL in a browser shows the state (a GET never unsubscribes by itself).
    page.goto(url)
    assert page.inner_text("h1") == "You are unsubscribed"
    page.screenshot(path=str(artifacts / "signup-4-unsubscribed.png"), full_page=True)


def test_the_unsubscribe_page_needs_a_click(
    browser: object, server: str, served_settings: Settings, artifacts: Path
) -> None:
    page = browser.new_page()
    try:
        page.goto(f"{server}/subscribe")
        page.fill("#nl-email", "clicker@example.com")
        page.click("button[type=submit]")
        page.wait_for_selector("text=Check your inbox")
        [msg] = wait_for_outbox(served_settings.outbox_dir, 1)
        page.goto(confirm_link(text_part(msg)))
        page.goto(unsubscribe_url(msg["List-Unsubscribe"]))  # what a link scanner does
        with Store.from_settings(served_settings) as store:
            assert store.find("clicker@example.com").status == "active"
        page.screenshot(path=str(artifacts / "unsubscribe-page.png"), full_page=True)
        page.click("#unsubscribe")
        page.wait_for_selector("#unsubscribed")
        with Store.from_settings(served_settings) as store:
            assert store.find("clicker@example.com").status == "unsubscribed"
    finally:
        page.close()


def test_the_pasted_snippet_posts_across_origins_without_javascript(
    browser: object,
    project: Path,
    test_env: dict[str, str],
    static_site: tuple[str, Path],
    tmp_path: Path,
    artifacts: Path,
) -> None:
    from helpers import set_site

    from subscribers.forms import render_snippet

    site, root = static_site
    port = free_port()
    config = project / "newsletter.toml"
    set_site(config, base_url=f"http://127.0.0.1:{port}", site_url=site)
    settings = load_settings(config, env=test_env)
    snippet = render_snippet(settings, next_url=f"{site}/thanks.html")
    (root / "hip-hinge.html").write_text(
        "<!doctype html><meta charset=utf-8><title>Master the Hip Hinge</title>"
        f"<article><h1>Master the Hip Hinge</h1><p>...</p></article>{snippet}"
    )
    (root / "thanks.html").write_text("<!doctype html><title>Thanks</title><h1>Thanks!</h1>")
    log = tmp_path / "serve.log"
    with running_server(config, test_env, port=port, log=log):
        context = browser.new_context(java_script_enabled=False)
        page = context.new_page()
        try:
            page.goto(f"{site}/hip-hinge.html")
            page.fill("#nl-email", "article.reader@example.com")
            page.screenshot(path=str(artifacts / "snippet-on-article.png"), full_page=True)
            page.click("button[type=submit]")
            page.wait_for_url(f"{site}/thanks.html")
            assert page.inner_text("h1") == "Thanks!"
            [msg] = wait_for_outbox(settings.outbox_dir, 1)
        finally:
            context.close()
    with Store.from_settings(settings) as store:
        sub = store.find("article.reader@example.com")
        assert sub.status == "pending" and sub.topics == ("offers", "updates")
        consent = store.consents_for(sub.id)[0]
        assert consent["source"] == "article"
        assert consent["wording"].startswith("If you want to be notified of new content updates")
    assert msg["To"] == "article.reader@example.com"
