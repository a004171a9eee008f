"""`newsletter serve --port N` (`make serve PORT=N`): in development base_url follows the
port, and the hosted form posts back to where its page came from, so a real Chromium
is never stopped by the page's CSP (form-action), whatever base_url says."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import (
    confirm_link,
    free_port,
    running_server,
    text_part,
    wait_for_outbox,
)

from pipeline.settings import Settings, load_settings
from subscribers.server import follow_port


def settings_with(project: Path, **env: str) -> Settings:
    return load_settings(project / "newsletter.toml", env={"NEWSLETTER_SECRET_KEY": "k", **env})


def test_base_url_follows_the_port_in_development(project: Path) -> None:
    given = settings_with(project)
    assert given.base_url == "http://127.0.0.1:8000"
    moved = follow_port(given, 8123)
    assert moved.base_url == "http://127.0.0.1:8123"
    assert moved.site_url == given.site_url  # set in the file: the author's site stays
    assert follow_port(given, 8000) is given


@pytest.mark.parametrize(
    "env",
    [
        {"NEWSLETTER_BASE_URL": "http://127.0.0.1:8000"},  # chosen on purpose
        {"NEWSLETTER_BASE_URL": "https://news.example.com"},  # a public address
        {"NEWSLETTER_BASE_URL": "http://192.168.1.5:8000"},  # another machine
    ],
)
def test_a_chosen_or_public_base_url_stays(project: Path, env: dict[str, str]) -> None:
    given = settings_with(project, **env)
    assert follow_port(given, 8123) is given


def test_site_url_that_defaulted_to_base_url_follows_too(tmp_path: Path) -> None:
    given = load_settings(root=tmp_path, env={})
    assert given.site_url == "http://127.0.0.1:8000"
    assert follow_port(given, 9000).site_url == "http://127.0.0.1:9000"


def _sign_up(browser: object, base: str, email: str) -> None:
    page = browser.new_page()
    blocked: list[str] = []
    page.on(
        "console", lambda msg: blocked.append(msg.text) if "Content Security" in msg.text else 0
    )
    try:
        page.goto(f"{base}/subscribe")
        page.fill("#nl-email", email)
        page.click("button[type=submit]")
        page.wait_for_selector("text=Check your inbox", timeout=10_000)
    finally:
        page.close()
    assert blocked == []


@pytest.mark.browser
def test_serve_on_another_port_signs_up_and_mails_its_own_links(
    browser: object, project: Path, test_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = project / "newsletter.toml"  # base_url = http://127.0.0.1:8000, as shipped
    with running_server(config, test_env, port=port, log=tmp_path / "serve.log"):
        _sign_up(browser, base, "port.reader@example.com")
        [msg] = wait_for_outbox(project / "var" / "outbox", 1)
    assert confirm_link(text_part(msg)).startswith(f"{base}/confirm/")


@pytest.mark.browser
def test_hosted_form_posts_to_its_own_host_even_when_base_url_differs(
    browser: object, project: Path, test_env: dict[str, str], tmp_path: Path
) -> None:
    """base_url pinned to :8000 (as behind a proxy), the page reached on another port."""
    port = free_port()
    env = {**test_env, "NEWSLETTER_BASE_URL": "http://127.0.0.1:8000"}
    config = project / "newsletter.toml"
    with running_server(config, env, port=port, log=tmp_path / "serve.log"):
        _sign_up(browser, f"http://127.0.0.1:{port}", "pinned.reader@example.com")
        [msg] = wait_for_outbox(project / "var" / "outbox", 1)
    assert confirm_link(text_part(msg)).startswith("http://127.0.0.1:8000/confirm/")
