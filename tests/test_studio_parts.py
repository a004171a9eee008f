"""The studio's parts without a server: dark-mode variants, the inbox row, editor links,
bind and host checks, sample readers and rendering a module for a reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import Settings
from pipeline.studio.catalog import entries, find_entry
from pipeline.studio.editor import editor_template, editor_url
from pipeline.studio.inbox import preview_text, sender_name
from pipeline.studio.readers import Reader, sample, samples
from pipeline.studio.rendering import render
from pipeline.studio.schemes import as_scheme, declares_dark, has_dark_styles
from pipeline.studio.security import check_bind, host_name

DARK_EMAIL = """<html><head><meta name="color-scheme" content="light dark">
<style>.a { color: #111 } @media (prefers-color-scheme: dark) { .a { color: #eee } }
@media screen and (prefers-color-scheme:light) and (max-width: 480px) { .b { color: red } }</style>
</head><body><picture><source srcset="logo-dark.png" media="(prefers-color-scheme: dark)">
<img src="logo.png" alt="logo"></picture>
<p class="a">Dark mode (prefers-color-scheme: dark) in text</p></body></html>"""


# ---- dark mode -----------------------------------------------------------------------


def test_dark_variant_applies_the_emails_own_dark_rules_and_drops_light_ones() -> None:
    dark = as_scheme(DARK_EMAIL, "dark")
    assert "@media (min-width: 0px) { .a { color: #eee } }" in dark
    assert "@media screen and (not (min-width: 0px)) and (max-width: 480px)" in dark
    assert 'media="(min-width: 0px)"' in dark  # <picture><source> swaps for dark too
    assert "(prefers-color-scheme: dark) in text" in dark  # body text is left alone
    assert '<style data-studio="scheme">:root{color-scheme:dark}</style></head>' in dark


def test_light_variant_stays_light_on_a_dark_desktop() -> None:
    light = as_scheme(DARK_EMAIL, "light")
    assert "@media (not (min-width: 0px)) { .a { color: #eee } }" in light
    assert "@media screen and (min-width: 0px) and (max-width: 480px)" in light
    assert ":root{color-scheme:light}" in light


def test_an_email_without_dark_support_keeps_a_light_canvas_in_dark() -> None:
    plain = "<html><head><style>p { color: #111 }</style></head><body><p>Hi</p></body></html>"
    assert not has_dark_styles(plain) and not declares_dark(plain)
    assert as_scheme(plain, "dark") == plain
    assert has_dark_styles(DARK_EMAIL) and declares_dark(DARK_EMAIL)
    with pytest.raises(ValueError):
        as_scheme(plain, "sepia")


# ---- inbox row -------------------------------------------------------------------------


def test_preview_text_is_the_hidden_preheader_then_the_visible_text() -> None:
    html = (
        "<html><head><title>T</title><style>p{}</style></head><body>"
        '<div style="display:none">Short preheader.\u034f\u200c&nbsp;\u034f</div>'
        "<!--[if mso]><p>Outlook only</p><![endif]-->"
        "<p>View in your browser</p><h1>Title</h1><p>" + "word " * 40 + "</p></body></html>"
    )
    text = preview_text(html)
    assert text.startswith("Short preheader. View in your browser Title word word")
    assert len(text) <= 90 and "Outlook" not in text and "\u034f" not in text


def test_sender_is_the_display_name() -> None:
    assert sender_name("Coach Sam <coach@example.com>") == "Coach Sam"
    assert sender_name("coach@example.com") == "coach@example.com"


# ---- editor links ----------------------------------------------------------------------


def test_editor_from_the_setting_the_environment_or_nothing() -> None:
    assert editor_template("vscode", {}) == "vscode://file/{path}:{line}"
    assert editor_template("", {"EDITOR": "/usr/local/bin/subl -w"}).startswith("subl://")
    assert editor_template("", {"VISUAL": "code --wait", "EDITOR": "vim"}).startswith("vscode")
    assert editor_template("", {"EDITOR": "vim"}) is None  # -> the studio's own file view
    assert editor_template("vscode", {"NEWSLETTER_EDITOR": "cursor"}).startswith("cursor://")
    custom = "myed://open?f={path}&l={line}"
    assert editor_template(custom, {}) == custom


@pytest.mark.parametrize("bad", ["notepad", "javascript:alert(1)//{path}", "https://x/{path}"])
def test_an_unknown_or_unsafe_editor_is_a_clear_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="editor"):
        editor_template(bad, {})


def test_editor_url_points_at_the_absolute_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "my content" / "x.md"
    url = editor_url("vscode://file/{path}:{line}", path, 7)
    assert url == f"vscode://file/{str(path).replace(' ', '%20')}:7"


# ---- binding and hosts -----------------------------------------------------------------


def test_only_loopback_without_an_explicit_host() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_bind(host, explicit=False)
    with pytest.raises(ConfigError, match="--host"):
        check_bind("0.0.0.0", explicit=False)
    with pytest.raises(ConfigError):
        check_bind("192.168.1.20", explicit=False)
    check_bind("0.0.0.0", explicit=True)


def test_host_header_names() -> None:
    assert host_name("127.0.0.1:8025") == "127.0.0.1"
    assert host_name("LocalHost:8025") == "localhost"
    assert host_name("[::1]:8025") == "::1"
    assert host_name("evil.example") == "evil.example"


# ---- readers and rendering -------------------------------------------------------------


def test_samples_cover_what_breaks_templates(settings: Settings) -> None:
    found = {r.key: r for r in samples(settings)}
    assert found["no-name"].name == ""
    assert len(found["long-name"].name) > 50
    assert all(ch in found["tricky"].name for ch in "<&💪")
    assert {r.topic for r in found.values() if r.topic} == set(settings.topics)
    assert sample(settings, "nonsense").key == "sample"


def test_a_real_subscriber_would_receive_only_when_active_and_subscribed() -> None:
    ann = Reader(
        "subscriber",
        "Ann",
        "ann@example.com",
        "Ann",
        subscriber_id=4,
        status="active",
        topics=("updates",),
    )
    assert ann.would_receive("updates") == (True, "")
    assert "not subscribed" in ann.would_receive("offers")[1]
    assert (
        "pending"
        in Reader(
            "subscriber", "B", "b@x.org", subscriber_id=5, status="pending", topics=("updates",)
        ).would_receive("updates")[1]
    )


def test_render_escapes_a_tricky_name_in_html_and_keeps_it_in_text(settings: Settings) -> None:
    entry = find_entry(settings, "hip-hinge")
    rendered = render(settings, entry, sample(settings, "tricky"))
    assert rendered.failure is None, rendered.failure
    assert "Hi &lt;Ava&gt;," in rendered.html and "<Ava>" not in rendered.html
    assert "Hi <Ava>," in rendered.text
    assert b"To: " in rendered.eml and b"Content-Type: multipart/alternative" in rendered.eml
    assert 'src="/media/images/hip-hinge.png"' in rendered.html  # offline: served locally
    assert b"/media/images/hip-hinge.png" in rendered.eml.replace(b"=\r\n", b"")
    assert rendered.sender == "Coach Sam at Hinge Strength"
    assert rendered.preview.startswith("Learning to hinge from the hips")
    assert 10_000 < rendered.html_size < 102 * 1024


def test_render_as_a_reader_of_another_topic_sends_to_that_topic(settings: Settings) -> None:
    entry = find_entry(settings, "hip-hinge")
    rendered = render(settings, entry, sample(settings, "topic-offers"))
    assert rendered.topic == "offers"
    assert "subscribed to Program offers" in rendered.text


def test_a_broken_module_renders_as_a_failure_with_file_line_and_context(
    settings: Settings,
) -> None:
    path = next(settings.content_dir.glob("*hip-hinge.md"))
    path.write_text(path.read_text().replace("date: 2026-11-23", "date: 2026-13-45"))
    entry = find_entry(settings, "hip-hinge")
    rendered = render(settings, entry, sample(settings, "sample"))
    failure = rendered.failure
    assert failure is not None and failure.line == 3
    assert failure.where.endswith("2026-11-23-hip-hinge.md:3")
    assert "date: expected YYYY-MM-DD" in failure.message
    assert (3, "date: 2026-13-45") in failure.frame
    assert [p.line for p in rendered.problems] == [3] and rendered.errors == 1


def test_catalog_lists_every_module_once(settings: Settings) -> None:
    found = {e.key: e.group for e in entries(settings)}
    assert found == {
        "bulletproof-back-program": "Content modules",
        "hip-hinge": "Content modules",
        "welcome/welcome": "Sequence: welcome",  # content/sequences/welcome/01-welcome.md
        "welcome/three-mistakes": "Sequence: welcome",
    }
