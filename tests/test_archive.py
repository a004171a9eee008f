"""`newsletter archive`: what is in it (only what was sent), its pages, its feed, and
that it holds nothing about readers. Real SQLite store, real sends through the outbox."""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import feedparser
import pytest
from archive_helpers import (
    add_readers,
    outputs,
    reader_traces,
    record_sent,
    runner,
    send,
    update_module,
    write_module,
)
from helpers import set_site

from pipeline.archive import select_issues
from pipeline.settings import Settings, load_settings

HINGE = "Master the Hip Hinge To Protect and Strengthen Your Lower Back"
OFFER = "The Bulletproof Back: 8-Week Coaching Program"


@pytest.fixture
def run(project: Path, test_env: dict[str, str]):
    return runner(project, test_env)


@pytest.fixture
def out(settings: Settings) -> Path:
    return settings.var_dir / "archive"


def build(run, *args: str) -> str:
    result = run("archive", *args)
    assert result.exit_code == 0, result.output
    return result.output


# ---- what is in the archive -----------------------------------------------------------


def test_only_modules_sent_to_a_reader_are_in_the_archive(run, settings, out) -> None:
    add_readers(settings)
    write_module(
        settings, "private-offer", update_module("Readers only", "archive: false"), "Hush."
    )
    write_module(settings, "never-sent", update_module("A draft nobody got"), "Not yet.")
    write_module(settings, "all-failed", update_module("Bounced everywhere"), "Nobody.")
    send(run, "hip-hinge")
    send(run, "private-offer")
    record_sent(settings, "all-failed", "updates", sent=False)  # a campaign, no reader reached

    output = build(run)

    assert "archive: 1 issue in" in output
    assert "kept out (archive: false, or a sequence step): private-offer" in output
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["hip-hinge", "latest"]
    index = (out / "index.html").read_text()
    assert HINGE in index
    for absent in (OFFER, "Readers only", "A draft nobody got", "Bounced everywhere"):
        assert absent not in index
        assert absent not in (out / "feed.xml").read_text()
    assert (out / "hip-hinge" / "images" / "hip-hinge.png").read_bytes() == (
        settings.content_dir / "images" / "hip-hinge.png"
    ).read_bytes()


def test_sequence_steps_stay_out_unless_their_front_matter_says_archive_true(
    run, settings, out
) -> None:
    add_readers(settings)
    step = "delay: 0d\n"
    write_module(
        settings, "hello", update_module("Welcome aboard", step), "Hi.", "sequences/welcome"
    )
    write_module(
        settings,
        "best-of",
        update_module("Our best articles", step.replace("0d", "3d") + "archive: true"),
        "The best of the archive.",
        "sequences/welcome",
    )
    record_sent(settings, "welcome/hello", "updates")
    record_sent(settings, "welcome/best-of", "updates")

    output = build(run)

    assert "kept out (archive: false, or a sequence step): welcome/hello" in output
    assert (out / "welcome" / "best-of" / "index.html").is_file()
    assert not (out / "welcome" / "hello").exists()
    page = (out / "welcome" / "best-of" / "index.html").read_text()
    assert "The best of the archive." in page
    assert 'href="../../index.html"' in page  # two folders down: relative links still work


def test_a_sent_module_whose_file_is_gone_is_reported_and_left_out(run, settings, out) -> None:
    add_readers(settings)
    path = write_module(settings, "gone-soon", update_module("Gone soon"), "Bye.")
    send(run, "gone-soon")
    path.unlink()
    output = build(run)
    assert "sent, but no content module any more (not in the archive): gone-soon" in output
    assert "archive: 0 issues" in output
    assert "No issues yet" in (out / "index.html").read_text()


def test_an_empty_archive_has_an_index_a_feed_and_a_latest_page(run, out) -> None:
    output = build(run)
    assert "nothing sent yet" in output
    feed = feedparser.parse((out / "feed.xml").read_bytes())
    assert not feed.bozo and feed.entries == []
    assert 'url=../index.html"' in (out / "latest" / "index.html").read_text()


