"""What subscribers' clients see: dark mode, the inbox preview, images off, headings,
links, lang/dir, the web version link, the plain-text part, Date and Message-ID.

Each rule is checked on the rendered seed modules and on modules written here to push
at it (remote and local images of several sizes, a body '#' heading, long lines).
"""

from __future__ import annotations

import email
import email.policy
import re

import pytest
from PIL import Image

from pipeline.content import find_module, load_module
from pipeline.message import to_bytes
from pipeline.palette import load_palette
from pipeline.render import Compiled, Recipient, compile_campaign, web_version_url
from pipeline.settings import Settings
from pipeline.textpart import WIDTH
from tests.email_html import parse

SEEDS = ["hip-hinge", "bulletproof-back-program"]
READER = Recipient(7, "ann@example.com", "Ann Lee", "0.Tk0NU_cfUsORZBglIhp5MQ")
URL_RE = re.compile(r"https?://[^\s)>\"]+")


def compiled(settings: Settings, slug: str) -> Compiled:
    return compile_campaign(load_module(find_module(settings, slug), settings), settings)


def write(settings: Settings, name: str, front: str, body: str) -> Compiled:
    path = settings.content_dir / f"{name}.md"
    path.write_text(
        f"---\ntitle: A test of {name}\ndate: 2026-02-01\nkind: update\n{front}---\n{body}"
    )
    return compiled(settings, name)


def picture(settings: Settings, name: str, size: tuple[int, int]) -> str:
    Image.new("RGB", size, (200, 80, 20)).save(settings.content_dir / "images" / name)
    return f"images/{name}"


@pytest.fixture(params=SEEDS)
def seed(request: pytest.FixtureRequest, settings: Settings) -> Compiled:
    return compiled(settings, request.param)


# ---- dark mode ---------------------------------------------------------------------------


def test_dark_mode_is_declared_and_styled(seed: Compiled, settings: Settings) -> None:
    html = seed.personalize(READER).html
    head = html[: html.index("</head>")]
    assert '<meta name="color-scheme" content="light dark">' in head
    assert '<meta name="supported-color-schemes" content="light dark">' in head
    dark = load_palette(settings.templates_dir).dark
    media = head[head.index("@media (prefers-color-scheme: dark)") :]
    for key in ("page", "card", "text", "heading", "muted", "link"):
        assert dark[key] in media, key
    # Outlook.com and the Outlook apps mark what they recolour; our rules answer them.
    assert "[data-ogsb] .nl-card" in head and "[data-ogsc] .nl-text div" in head
    # The dark colours live only in that block: nothing dark is inlined into the body.
    body = html[html.index("<body") :]
    assert dark["card"] not in body and dark["page"] not in body


def test_every_coloured_part_has_a_dark_rule(seed: Compiled) -> None:
    """Each element whose colour the light template sets carries a class the dark
    styles recolour, so no light-only block is left in dark mode."""
    html = seed.personalize(READER).html
    doc = parse(html)
    classes = " ".join(e.attrs.get("class", "") for e in doc.elements)
    for cls in ("nl-page", "nl-card", "nl-title", "nl-text", "nl-muted", "nl-masthead", "body"):
        assert cls in classes, cls
    head = html[: html.index("</head>")]
    for cls in ("nl-page", "nl-card", "nl-title", "nl-text", "nl-muted", "nl-masthead"):
        assert f".{cls}" in head[head.index("prefers-color-scheme") :], cls


# ---- inbox preview -----------------------------------------------------------------------


def test_preheader_is_padded_so_the_inbox_shows_only_it(seed: Compiled) -> None:
    doc = parse(seed.personalize(READER).html)
    preheader = seed.module.preheader
    assert doc.preheader.startswith(preheader)
    padding = doc.preheader[len(preheader) :]
    assert len(doc.preheader) >= 150  # fills the preview of Gmail, Apple Mail, Outlook
    assert set(padding) <= {"\u034f", "\u200c", "\xa0"}, "only invisible characters"


def test_a_long_preheader_gets_no_padding(settings: Settings) -> None:
    long = "Word " * 40
    c = write(settings, "long-pre", f"preheader: {long.strip()}\n", "Body.\n")
    doc = parse(c.personalize(READER).html)
    assert doc.preheader.strip() == long.strip()


# ---- images ------------------------------------------------------------------------------


