"""Mail sent to the List-Unsubscribe ``mailto:``, as a provider forwards it to us.

Every message's ``List-Unsubscribe`` may carry, beside the https one-click URL,
``<mailto:UNSUBSCRIBE_EMAIL?subject=unsubscribe%20TOKEN>``: a mail client that does not
do one-click sends that email instead. The provider receiving ``site.unsubscribe_email``
(``[provider] inbound``) forwards it to ``POST /inbound/<provider>``:

* Postmark: an inbound stream's webhook (JSON), authenticated by basic auth in its URL;
* Mailgun: a route whose action is ``forward("https://.../inbound/mailgun")`` (a form),
  signed like Mailgun's webhooks;
* Amazon SES: a receipt rule with an SNS action (the raw message in the notification),
  verified like the SES event webhook.

A parser checks the request is the provider's, exactly as the event webhooks do
(:mod:`pipeline.providers.webhook_events`: the same errors and HTTP answers), and turns
it into :class:`InboundMail`. Nothing here touches the store: the web app
(``subscribers/inbound.py``) reads the token from the subject and unsubscribes.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import getaddresses
from typing import ClassVar
from urllib.parse import parse_qs

from pipeline.providers import load_class
from pipeline.providers.webhook_events import (
    Fetch,
    Malformed,
    Refused,
    WebhookParser,
    WebhookRequest,
)
from pipeline.settings import Settings

# name -> "module:Class", imported lazily (like PROVIDERS and WEBHOOKS).
INBOUND: dict[str, str] = {
    "postmark": "pipeline.providers.postmark_inbound:PostmarkInbound",
    "mailgun": "pipeline.providers.mailgun_inbound:MailgunInbound",
    "ses": "pipeline.providers.ses_inbound:SesInbound",
}
# "unsubscribe 12.AbC..." as pipeline.message.list_unsubscribe writes it (subject=...).
TOKEN = re.compile(r"\bunsubscribe\s+(\d{1,18}\.[A-Za-z0-9_-]{10,64})(?![A-Za-z0-9_.-])", re.I)
TEXT_SCAN = 4000  # characters of the body searched when the subject holds no token


@dataclass(frozen=True)
class InboundMail:
    """One email as received: who it was for, from, its subject and plain text."""

    recipients: tuple[str, ...]  # lower-case addresses it was delivered to
    sender: str = ""
    subject: str = ""
    text: str = ""
    message_id: str = ""

    def addressed_to(self, address: str) -> bool:
        return address.lower() in self.recipients

    def unsubscribe_token(self) -> str:
        """The link token of an ``unsubscribe TOKEN`` subject (or body), or ''."""
        found = TOKEN.search(self.subject) or TOKEN.search(self.text[:TEXT_SCAN])
        return found.group(1) if found else ""


@dataclass
class ParsedInbound:
    mails: list[InboundMail] = field(default_factory=list)
    replay_token: str = ""  # used once only (Mailgun's signature token)
    confirm_url: str = ""  # an SNS subscription to confirm (already checked)
    note: str = ""  # for the log: why a request carried no mail


class InboundParser(ABC):
    """One subclass per provider, in ``pipeline/providers/<name>_inbound.py``. It checks a
    request with ``auth``, the provider's event webhook parser (``webhook``) built from
    the same settings."""

    name: ClassVar[str]
    webhook: ClassVar[type[WebhookParser]]

    def __init__(self, auth: WebhookParser) -> None:
        self.auth = auth

    @classmethod
    def from_settings(cls, settings: Settings, *, fetch: Fetch | None = None) -> InboundParser:
        """Build the parser; NotConfigured names any missing variable."""
        return cls(cls.webhook.from_settings(settings, fetch=fetch))

    @abstractmethod
    def parse(self, request: WebhookRequest) -> ParsedInbound:
        """Check the request is the provider's, then read the email(s) out of it."""

    def confirm(self, url: str) -> None:
        raise Refused(f"the {self.name} inbound path has no subscription to confirm")


def inbound_class(name: str) -> type[InboundParser]:
    target = INBOUND.get(name)
    if target is None:
        raise Refused(
            f"no inbound path for {name!r}",
            hint=f"provider.inbound takes one of: {', '.join(INBOUND)}",
        )
    return load_class(target)


# ---- helpers the parsers share -----------------------------------------------------------


def addresses(*values: str) -> tuple[str, ...]:
    """Lower-case addresses out of header values (``A <a@x>, b@y``)."""
    found = [addr.lower() for _, addr in getaddresses([v for v in values if v]) if "@" in addr]
    return tuple(dict.fromkeys(found))


def form_fields(body: bytes, content_type: str) -> dict[str, str]:
    """The text fields of a form post (urlencoded or multipart); files are skipped."""
    if content_type.lower().startswith("application/x-www-form-urlencoded"):
        try:
            pairs = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
        except (UnicodeDecodeError, ValueError) as exc:
            raise Malformed("the form body is not valid") from exc
        return {k: v[0] for k, v in pairs.items()}
    if not content_type.lower().startswith("multipart/form-data"):
        raise Malformed(f"expected a form post, got {content_type or 'no Content-Type'!r}")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = message_from_bytes(head + body, policy=policy.HTTP)
    if not message.is_multipart():
        raise Malformed("the multipart form body has no parts")
    fields = {}
    for part in message.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        if name and part.get_filename() is None:
            payload = part.get_payload(decode=True) or b""
            fields[str(name)] = payload.decode(part.get_content_charset() or "utf-8", "replace")
    return fields


def from_mime(raw: bytes, recipients: tuple[str, ...]) -> InboundMail:
    """An :class:`InboundMail` out of a raw RFC 5322 message."""
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    body = message.get_body(preferencelist=("plain",))
    text = ""
    if body is not None:
        try:
            text = str(body.get_content())
        except (LookupError, ValueError):  # an unknown charset: the subject still counts
            text = ""
    return InboundMail(
        recipients=recipients or addresses(str(message.get("To", ""))),
        sender=(addresses(str(message.get("From", ""))) or ("",))[0],
        subject=str(message.get("Subject", "")),
        text=text,
        message_id=str(message.get("Message-ID", "")),
    )
