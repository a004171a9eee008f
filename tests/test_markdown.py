"""Markdown -> MJML and plain text: every construct, hostile input, special characters."""

from __future__ import annotations

from pipeline.markdown import render_body


def test_headings_paragraphs_emphasis() -> None:
    body = render_body(
        "# One\n\n## Two\n\n### Three\n\nSome *em*, **strong**, ~~gone~~ and `code`.\n"
    )
    # The email's title is its only <h1>: a '#' heading in the body becomes <h2>.
    assert "<h1>" not in body.mjml
    assert (
        "<h2>One</h2>" in body.mjml
        and "<h2>Two</h2>" in body.mjml
        and "<h3>Three</h3>" in body.mjml
    )
    assert body.headings == [(1, 1), (2, 3), (3, 5)]
    assert "<em>em</em>" in body.mjml and "<strong>strong</strong>" in body.mjml
    assert "<del>gone</del>" in body.mjml and "<code>code</code>" in body.mjml
    assert body.text.startswith("One\n===\n\nTwo\n---\n\n### Three\n\n")
    assert "Some _em_, *strong*, gone and code." in body.text


def test_links_keep_http_and_mailto_and_show_url_in_text() -> None:
    body = render_body("[site](https://x.example/a?b=1&c=2) and [me](mailto:me@x.example)\n")
    assert '<a href="https://x.example/a?b=1&amp;c=2">site</a>' in body.mjml
    assert '<a href="mailto:me@x.example">me</a>' in body.mjml
    assert "site (https://x.example/a?b=1&c=2) and me (me@x.example)" in body.text


def test_unsafe_links_lose_their_target() -> None:
    body = render_body("[click](javascript:alert(1)) [file](file:///etc/passwd)\n")
    assert "javascript" not in body.mjml and "file:" not in body.mjml
    assert "click file" in body.text
    assert [r.target for r in body.refs] == ["javascript:alert(1)", "file:///etc/passwd"]


def test_raw_html_and_scripts_are_escaped_not_passed() -> None:
    body = render_body('<script>alert(1)</script>\n\nHi <img src=x onerror="alert(1)"> there\n')
    assert "<script" not in body.mjml and "<img src=x" not in body.mjml
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body.mjml
    assert "&lt;img src=x onerror=" in body.mjml


def test_nested_bullet_and_numbered_lists() -> None:
    src = "- a\n  - a1\n  - a2\n- b\n\n3. three\n4. four\n   1. four-one\n"
    body = render_body(src)
    assert "<ul>\n<li>a<ul>\n<li>a1</li>\n<li>a2</li>\n</ul>\n</li>\n<li>b</li>\n</ul>" in body.mjml
    assert '<ol start="3">' in body.mjml
    assert "- a\n  - a1\n  - a2\n- b\n\n3. three\n4. four\n   1. four-one" in body.text


def test_lone_image_becomes_responsive_mj_image_with_alt() -> None:
    body = render_body(
        "Intro.\n\n![A dowel hinge](images/h.png)\n\nAfter.\n",
        asset_url=lambda s: "https://cdn.example/" + s,
    )
    assert (
        '<mj-image src="https://cdn.example/images/h.png" alt="A dowel hinge" '
        'css-class="nl-image" fluid-on-mobile="true" />' in body.mjml
    )
    assert body.mjml.count("<mj-text") == 2
    assert "[Image: A dowel hinge]" in body.text


def test_inline_image_is_scaled_img() -> None:
    body = render_body('Text ![icon "x"](https://x.example/i.png) text\n')
    assert (
        '<img src="https://x.example/i.png" alt="icon &quot;x&quot;" class="inline-image">'
        in body.mjml
    )


def test_blockquote_and_rule() -> None:
    body = render_body("> Quoted **words**\n> more\n\n---\n\nAfter\n")
    assert "<blockquote><p>Quoted <strong>words</strong>\nmore</p>\n</blockquote>" in body.mjml
    assert '<mj-divider css-class="rule" />' in body.mjml
    assert "> Quoted *words* more" in body.text
    assert "-" * 24 in body.text


def test_special_characters_survive() -> None:
    body = render_body('Fish & chips < 5 "quoted" — em dash 💪 café\n')
    assert "Fish &amp; chips &lt; 5 &quot;quoted&quot; — em dash 💪 café" in body.mjml or (
        'Fish &amp; chips &lt; 5 "quoted" — em dash 💪 café' in body.mjml
    )
    assert 'Fish & chips < 5 "quoted" — em dash 💪 café' in body.text


def test_text_wraps_long_paragraphs_but_not_urls() -> None:
    url = "https://x.example/" + "a" * 90
    body = render_body(("word " * 30) + f"[l]({url})\n")
    lines = body.text.splitlines()
    assert all(len(line) <= 72 for line in lines if url not in line)
    assert any(url in line for line in lines)


def test_refs_carry_file_lines() -> None:
    body = render_body("Line one\n\n[a](https://a.example)\n\n![x](b.png)\n", first_line=10)
    assert [(r.kind, r.line) for r in body.refs] == [("link", 12), ("image", 14)]
    assert body.refs[1].alt == "x"
