"""The web app serves the archive at /archive/: the same files `newsletter archive`
writes, up to date the moment an issue is sent."""

from __future__ import annotations

from pathlib import Path

import feedparser
import pytest
from archive_helpers import add_readers, runner, send, update_module, write_module

from pipeline.settings import Settings


@pytest.fixture
def run(project: Path, test_env: dict[str, str]):
    return runner(project, test_env)


def test_archive_pages_are_the_files_newsletter_archive_writes(run, client, settings) -> None:
    add_readers(settings)
    send(run, "bulletproof-back-program")
    send(run, "hip-hinge")
    assert run("archive").exit_code == 0
    out = settings.var_dir / "archive"
    files = [p for p in out.rglob("*") if p.is_file() and p.name != ".newsletter-archive.json"]
    assert len(files) == 6
    for path in files:
        reply = client.get(f"/archive/{path.relative_to(out).as_posix()}")
        assert reply.status_code == 200, path
        assert reply.data == path.read_bytes(), path  # byte for byte
    assert client.get("/archive/").data == (out / "index.html").read_bytes()
    assert client.get("/archive/hip-hinge/").data == (out / "hip-hinge" / "index.html").read_bytes()


def test_archive_answers_with_the_right_types_and_headers(run, client, settings) -> None:
    add_readers(settings)
    send(run, "hip-hinge")
    page = client.get("/archive/hip-hinge/")
    assert page.content_type == "text/html; charset=utf-8"
    assert page.headers["Cache-Control"] == "public, max-age=300"
    assert "form-action 'self'" in page.headers["Content-Security-Policy"]
    feed = client.get("/archive/feed.xml")
    assert feed.content_type == "application/atom+xml; charset=utf-8"
    parsed = feedparser.parse(feed.data)
    assert not parsed.bozo and [e.link for e in parsed.entries] == [
        "http://127.0.0.1:8000/archive/hip-hinge/"
    ]
    image = client.get("/archive/hip-hinge/images/hip-hinge.png")
    assert image.content_type == "image/png"
    assert image.data == (settings.content_dir / "images" / "hip-hinge.png").read_bytes()


def test_latest_and_folders_without_a_slash_redirect(run, client, settings) -> None:
    assert client.get("/archive/latest/").headers["Location"] == "/archive/"
    add_readers(settings)
    send(run, "hip-hinge")
    latest = client.get("/archive/latest/")
    assert latest.status_code == 302 and latest.headers["Location"] == "/archive/hip-hinge/"
    bare = client.get("/archive/hip-hinge")
    assert bare.status_code == 308 and bare.headers["Location"] == "/archive/hip-hinge/"
    assert client.get("/archive").headers["Location"] == "/archive/"


def test_unsent_unknown_and_outside_paths_are_404(run, client, settings) -> None:
    add_readers(settings)
    send(run, "hip-hinge")
    for path in (
        "/archive/bulletproof-back-program/",  # never sent
        "/archive/nope/",
        "/archive/page/2/",
        "/archive/hip-hinge/images/missing.png",
        "/archive/hip-hinge/../../newsletter.toml",
        "/archive/%2e%2e/newsletter.toml",
        "/archive/hip-hinge/2026-11-23-hip-hinge.md",  # content files are not images
        "/archive/.newsletter-archive.json",
    ):
        reply = client.get(path)
        assert reply.status_code == 404, path
        assert b"Traceback" not in reply.data


def test_a_new_send_and_an_edit_show_without_a_restart(run, client, settings: Settings) -> None:
    add_readers(settings)
    assert b"No issues yet" in client.get("/archive/").data
    send(run, "hip-hinge")
    assert b"Master the Hip Hinge" in client.get("/archive/").data
    path = write_module(settings, "fresh", update_module("Fresh off the press"), "Brand new.")
    assert client.get("/archive/fresh/").status_code == 404  # written, not sent
    send(run, "fresh")
    assert b"Brand new." in client.get("/archive/fresh/").data
    path.write_text(path.read_text().replace("Brand new.", "Edited after sending."))
    assert b"Edited after sending." in client.get("/archive/fresh/").data
    assert client.get("/archive/latest/").headers["Location"] == "/archive/fresh/"


def test_the_emails_view_in_browser_link_opens_the_issue_page(run, client, settings) -> None:
    import re

    from helpers import read_outbox

    add_readers(settings)
    send(run, "hip-hinge")
    messages = read_outbox(settings.outbox_dir)
    assert len(messages) == 3
    links = set()
    for message in messages:
        html = message.get_body(preferencelist=("html",)).get_content()
        links.add(re.search(r'href="([^"]+)"[^>]*>View in your browser<', html)[1])
    assert links == {"http://127.0.0.1:8000/archive/hip-hinge/"}  # the same for everyone
    page = client.get("/archive/hip-hinge/")
    assert page.status_code == 200
    assert b"<h1>Master the Hip Hinge To Protect and Strengthen Your Lower Back</h1>" in page.data


def test_a_step_kept_out_of_the_archive_has_its_web_version_at_view(client, settings) -> None:
    from archive_helpers import record_sent

    front = update_module("Hello there", "delay: 0d\ntopic: updates")
    write_module(settings, "01-hello", front, "Welcome aboard.", "sequences/intro")
    add_readers(settings)
    assert client.get("/view/intro/hello").status_code == 404  # not sent yet
    record_sent(settings, "intro/hello", "updates")
    page = client.get("/view/intro/hello")
    assert page.status_code == 200 and b"Welcome aboard." in page.data
    assert client.get("/archive/intro/hello/").status_code == 404  # steps stay out
