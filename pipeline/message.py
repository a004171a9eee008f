"""A fully personalised email, ready for any provider, and its MIME form.

Providers with a JSON API read the fields directly (cheap); SMTP, the outbox and
``preview`` use :func:`to_bytes`, the RFC 5322 message with CRLF line endings.
"""

from __future__ import annotations

import binascii
import functools
import re
import time
import uuid
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate

import idna
import orjson

# Structured headers such as List-Unsubscribe hold URLs longer than 78 characters; the
# default policy would RFC 2047-encode them while folding, which breaks one-click
# unsubscribe. Fold only at the hard 998 limit; bodies are quoted-printable (7-bit safe).
WIRE = SMTP.clone(max_line_length=998)
WIRE_UTF8 = WIRE.clone(utf8=True)
# A display name that needs no quoting (RFC 5322 atext and spaces).
SIMPLE_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*\Z")


@dataclass(slots=True)
class Message:
    """One email to one recipient.

    ``headers`` holds the extra headers every message carries (List-Unsubscribe,
    List-Unsubscribe-Post, List-Id, Feedback-ID ...). ``message_id`` is our own
    RFC 5322 Message-ID (with angle brackets); it is the key that ties a provider's
    result and later webhooks back to the ledger. ``metadata`` travels with the
    message where the provider allows (Postmark Metadata, SendGrid custom_args,
    Mailgun v: variables, Resend tags).
    """

    to_email: str
    to_name: str
    from_addr: str
    subject: str
    html: str
    text: str
    message_id: str
    reply_to: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    tag: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    # ``html`` and ``text`` already encoded as JSON string literals, in pieces, when the
    # renderer made them (see pipeline.render.Template.fill_json); JSON providers embed
    # them (see json_pieces).
    html_json: list[bytes] = field(default_factory=list)
    text_json: list[bytes] = field(default_factory=list)
    # ... and as quoted-printable bodies for the MIME writer (see Template.fill_qp).
    html_qp: bytes = b""
    text_qp: bytes = b""

    @property
    def to(self) -> str:
        """The formatted To address: display name quoted as needed, domain in IDNA (ASCII).

        A non-ASCII local part stays UTF-8 (RFC 6531); JSON APIs take it as is, and
        :func:`to_bytes` then writes an SMTPUTF8 message.
        """
        if SIMPLE_NAME.match(self.to_name) and self.to_email.isascii():
            return f"{self.to_name} <{self.to_email}>" if self.to_name else self.to_email
        return str(to_address(self))

    def drop_bodies(self) -> None:
        """Let go of the bodies once a request holds them (a batch in flight then keeps
        one copy, not two); what is left identifies the message for its result."""
        self.html = self.text = ""
        self.html_json, self.text_json = [], []
        self.html_qp = self.text_qp = b""

    @property
    def needs_smtputf8(self) -> bool:
        return not self.to_email.rpartition("@")[0].isascii()


def to_address(msg: Message) -> Address:
    local, _, domain = msg.to_email.rpartition("@")
    return Address(display_name=msg.to_name, username=local, domain=ascii_domain(domain))


def ascii_domain(domain: str) -> str:
    """``exämple.de`` -> ``xn--exmple-cua.de`` (IDNA 2008 with UTS 46 mapping)."""
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:
        return domain


def json_bodies(msg: Message) -> tuple[object, object]:
    """``(html, text)`` for a JSON payload: pre-encoded fragments when available."""
    html = orjson.Fragment(b"".join(msg.html_json)) if msg.html_json else msg.html
    text = orjson.Fragment(b"".join(msg.text_json)) if msg.text_json else msg.text
    return html, text


def json_pieces(msg: Message) -> tuple[list[bytes], list[bytes]]:
    """``(html, text)`` as JSON string literals in pieces (see ``Message.html_json``)."""
    html = msg.html_json or [orjson.dumps(msg.html)]
    text = msg.text_json or [orjson.dumps(msg.text)]
    return html, text


def date_header(when: float | None = None) -> str:
    """RFC 5322 date with a numeric zone, e.g. ``Tue, 24 Nov 2026 09:30:00 +0100``
    (the obsolete ``GMT`` form is what spam filters score)."""
    return _date_at(int(time.time() if when is None else when))


@functools.lru_cache(maxsize=4)
def _date_at(second: int) -> str:
    return formatdate(second, localtime=True)