def test_seed_hero_has_its_real_size_and_styled_alt(settings: Settings) -> None:
    doc = parse(compiled(settings, "hip-hinge").personalize(READER).html)
    (hero,) = doc.all("img")
    # content/images/hip-hinge.png is 1200 x 600: shown 552 px wide in the column
    assert (hero.attrs["width"], hero.attrs["height"]) == ("552", "276")
    assert hero.attrs["alt"] == "A lifter hinging at the hips with a dowel along a flat back"


def test_local_images_are_measured_from_the_file(settings: Settings) -> None:
    wide = picture(settings, "wide.png", (800, 400))
    small = picture(settings, "small.png", (100, 50))
    tall = picture(settings, "tall.jpg", (300, 900))
    body = (
        f"Intro.\n\n![A wide one]({wide})\n\n"
        f"Text with ![a small one]({small}) inline.\n\n![A tall one]({tall})\n"
    )
    doc = parse(write(settings, "local-images", "", body).personalize(READER).html)
    sizes = {img.attrs["alt"]: (img.attrs["width"], img.attrs["height"]) for img in doc.all("img")}
    assert sizes == {
        "A wide one": ("552", "276"),  # scaled to the column
        "a small one": ("100", "50"),  # never scaled up
        "A tall one": ("300", "900"),
    }


def test_remote_hero_takes_its_size_from_the_front_matter(settings: Settings) -> None:
    front = (
        "image: https://cdn.example.com/hero.jpg\nimage_alt: A barbell on the floor\n"
        "image_width: 1200\nimage_height: 800\n"
    )
    doc = parse(write(settings, "remote-hero", front, "Body.\n").personalize(READER).html)
    (hero,) = doc.all("img")
    assert (hero.attrs["width"], hero.attrs["height"]) == ("552", "368")


def test_an_unsized_remote_image_keeps_no_made_up_size(settings: Settings) -> None:
    body = "![A chart](https://cdn.example.com/chart.png)\n"
    doc = parse(write(settings, "remote-body", "", body).personalize(READER).html)
    (img,) = doc.all("img")
    assert img.attrs["height"] == "auto"  # unknown: `newsletter check` warns about it


def test_image_size_needs_both_fields(settings: Settings) -> None:
    from pipeline.errors import ContentError

    path = settings.content_dir / "half.md"
    path.write_text(
        "---\ntitle: T\ndate: 2026-01-01\nkind: update\nimage: https://x.example/a.png\n"
        "image_alt: A\nimage_width: 600\n---\nBody.\n"
    )
    with pytest.raises(ContentError) as err:
        load_module(path, settings)
    assert "image_height: required when image_width is set" in str(err.value)
    assert err.value.line == 7


@pytest.mark.parametrize("value", ["0", "-3", "wide", "1.5", "true"])
def test_image_width_must_be_whole_pixels(settings: Settings, value: str) -> None:
    from pipeline.errors import ContentError

    path = settings.content_dir / "bad-size.md"
    path.write_text(
        "---\ntitle: T\ndate: 2026-01-01\nkind: update\nimage: https://x.example/a.png\n"
        f"image_alt: A\nimage_width: {value}\nimage_height: 400\n---\nBody.\n"
    )
    with pytest.raises(ContentError) as err:
        load_module(path, settings)
    assert "image_width: expected a whole number of pixels" in str(err.value)


def test_every_image_has_styled_alt_text(settings: Settings) -> None:
    inline = picture(settings, "i.png", (40, 40))
    body = f"![Block image]({inline})\n\nAn ![inline image]({inline}) here.\n"
    front = (
        "image: https://cdn.example.com/h.jpg\nimage_alt: Hero\n"
        "image_width: 600\nimage_height: 300\n"
    )
    doc = parse(write(settings, "alts", front, body).personalize(READER).html)
    images = doc.all("img")
    assert len(images) == 3
    for img in images:
        style = img.attrs["style"].replace(" ", "")
        assert img.attrs["alt"]
        for prop in (
            "font-family:",
            "font-size:16px",
            "color:",
            "background-color:",
            "line-height:",
        ):
            assert prop in style, (img.attrs["alt"], prop)
        assert "height:auto" in style  # scales with the width on phones


# ---- structure: headings, lang/dir, links ------------------------------------------------


