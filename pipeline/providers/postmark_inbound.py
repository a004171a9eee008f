"""Postmark inbound: the JSON of an inbound stream's webhook, authenticated like the event
webhooks by basic auth in the URL (``https://USER:PASSWORD@site/inbound/postmark``, the
same ``POSTMARK_WEBHOOK_USER`` and ``POSTMARK_WEBHOOK_PASSWORD``).

Postmark's inbound JSON: ``FromFull {Email}``, ``ToFull``/``CcFull``/``BccFull``
``[{Email}]``, ``OriginalRecipient``, ``Subject``, ``TextBody``, ``MessageID``.
"""

from __future__ import annotations

from typing import Any

from pipeline.providers.inbound import InboundMail, InboundParser, ParsedInbound, addresses
from pipeline.providers.postmark_events import PostmarkWebhook
from pipeline.providers.webhook_events import (
    Malformed,
    WebhookRequest,
    json_object,
    mapping,
    text,
)

RECIPIENT_FIELDS = ("ToFull", "CcFull", "BccFull")


class PostmarkInbound(InboundParser):
    name = "postmark"
    webhook = PostmarkWebhook
    auth: PostmarkWebhook

    def parse(self, request: WebhookRequest) -> ParsedInbound:
        self.auth.authenticate(request.header("Authorization"))
        record = json_object(request.body)
        if "FromFull" not in record and "OriginalRecipient" not in record:
            raise Malformed("not a Postmark inbound message (no FromFull/OriginalRecipient)")
        return ParsedInbound([self.mail(record)])

    @staticmethod
    def mail(record: dict[str, Any]) -> InboundMail:
        listed = [
            text(mapping(entry).get("Email"), 320)
            for key in RECIPIENT_FIELDS
            for entry in (record.get(key) if isinstance(record.get(key), list) else [])
        ]
        original = text(record.get("OriginalRecipient"), 320)
        return InboundMail(
            recipients=addresses(original, *listed),
            sender=text(mapping(record.get("FromFull")).get("Email"), 320).lower(),
            subject=text(record.get("Subject"), 1000),
            text=text(record.get("TextBody"), 20_000),
            message_id=text(record.get("MessageID"), 200),
        )
