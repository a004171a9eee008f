"""Compile once, personalise per recipient: escaping, headers, text part, inlining."""

from __future__ import annotations

import email
import email.policy
import html
import re

import pytest

from pipeline.content import find_module, load_module
from pipeline.errors import TemplateError
from pipeline.message import to_bytes
from pipeline.render import Recipient, compile_campaign
from pipeline.settings import Settings

HOSTILE = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "{name} {0} %%nl:email%%"]


@pytest.fixture
def seed(settings: Settings):
    return compile_campaign(load_module(find_module(settings, "hip-hinge"), settings), settings)


@pytest.fixture
def offer(settings: Settings):
    path = find_module(settings, "bulletproof-back-program")
    return compile_campaign(load_module(path, settings), settings)


def test_seed_html_has_layout_and_content(seed, settings: Settings) -> None:
    msg = seed.personalize(Recipient(1, "ann@example.com", "Ann Lee", "tok1"))
    html = msg.html
    assert "<title>Master the hip hinge — protect &amp; strengthen your lower back</title>" in html
    assert "Hinge Strength" in html  # header with the site name
    assert "Priority #1 — Learn how to create a neutral spine" in html
    assert "Hi Ann," in html
    assert settings.postal_address in html
    assert 'href="http://127.0.0.1:8000/unsubscribe/tok1"' in html
    assert 'href="http://127.0.0.1:8000/preferences/tok1"' in html
    assert "you subscribed to Content updates" in html
    assert 'alt="A lifter hinging at the hips with a dowel along a flat back"' in html


def test_preheader_is_hidden(seed) -> None:
    html = seed.personalize(Recipient(1, "a@x.example", "", "t")).html
    start = html.index("Learning to hinge from the hips puts lifting stress")
    hidden = html[html.rindex("<div", 0, start) : start]
    assert "display:none" in hidden.replace(" ", "")


def test_css_is_inlined(seed) -> None:
    html = seed.personalize(Recipient(1, "a@x.example", "", "t")).html
    assert '<h2 style="' in html and "font-size: 22px" in html.split("<h2 style=")[1][:200]
    assert "@media" in html  # responsive rules stay in <style>


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_escaped_in_html_and_kept_in_text(seed, name: str) -> None:
    msg = seed.personalize(Recipient(1, "a@x.example", name + " Smith", "t"))
    first = name.split()[0]
    assert f"Hi {html.escape(first, quote=True)}," in msg.html
    assert "<script>alert" not in msg.html and "<img src=x" not in msg.html
    assert f"Hi {first}," in msg.text


def test_braces_in_names_do_not_break_personalisation(seed) -> None:
    msg = seed.personalize(Recipient(1, "a@x.example", "{email}", "t"))
    assert "Hi {email}," in msg.text
    assert "Hi {email}," in msg.html


def test_each_recipient_gets_own_links_and_message_id(seed) -> None:
    a = seed.personalize(Recipient(1, "a@x.example", "A", "tokA"))
    b = seed.personalize(Recipient(2, "b@x.example", "B", "tokB"))
    assert "tokA" in a.html and "tokB" not in a.html and "tokB" in b.text
    assert a.message_id != b.message_id
    assert re.fullmatch(
        r"<hip-hinge\.updates\.[0-9a-f]{32}@hingestrength\.example\.com>", a.message_id
    )
    again = seed.personalize(Recipient(1, "a@x.example", "A", "tokA"))
    assert again.message_id == a.message_id  # stable: resumes and webhooks match it
    # no mailto: nothing acts on one until provider.inbound is set (tests/test_inbound.py)
    assert a.headers["List-Unsubscribe"] == "<http://127.0.0.1:8000/unsubscribe/tokA>"
    assert a.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert a.headers["List-Id"] == "Hinge Strength <updates.hingestrength.example.com>"


def test_text_part_is_readable(seed) -> None:
    text = seed.personalize(Recipient(1, "a@x.example", "", "t")).text
    assert "Hi there," in text
    assert "Priority #1 — Learn how to create a neutral spine\n---" in text
    assert "1. *Hip extensions*\n   - progress with banded resistance" in text
    assert (
        "article online\n(https://hingestrength.example.com/articles/master-the-hip-hinge)" in text
    )
    assert "Unsubscribe:\nhttp://127.0.0.1:8000/unsubscribe/t\n" in text
    assert "<" not in text.replace("<-", "")


def test_offer_has_price_and_button(offer) -> None:
    msg = offer.personalize(Recipient(1, "a@x.example", "", "t"))
    assert "$149 — or 3 × $55" in msg.html
    assert 'href="https://hingestrength.example.com/programs/bulletproof-back/join"' in msg.html
    assert "Save my spot" in msg.html
    assert (
        "Save my spot: https://hingestrength.example.com/programs/bulletproof-back/join" in msg.text
    )
    assert "you subscribed to Program offers" in msg.text


def test_eml_round_trip_keeps_special_characters(seed) -> None:
    raw = to_bytes(seed.personalize(Recipient(1, "a@x.example", "Zoë O'Brien", "t")))
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "Master the hip hinge — protect & strengthen your lower back"
    assert parsed["To"].addresses[0].display_name == "Zoë O'Brien"
    assert "Hi Zoë," in parsed.get_body(("plain",)).get_content()
    assert "Hi Zoë," in parsed.get_body(("html",)).get_content()


def test_template_error_names_template_file_and_line(settings: Settings) -> None:
    tpl = settings.templates_dir / "email" / "update.mjml.j2"
    tpl.write_text(tpl.read_text().replace("{{ body }}", "{{ bodi }}"))
    module = load_module(find_module(settings, "hip-hinge"), settings)
    from pipeline.render import template_env

    template_env.cache_clear()
    with pytest.raises(TemplateError) as err:
        compile_campaign(module, settings)
    assert err.value.path.endswith("update.mjml.j2")
    assert err.value.line == 4
    assert "bodi" in str(err.value)


@pytest.mark.parametrize("name", [*HOSTILE, 'Zoë "Z" \\ \u2028 O\'Brien', "\x7f\t"])
def test_pre_encoded_json_bodies_match_the_text(seed, name: str) -> None:
    import json

    msg = seed.personalize(Recipient(1, "a@x.example", name, "t"))
    html, text = b"".join(msg.html_json), b"".join(msg.text_json)
    decoded = json.loads(b'{"html":' + html + b',"text":' + text + b"}")
    assert decoded == {"html": msg.html, "text": msg.text}


@pytest.mark.parametrize(
    "name", [*HOSTILE, "Zoë = O'Brien  ", "x" * 200, "tab\there", "   ", "=3D=", "é" * 90]
)
def test_pre_encoded_mime_bodies_decode_to_the_text(seed, name: str) -> None:
    msg = seed.personalize(Recipient(1, "a@x.example", name, "t"), encodings=frozenset({"mime"}))
    assert msg.html_qp and msg.text_qp and not msg.html_json
    raw = to_bytes(msg)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed.get_body(("plain",)).get_content() == msg.text.replace("\n", "\r\n")
    html_part = parsed.get_body(("html",)).get_content()
    assert html_part.rstrip("\r\n") == msg.html.replace("\n", "\r\n").rstrip("\r\n")
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