def test_title_is_the_one_h1_and_headings_stay_in_order(seed: Compiled) -> None:
    doc = parse(seed.personalize(READER).html)
    headings = doc.headings()
    assert [h.tag for h in headings].count("h1") == 1
    assert headings[0].tag == "h1" and headings[0].text == seed.module.title
    levels = [int(h.tag[1]) for h in headings]
    assert all(b <= a + 1 for a, b in zip(levels, levels[1:], strict=False)), levels


def test_body_heading_one_is_shown_as_level_two(settings: Settings) -> None:
    body = "# Part one\n\nText.\n\n## Detail\n\nMore.\n"
    doc = parse(write(settings, "h-one", "", body).personalize(READER).html)
    assert [(h.tag, h.text) for h in doc.headings()] == [
        ("h1", "A test of h-one"),
        ("h2", "Part one"),
        ("h2", "Detail"),
    ]


def test_title_hyphenated_words_do_not_break(settings: Settings) -> None:
    html = compiled(settings, "bulletproof-back-program").personalize(READER).html
    assert '<span style="white-space:nowrap">8-Week</span>' in html


def test_lang_and_dir_are_kept(seed: Compiled) -> None:
    doc = parse(seed.personalize(READER).html)
    root = doc.all("html")[0]
    assert (root.attrs["lang"], root.attrs["dir"]) == ("en", "ltr")
    article = next(e for e in doc.all("div") if e.attrs.get("role") == "article")
    assert (article.attrs["lang"], article.attrs["dir"]) == ("en", "ltr")


def test_view_in_browser_opens_the_issue_page_in_the_archive(
    seed: Compiled, settings: Settings
) -> None:
    msg = seed.personalize(READER)
    links = {a.text: a.attrs["href"] for a in parse(msg.html).all("a")}
    web = web_version_url(settings, seed.module)
    assert web == f"{settings.base_url}/archive/{seed.module.slug}/"  # served by the app
    assert links["View in your browser"] == web
    assert f"View in your browser:\n{web}" in msg.text or f"View in your browser: {web}" in msg.text
    # the article (or the offer's page) is a link of its own
    assert seed.module.url in links.values()
    assert seed.module.url != web


def test_a_module_without_url_still_has_its_web_version(settings: Settings) -> None:
    c = write(settings, "no-url", "", "Just text.\n")
    links = {a.text: a.attrs["href"] for a in parse(c.personalize(READER).html).all("a")}
    assert links["View in your browser"] == f"{settings.base_url}/archive/no-url/"
    assert "Read the full article" not in links


def test_web_version_follows_the_archive_setting_and_front_matter(project, test_env) -> None:
    from helpers import set_site

    from pipeline.settings import load_settings

    set_site(project / "newsletter.toml", archive_url="https://news.example.com/letters/")
    settings = load_settings(project / "newsletter.toml", env=test_env)

    def view(c: Compiled) -> str:
        return {a.text: a.attrs["href"] for a in parse(c.personalize(READER).html).all("a")}[
            "View in your browser"
        ]

    assert view(write(settings, "public", "", "x\n")) == "https://news.example.com/letters/public/"
    # Kept out of the archive: the web app's own page of it.
    kept = write(settings, "kept", "archive: false\n", "x\n")
    assert view(kept) == f"{settings.base_url}/view/kept"
    # A sequence step is in the archive only when it says so, under its sequence.
    folder = settings.content_dir / "sequences" / "intro"
    folder.mkdir(parents=True)
    for name, extra in (("hello", ""), ("best-of", "archive: true\n")):
        (folder / f"{name}.md").write_text(
            f"---\ntitle: {name}\ndate: 2026-02-01\nkind: update\ndelay: 1d\n{extra}---\nx\n"
        )
    step = compile_campaign(load_module(folder / "best-of.md", settings), settings)
    assert view(step) == "https://news.example.com/letters/intro/best-of/"
    hello = compile_campaign(load_module(folder / "hello.md", settings), settings)
    assert view(hello) == f"{settings.base_url}/view/intro/hello"


def test_link_texts_make_sense_on_their_own(seed: Compiled) -> None:
    for a in parse(seed.personalize(READER).html).all("a"):
        text = a.text.lower()
        assert text, a.attrs["href"]
        assert not URL_RE.fullmatch(a.text), a.text
        assert text not in {"here", "click here", "read more", "more", "link"}, a.text


# ---- plain-text part ---------------------------------------------------------------------