# ---- the pages ------------------------------------------------------------------------


class Links(HTMLParser):
    """Every href and src of a page, and its meta/link tags."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.meta: dict[str, str] = {}
        self.rel: dict[str, str] = {}
        self.forms: list[dict[str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        for key in ("href", "src"):
            if key in found:
                self.urls.append(found[key])
        if tag == "meta" and ("property" in found or "name" in found):
            self.meta[found.get("property") or found["name"]] = found.get("content", "")
        if tag == "link":
            self.rel[found["rel"]] = found["href"]
        if tag == "form":
            self.forms.append(found)


def parsed(path: Path) -> Links:
    links = Links()
    links.feed(path.read_text())
    return links


def test_issue_page_is_the_email_for_the_web_with_signup_og_and_canonical(
    run, settings, out
) -> None:
    set_site(settings.config_path, archive_url="https://news.example.com/hinge/")
    settings = load_settings(settings.config_path, env=dict(settings.env))
    add_readers(settings)
    send(run, "hip-hinge")
    build(run)
    path = out / "hip-hinge" / "index.html"
    page = path.read_text()
    links = parsed(path)

    # The same Markdown as the email: every heading and the last words of the body.
    assert f"<h1>{HINGE}</h1>" in page
    assert "<h2>Priority #1 — Learn how to create a neutral spine</h2>" in page
    assert "progress with load and box height" in page
    assert 'href="https://hingestrength.example.com/articles/master-the-hip-hinge"' in page
    assert '<img class="hero" src="images/hip-hinge.png" alt="A lifter hinging' in page
    # Canonical and Open Graph tags use the archive's public address.
    url = "https://news.example.com/hinge/hip-hinge/"
    assert links.rel["canonical"] == url
    assert links.meta["og:url"] == url and links.meta["og:title"] == HINGE
    assert links.meta["og:type"] == "article"
    assert links.meta["og:description"].startswith("Learning to hinge from the hips")
    assert links.meta["og:image"] == "https://news.example.com/hinge/hip-hinge/images/hip-hinge.png"
    assert links.rel["alternate"] == "../feed.xml"
    # A signup form where the email has its unsubscribe footer; it posts to the app.
    [form] = links.forms
    assert form["action"] == "http://127.0.0.1:8000/subscribe" and form["method"] == "post"
    assert 'name="form" value="archive"' in page
    assert "Unsubscribe" not in page and "preferences" not in page.lower()
    assert "Hi there" not in page and "%%nl:" not in page
    # Dark mode from the email's palette.
    assert "@media (prefers-color-scheme: dark)" in page
    assert '<meta name="color-scheme" content="light dark">' in page
    palette = (settings.templates_dir / "email" / "palette.toml").read_text()
    dark_page = re.search(r'\[dark\]\s*page = "(#[0-9a-f]{6})"', palette)
    assert dark_page and f"--page: {dark_page[1]}" in page


def test_links_between_pages_are_relative_and_lead_to_files_in_the_folder(
    run, settings, out
) -> None:
    add_readers(settings)
    write_module(
        settings,
        "third",
        update_module("Third issue", "image: images/hip-hinge.png\nimage_alt: A hinge"),
        "Body ![inline](images/hip-hinge.png)",
    )
    for slug in ("bulletproof-back-program", "hip-hinge", "third"):
        send(run, slug)
    build(run)
    # Outside the archive: the site, the article, the app's signup, the canonical address.
    external = ("https://", "http://127.0.0.1:8000/subscribe", "mailto:", "data:,")
    external += (settings.archive_url,)
    checked = 0
    for page in out.rglob("*.html"):
        for url in parsed(page).urls:
            if url.startswith(external):
                continue
            assert not urlsplit(url).scheme and not url.startswith("/"), f"{page}: {url}"
            target = (page.parent / url).resolve()
            assert target.is_file(), f"{page.relative_to(out)} links to missing {url}"
            assert out.resolve() in target.parents
            checked += 1
    assert checked > 20
    # Newest first, each issue linked to the one before and after it.
    index = (out / "index.html").read_text()
    assert index.index("Third issue") < index.index(HINGE) < index.index(OFFER)
    middle = (out / "hip-hinge" / "index.html").read_text()
    assert 'rel="prev" href="../bulletproof-back-program/index.html"' in middle
    assert 'rel="next" href="../third/index.html"' in middle
    assert 'url=../third/index.html"' in (out / "latest" / "index.html").read_text()


class Sent:
    def __init__(self, slug: str, when: dt.datetime, topic: str = "updates") -> None:
        self.slug, self.topic, self.first_sent_at = slug, topic, when


def test_index_is_paginated_past_50_newest_first(settings, tmp_path) -> None:
    from pipeline.archive_build import build as write

    start = dt.datetime(2026, 1, 1, 9, tzinfo=dt.UTC)
    sent = []
    for n in range(120):
        write_module(
            settings, f"issue-{n:03d}", update_module(f"Issue number {n:03d}"), f"Body {n}."
        )
        sent.append(Sent(f"issue-{n:03d}", start + dt.timedelta(days=n)))
    out = tmp_path / "site"
    write(settings, select_issues(settings, sent), out, form_html="<form></form>")

    pages = [
        out / "index.html",
        out / "page" / "2" / "index.html",
        out / "page" / "3" / "index.html",
    ]
    titles = [re.findall(r"Issue number (\d{3})</a>", p.read_text()) for p in pages]
    assert [len(t) for t in titles] == [50, 50, 20]
    flat = [int(n) for page in titles for n in page]
    assert flat == list(range(119, -1, -1))
    assert not (out / "page" / "4").exists()
    first, second = pages[0].read_text(), pages[1].read_text()
    assert 'href="page/2/index.html">Older issues' in first and "Newer issues" not in first
    assert 'href="../../index.html">&larr; Newer issues' in second
    assert 'href="../../page/3/index.html">Older issues' in second
    assert 'href="../../issue-069/index.html"' in second  # issues linked from page 2
    assert "page 2 of 3" in second
    feed = feedparser.parse((out / "feed.xml").read_bytes())
    assert [e.title for e in feed.entries][:2] == ["Issue number 119", "Issue number 118"]
    assert len(feed.entries) == 20


def test_reserved_slug_is_a_clear_error_and_nothing_is_written(run, settings, out) -> None:
    add_readers(settings)
    write_module(settings, "latest", update_module("Latest news"), "News.")
    send(run, "latest")
    result = run("archive")
    assert result.exit_code == 1
    assert (
        "content/latest.md: slug 'latest': the archive keeps latest/, page/ for itself"
        in result.output
    )
    assert "hint: rename the file, or set 'archive: false'" in result.output
    assert not out.exists()


def test_archive_front_matter_must_be_true_or_false(run, settings) -> None:
    write_module(settings, "bad-flag", update_module("Bad flag", "archive: sometimes"), "x")
    result = run("check", "bad-flag")
    assert result.exit_code == 1
    assert "bad-flag.md:5: error: archive: expected true or false, got 'sometimes'" in result.output


# ---- the feed -------------------------------------------------------------------------


def test_feed_is_valid_atom_with_full_content_ids_updated_and_links(run, settings, out) -> None:
    set_site(settings.config_path, archive_url="https://news.example.com/hinge")
    settings = load_settings(settings.config_path, env=dict(settings.env))
    add_readers(settings)
    send(run, "bulletproof-back-program")
    send(run, "hip-hinge")
    build(run)
    raw = (out / "feed.xml").read_bytes()
    feed = feedparser.parse(raw)

    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "atom10"
    assert feed.feed.title == "Hinge Strength"
    assert feed.feed.id == "https://news.example.com/hinge/"
    links = {link.rel: link.href for link in feed.feed.links}
    assert links == {
        "self": "https://news.example.com/hinge/feed.xml",
        "alternate": "https://news.example.com/hinge/",
    }
    assert feed.feed.author == "Hinge Strength"
    assert [e.title for e in feed.entries] == [HINGE, OFFER]  # newest first
    newest = feed.entries[0]
    assert feed.feed.updated_parsed == newest.updated_parsed
    today = dt.datetime.now(dt.UTC).date().isoformat()
    for entry, slug in zip(feed.entries, ("hip-hinge", "bulletproof-back-program"), strict=True):
        assert entry.id == f"tag:hingestrength.example.com,{today}:{slug}"
        assert entry.link == f"https://news.example.com/hinge/{slug}/"
        assert entry.published_parsed and entry.updated_parsed
        assert entry.summary  # the preheader
        [content] = entry.content
        assert content.type == "text/html"
    body = newest.content[0].value
    assert "progress with load and box height" in body  # the full article, to its end
    assert 'src="https://news.example.com/hinge/hip-hinge/images/hip-hinge.png"' in body
    assert (
        "Save my spot" in feed.entries[1].content[0].value
        and "$149" in feed.entries[1].content[0].value
    )
    assert newest.tags[0].term == "updates" and newest.tags[0].label == "Content updates"
    # The elements RFC 4287 requires, read straight from the XML.
    for name in (
        "<id>",
        "<title>",
        "<updated>",
        '<link href="https://news.example.com/hinge/feed.xml" rel="self"',
    ):
        assert name in raw.decode()
    assert raw.decode().count("<entry>") == 2
    assert raw.decode().count("<id>") == 3 and raw.decode().count("<updated>") == 3
    when = re.findall(r"<updated>([^<]+)</updated>", raw.decode())
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", w) for w in when)


# ---- nothing about readers ------------------------------------------------------------


def test_no_file_holds_reader_data_or_personal_links(run, settings, out) -> None:
    ids = add_readers(settings)
    send(run, "hip-hinge")
    send(run, "bulletproof-back-program")
    build(run)
    traces = reader_traces(settings, ids)
    assert len(traces) > 15  # names, addresses, tokens, links and Message-IDs of 3 readers
    files = outputs(out)
    assert len(files) >= 7
    for output in files:
        text = output.data.decode("utf-8", errors="replace")
        for trace in traces:
            assert trace not in text, f"{output.path.relative_to(out)} holds {trace!r}"
        for word in ("/unsubscribe/", "/preferences/", "%%nl:", "<script", "utm_"):
            assert word not in text, f"{output.path.relative_to(out)} holds {word!r}"
    # The only images are the ones in content/ (no tracking pixel from the app).
    images = [
        o.path.relative_to(out).as_posix()
        for o in files
        if o.path.suffix not in (".html", ".xml", ".json")
    ]
    assert images == ["hip-hinge/images/hip-hinge.png"]


# ---- incremental ----------------------------------------------------------------------


def stamps(out: Path) -> dict[str, int]:
    return {
        p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()
    }


def changed(before: dict[str, int], after: dict[str, int]) -> set[str]:
    return {p for p in after if before.get(p) != after[p]} | (set(before) - set(after))


def test_incremental_rebuild_rewrites_only_what_changed(run, settings, out) -> None:
    add_readers(settings)
    write_module(settings, "third", update_module("Third issue"), "Third body.")
    for slug in ("bulletproof-back-program", "hip-hinge"):
        send(run, slug)
    build(run)
    first = stamps(out)

    # Nothing changed: nothing rendered, nothing written.
    output = build(run)
    assert "rendered 0; 0 file(s) written" in output
    assert stamps(out) == first

    # One body edited: that page and the feed, nothing else.
    offer = settings.content_dir / "2026-11-16-bulletproof-back-program.md"
    offer.write_text(offer.read_text().replace("January 5th", "January 12th"))
    output = build(run)
    assert "rendered 1; 2 file(s) written" in output
    second = stamps(out)
    assert changed(first, second) == {
        "bulletproof-back-program/index.html",
        "feed.xml",
        ".newsletter-archive.json",
    }
    assert "January 12th" in (out / "bulletproof-back-program" / "index.html").read_text()

    # A new issue sent: its page, its older neighbour's link, the lists and latest/.
    send(run, "third")
    output = build(run)
    third = stamps(out)
    assert changed(second, third) == {
        "third/index.html",
        "hip-hinge/index.html",  # now links on to "third"
        "index.html",
        "feed.xml",
        "latest/index.html",
        ".newsletter-archive.json",
    }

    # An image replaced: copied again (and the page that shows it checked).
    image = settings.content_dir / "images" / "hip-hinge.png"
    image.write_bytes(image.read_bytes() + b"\0")
    build(run)
    fourth = stamps(out)
    assert "hip-hinge/images/hip-hinge.png" in changed(third, fourth)
    assert (out / "hip-hinge" / "images" / "hip-hinge.png").read_bytes() == image.read_bytes()

    # A page deleted by hand is written again.
    (out / "third" / "index.html").unlink()
    build(run)
    assert (out / "third" / "index.html").is_file()


def test_an_issue_taken_out_is_removed_and_other_files_are_left_alone(run, settings, out) -> None:
    add_readers(settings)
    send(run, "hip-hinge")
    send(run, "bulletproof-back-program")
    build(run)
    (out / "CNAME").write_text("news.example.com\n")  # the host's own file
    (out / "hip-hinge" / "notes.txt").write_text("mine")
    path = settings.content_dir / "2026-11-23-hip-hinge.md"
    path.write_text(path.read_text().replace("topic: updates", "topic: updates\narchive: false"))

    output = build(run)

    assert "2 removed" in output  # the page and its image
    assert not (out / "hip-hinge" / "index.html").exists()
    assert not (out / "hip-hinge" / "images").exists()
    assert (out / "CNAME").read_text() == "news.example.com\n"
    assert (out / "hip-hinge" / "notes.txt").read_text() == "mine"
    assert HINGE not in (out / "index.html").read_text()
    assert (
        'url=../bulletproof-back-program/index.html"' in (out / "latest" / "index.html").read_text()
    )


def test_a_folder_that_holds_something_else_is_refused_and_left_as_it_was(
    run, settings, tmp_path
) -> None:
    mine = tmp_path / "my-site"
    mine.mkdir()
    (mine / "index.html").write_text("my own home page")
    result = run("archive", "--out", str(mine))
    assert result.exit_code == 1
    assert "is not empty and holds no archive made by `newsletter archive`" in result.output
    assert "Traceback" not in result.output
    assert [p.name for p in mine.iterdir()] == ["index.html"]
    assert (mine / "index.html").read_text() == "my own home page"


def test_archive_url_must_be_a_web_address(project, test_env) -> None:
    set_site(project / "newsletter.toml", archive_url="news.example.com")
    result = runner(project, test_env)("archive")
    assert result.exit_code == 1
    assert "site.archive_url must be an http(s) URL, got 'news.example.com'" in result.output


def test_a_module_sent_to_two_topics_is_one_issue_dated_by_its_first_send(settings) -> None:
    first = dt.datetime(2026, 11, 24, 8, tzinfo=dt.UTC)
    sent = [
        Sent("hip-hinge", first + dt.timedelta(days=2), topic="offers"),
        Sent("hip-hinge", first, topic="updates"),
    ]
    [issue] = select_issues(settings, sent).issues
    assert (issue.slug, issue.sent_at, issue.module.topic) == ("hip-hinge", first, "updates")
