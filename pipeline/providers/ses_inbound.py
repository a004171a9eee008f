"""Amazon SES inbound: a receipt rule for ``unsubscribe@...`` with an SNS action publishes
each received message (``notificationType: Received``, the raw MIME in ``content``) to
a topic with an HTTPS subscription to ``https://site/inbound/ses``.

The SNS message is verified exactly as for the event webhook (``SesWebhook``: topic in
``SES_SNS_TOPIC_ARNS``, signing certificate from sns.<region>.amazonaws.com, signature,
age); the subscription confirmation is confirmed the same way. The recipients are the
receipt's, the subject and text come from the raw message.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from pipeline.providers.inbound import (
    InboundMail,
    InboundParser,
    ParsedInbound,
    addresses,
    from_mime,
)
from pipeline.providers.ses_events import SesWebhook
from pipeline.providers.webhook_events import (
    Malformed,
    WebhookRequest,
    json_object,
    mapping,
    text,
)


class SesInbound(InboundParser):
    name = "ses"
    webhook = SesWebhook
    auth: SesWebhook  # verifies the SNS message

    def parse(self, request: WebhookRequest) -> ParsedInbound:
        message = json_object(request.body)
        kind = self.auth.verify(message, request)
        if kind == "SubscriptionConfirmation":
            return ParsedInbound(confirm_url=self.auth.subscribe_url(message), note="subscribed")
        if kind != "Notification":
            return ParsedInbound(note=f"{kind} ignored")
        try:
            inner = json.loads(text(message.get("Message"), 40_000_000))
        except json.JSONDecodeError as exc:
            raise Malformed("the SNS Message is not SES JSON") from exc
        if not isinstance(inner, dict) or inner.get("notificationType") != "Received":
            return ParsedInbound(note="not a received email (an event topic?)")
        return ParsedInbound([self.mail(inner)])

    def confirm(self, url: str) -> None:
        self.auth.confirm(url)

    @staticmethod
    def mail(inner: dict[str, Any]) -> InboundMail:
        receipt, mail = mapping(inner.get("receipt")), mapping(inner.get("mail"))
        listed = receipt.get("recipients") or mail.get("destination") or []
        recipients = addresses(*[text(r, 320) for r in listed if isinstance(r, str)])
        content = inner.get("content")
        if isinstance(content, str) and content:
            return from_mime(_raw(content, receipt), recipients)
        headers = mapping(mail.get("commonHeaders"))
        return InboundMail(
            recipients=recipients,
            sender=text(mail.get("source"), 320).lower(),
            subject=text(headers.get("subject"), 1000),
            message_id=text(headers.get("messageId"), 200),
        )


def _raw(content: str, receipt: dict[str, Any]) -> bytes:
    """The SNS action's ``content``: UTF-8 text or Base64, as the action's encoding says."""
    encoding = text(mapping(receipt.get("action")).get("encoding")).upper()
    if encoding == "BASE64":
        try:
            return base64.b64decode(content, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise Malformed("the SES content is not Base64") from exc
    return content.encode("utf-8", "surrogateescape")