def text_lines_ok(text: str) -> list[str]:
    """Lines over 78 columns other than one URL (in brackets or not) alone on its line."""
    return [
        line
        for line in text.split("\n")
        if len(line) > WIDTH and not URL_RE.fullmatch(line.strip().strip("()<>.,"))
    ]


def test_text_part_lines_fit_78_columns_and_urls_stay_whole(seed: Compiled) -> None:
    msg = seed.personalize(READER)
    assert text_lines_ok(msg.text) == []
    hrefs = {
        a.attrs["href"] for a in parse(msg.html).all("a") if a.attrs["href"].startswith("http")
    }
    hrefs.discard(seed.settings.site_url)  # the masthead link has no text-part twin
    assert hrefs
    for href in hrefs:
        assert href in msg.text, href


def test_long_lines_are_wrapped_but_long_urls_are_not_broken(settings: Settings) -> None:
    long_url = "https://example.com/" + "a" * 90
    body = (
        "> " + "quoted words " * 12 + "\n\n"
        "- " + "item words " * 12 + "\n\n"
        f"See [the long page]({long_url}) for the rest.\n"
    )
    front = "url: https://hingestrength.example.com/articles/" + "b" * 60 + "\n"
    text = write(settings, "long-lines", front, body).personalize(READER).text
    assert text_lines_ok(text) == []
    assert long_url in text  # unbroken, on a line of its own
    quoted = [line for line in text.split("\n") if line.startswith("> quoted")]
    assert quoted and all(line.startswith("> ") for line in quoted)


def test_signature_separator_is_dash_dash_space(seed: Compiled) -> None:
    msg = seed.personalize(READER)
    assert msg.text.count("\n-- \n") == 1
    before, after = msg.text.split("\n-- \n")
    assert "Unsubscribe" in after and "Unsubscribe" not in before
    wire = email.message_from_bytes(to_bytes(msg), policy=email.policy.default)
    plain = wire.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "\n-- \n" in plain  # the trailing space survives quoted-printable


def test_personal_urls_are_on_lines_of_their_own(seed: Compiled) -> None:
    long_token = "0." + "x" * 60
    text = seed.personalize(Recipient(1, "a@example.com", "A", long_token)).text
    assert f"\n{seed.settings.base_url}/unsubscribe/{long_token}\n" in text


# ---- headers -----------------------------------------------------------------------------


def test_date_has_a_numeric_zone(seed: Compiled) -> None:
    wire = email.message_from_bytes(to_bytes(seed.personalize(READER)), policy=email.policy.default)
    date = wire["Date"]
    assert re.fullmatch(r"\w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}", date), date
    assert "GMT" not in date


def test_date_uses_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from pipeline.message import date_header

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert date_header(1_790_000_000.0) == "Mon, 21 Sep 2026 10:13:20 -0400"
        assert date_header(1_800_000_000.0) == "Fri, 15 Jan 2027 03:00:00 -0500"
    finally:
        monkeypatch.undo()  # TZ as it was, then the process's zone from it
        time.tzset()


def test_the_confirmation_email_follows_the_same_rules(settings: Settings) -> None:
    from pipeline.transactional import confirmation_message

    long_url = "https://hingestrength.example.com/confirm/" + "t" * 80
    msg = confirmation_message(
        settings,
        email="ann@example.com",
        name="Ann",
        confirm_url=long_url,
        topics=["updates"],
        unsubscribe_url="https://hingestrength.example.com/unsubscribe/" + "u" * 40,
    )
    doc = parse(msg.html)
    assert [h.text for h in doc.headings() if h.tag == "h1"] == ["Please confirm your subscription"]
    assert '<meta name="color-scheme" content="light dark">' in msg.html
    assert "@media (prefers-color-scheme: dark)" in msg.html
    assert doc.preheader.startswith("One click to confirm") and len(doc.preheader) >= 150
    assert text_lines_ok(msg.text) == [] and long_url in msg.text
    assert "\n-- \n" in msg.text


def test_image_size_without_an_image_is_an_error(settings: Settings) -> None:
    from pipeline.errors import ContentError

    path = settings.content_dir / "no-image.md"
    path.write_text(
        "---\ntitle: T\ndate: 2026-01-01\nkind: update\nimage_width: 600\nimage_height: 300\n"
        "---\nBody.\n"
    )
    with pytest.raises(ContentError) as err:
        load_module(path, settings)
    assert err.value.line == 5 and "only used with image" in str(err.value)
