"""Front matter: every field rule, each error naming the file and line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from pipeline.content import load_module, newest, slug_for
from pipeline.errors import ContentError
from pipeline.settings import Settings

GOOD = """\
---
title: A title
date: 2026-11-23
kind: update
---
First sentence here. Second one.
"""


def write(settings: Settings, text: str, name: str = "2026-11-23-test-module.md") -> Path:
    path = settings.content_dir / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(settings: Settings, text: str) -> ContentError:
    path = write(settings, text)
    with pytest.raises(ContentError) as err:
        load_module(path, settings)
    return err.value


def test_minimal_module_gets_defaults(settings: Settings) -> None:
    module = load_module(write(settings, GOOD), settings)
    assert module.slug == "test-module"
    assert module.date == dt.date(2026, 11, 23)
    assert module.topic == "updates"
    assert module.subject == "A title"
    assert module.preheader == "First sentence here."
    assert module.body_line == 6


def test_offer_defaults_to_offers_topic(settings: Settings) -> None:
    text = GOOD.replace("kind: update", "kind: offer\ncta_text: Buy\ncta_url: https://x.example/b")
    assert load_module(write(settings, text), settings).topic == "offers"


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        (("date: 2026-11-23", "date: 23/11/2026"), 3, "date: expected YYYY-MM-DD"),
        (("date: 2026-11-23", "date: 2026-02-30"), 3, "date: expected YYYY-MM-DD"),
        (("kind: update", "kind: newsletter"), 4, "kind: expected one of update, offer"),
        (("title: A title", "title: ''"), 2, "title: must not be empty"),
        (("kind: update", "kind: update\ntopic: gossip"), 5, "topic: unknown topic 'gossip'"),
        (("kind: update", "kind: update\nurl: ftp://x"), 5, "url: expected an http(s) URL"),
        (("kind: update", "kind: update\nsubjct: typo"), 5, "unknown field 'subjct'"),
        (("kind: update", "kind: update\nimage: images/x.png"), 5, "image_alt: required"),
        (("kind: update", "kind: update\nimage: /etc/passwd\nimage_alt: x"), 5, "image: expected"),
        (("kind: update", "kind: offer"), 4, "cta_text: an offer needs a call to action"),
        (("kind: update", "kind: update\ncta_text: Go"), 5, "cta_url: required when cta_text"),
        (("kind: update", "kind: update\ntitle: again"), 5, "title: given twice"),
        (("kind: update", "kind: update\ntags: [a, b"), 6, "invalid YAML"),
        (("title: A title\n", ""), 1, "title: required field is missing"),
    ],
)
def test_front_matter_errors_name_file_and_line(
    settings: Settings, change: tuple[str, str], line: int, message: str
) -> None:
    err = error_of(settings, GOOD.replace(*change))
    assert err.path.endswith("2026-11-23-test-module.md")
    assert err.line == line
    assert message in str(err)
    assert str(err).startswith(f"{err.path}:{line}: ")


def test_file_without_front_matter(settings: Settings) -> None:
    err = error_of(settings, "# Just markdown\n")
    assert err.line == 1 and "must start with a '---' line" in str(err)


def test_unclosed_front_matter(settings: Settings) -> None:
    assert "no closing '---'" in str(error_of(settings, "---\ntitle: x\n"))


def test_empty_body(settings: Settings) -> None:
    err = error_of(settings, GOOD.split("First")[0])
    assert err.line == 6 and "body is empty" in str(err)


def test_not_utf8(settings: Settings) -> None:
    path = settings.content_dir / "latin1.md"
    path.write_bytes(GOOD.replace("A title", "Caf\xe9").encode("latin-1"))
    with pytest.raises(ContentError, match="not UTF-8"):
        load_module(path, settings)


def test_bad_slug(settings: Settings) -> None:
    path = write(settings, GOOD, name="My Post.md")
    with pytest.raises(ContentError, match="slug 'My Post'"):
        load_module(path, settings)


def test_slug_drops_date_prefix() -> None:
    assert slug_for(Path("content/2026-11-23-hip-hinge.md")) == "hip-hinge"
    assert slug_for(Path("content/hip-hinge.md")) == "hip-hinge"


def test_newest_is_by_front_matter_date(settings: Settings) -> None:
    write(settings, GOOD.replace("2026-11-23", "2030-01-01"), name="zzz-old-name.md")
    assert newest(settings).slug == "zzz-old-name"


def test_seed_modules_load(settings: Settings) -> None:
    from pipeline.content import load_all

    kinds = {m.slug: m.kind for m in load_all(settings)}
    assert kinds == {"hip-hinge": "update", "bulletproof-back-program": "offer"}
