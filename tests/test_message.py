"""The MIME form of a message: CRLF, headers, and internationalised addresses."""

from __future__ import annotations

import email
import email.policy

import pytest
from messages import sample_message

from pipeline.message import Message, to_address, to_bytes


def msg(to_email: str, to_name: str = "") -> Message:
    return sample_message(
        to_email=to_email,
        to_name=to_name,
        from_addr="Coach <coach@example.com>",
        subject="Hi — there",
        message_id="<1@example.com>",
        headers={"List-Unsubscribe": "<https://example.com/unsubscribe/1.abc>"},
    )


def test_idn_domain_is_punycoded_in_headers() -> None:
    raw = to_bytes(msg("x@bücher.de", "Zoë"))
    assert b"To: =?utf-8?q?Zo=C3=AB?= <x@xn--bcher-kva.de>\r\n" in raw
    assert raw.isascii()


def test_non_ascii_local_part_makes_an_smtputf8_message() -> None:
    m = msg("chloé@exämple.de", "Chloé Durand")
    assert m.needs_smtputf8
    assert m.to == "Chloé Durand <chloé@xn--exmple-cua.de>"
    raw = to_bytes(m)
    assert "To: Chloé Durand <chloé@xn--exmple-cua.de>\r\n".encode() in raw
    parsed = email.message_from_string(raw.decode("utf-8"), policy=email.policy.default)
    assert parsed["To"].addresses[0].username == "chloé"


def test_display_names_are_quoted() -> None:
    assert (
        msg("b@example.org", 'Ben "B" O\'Neil, Jr').to
        == '"Ben \\"B\\" O\'Neil, Jr" <b@example.org>'
    )


@pytest.mark.parametrize(
    "name", ["", "Ann", "Ann Lee", "O'Neil", "a-b_c", "Dr. Who", "x@y", "Zoë", "a,b", "(c)", "  "]
)
def test_fast_to_formatting_agrees_with_headerregistry(name: str) -> None:
    m = msg("reader@example.com", name)
    assert m.to == str(to_address(m))


@pytest.mark.parametrize(
    ("to_email", "name"),
    [("r@example.com", "Ann"), ("z@bücher.de", 'Zoë "Z"'), ("chloé@exämple.de", "Chloé")],
)
def test_direct_writer_matches_the_email_package(to_email: str, name: str) -> None:
    from pipeline.message import WIRE, to_mime

    m = msg(to_email, name)
    m.text = "Héllo = wörld " * 20 + "\nline two\n"
    m.html = "<p>" + "é" * 300 + "</p>\n"
    fast, slow = to_bytes(m), to_mime(m).as_bytes(policy=WIRE.clone(utf8=m.needs_smtputf8))

    def parse(raw: bytes) -> email.message.EmailMessage:
        return email.message_from_string(raw.decode("utf-8"), policy=email.policy.default)

    a, b = parse(fast), parse(slow)
    for header in ("From", "To", "Subject", "Message-ID", "List-Unsubscribe"):
        assert str(a[header]) == str(b[header]), header
    for kind in ("plain", "html"):
        assert a.get_body((kind,)).get_content() == b.get_body((kind,)).get_content()
    body = fast.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76  # quoted-printable lines


def test_header_values_cannot_inject_headers() -> None:
    m = msg("r@example.com", "Ann")
    m.subject = "Hi\r\nBcc: victim@example.com"
    raw = to_bytes(m)
    assert b"\r\nBcc:" not in raw