def list_unsubscribe(url: str, mailto: str = "", token: str = "") -> str:
    """``List-Unsubscribe``: the https one-click URL, and a mailto only when ``mailto`` is
    set (an inbound path acts on it); its subject carries the reader's link token."""
    if not mailto:
        return f"<{url}>"
    return f"<{url}>, <mailto:{mailto}?subject=unsubscribe%20{token}>"


def make_message_id(domain: str) -> str:
    """A unique Message-ID on our own domain."""
    return f"<{uuid.uuid4().hex}.{int(time.time())}@{domain}>"


def to_mime(msg: Message) -> EmailMessage:
    """The message as a multipart/alternative MIME object (text first, then HTML)."""
    mime = EmailMessage(policy=SMTP)  # bodies: quoted-printable lines of 76
    mime["From"] = msg.from_addr
    mime["To"] = to_address(msg)
    mime["Subject"] = msg.subject
    mime["Date"] = date_header()
    mime["Message-ID"] = msg.message_id
    if msg.reply_to:
        mime["Reply-To"] = msg.reply_to
    for name, value in msg.headers.items():
        mime[name] = value
    mime.set_content(msg.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    mime.add_alternative(msg.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return mime


def to_bytes(msg: Message) -> bytes:
    """The wire form: RFC 5322 bytes, every line ending CRLF, headers folded at 998.

    The same message :func:`to_mime` describes, written directly: the email package
    takes ~4 ms per message, which an SMTP send of a whole list cannot afford. Headers
    that need RFC 2047 still go through the email package (cached per value). A
    recipient whose local part is not ASCII gets an RFC 6531 (SMTPUTF8) message.
    """
    boundary = f"=_{uuid.uuid4().hex}"
    lines = [
        f"From: {_encoded('From', msg.from_addr)}",
        f"To: {_to_header(msg)}",
        f"Subject: {_encoded('Subject', msg.subject)}",
        f"Date: {date_header()}",
        f"Message-ID: {_one_line(msg.message_id)}",
    ]
    if msg.reply_to:
        lines.append(f"Reply-To: {_encoded('Reply-To', msg.reply_to)}")
    lines += [f"{name}: {_encoded(name, value)}" for name, value in msg.headers.items()]
    lines += [
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
        "",
        "",
    ]
    head = "\r\n".join(lines).encode("utf-8")
    return b"".join(
        [
            head,
            _part(boundary, "plain", msg.text, msg.text_qp),
            _part(boundary, "html", msg.html, msg.html_qp),
            f"--{boundary}--\r\n".encode(),
        ]
    )


def _part(boundary: str, subtype: str, text: str, encoded: bytes = b"") -> bytes:
    head = (
        f'--{boundary}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    ).encode()
    if encoded:  # pre-encoded by the renderer (CRLF lines); end on a real line break
        if encoded.endswith(b"=\r\n"):
            encoded = encoded[:-3] + b"\r\n"
        return head + encoded + b"\r\n"
    body = text.replace("\r\n", "\n").replace("\r", "\n")
    encoded = binascii.b2a_qp(body.encode("utf-8"), istext=True)  # 76-character lines
    if not encoded.endswith(b"\n"):
        encoded += b"\n"
    # The CRLF before the next boundary belongs to the delimiter (RFC 2046), so one more
    # keeps the body's own last line break.
    return head + encoded.replace(b"\n", b"\r\n") + b"\r\n"


def _one_line(value: str) -> str:
    """No header value ever carries a line break of its own (header injection)."""
    return value.replace("\r", " ").replace("\n", " ")


@functools.lru_cache(maxsize=256)
def _encoded(name: str, value: str) -> str:
    """A header value as the email package writes it (RFC 2047 only where needed)."""
    value = _one_line(value)
    if value.isascii() and len(value) < 900:
        return value
    mime = EmailMessage(policy=WIRE)
    mime[name] = value
    return mime.as_string(policy=WIRE).split(":", 1)[1].strip().replace("\n", "\r\n")


def _to_header(msg: Message) -> str:
    if msg.needs_smtputf8:
        return _one_line(msg.to)  # RFC 6531: UTF-8 as is
    if msg.to.isascii():
        return _one_line(msg.to)
    mime = EmailMessage(policy=WIRE)
    mime["To"] = to_address(msg)
    return mime.as_string(policy=WIRE).split(":", 1)[1].strip().replace("\n", "\r\n")
