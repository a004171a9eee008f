"""Mailgun inbound: a route ``match_recipient("unsubscribe@...")`` with the action
``forward("https://site/inbound/mailgun")`` posts the parsed message as a form.

The form carries ``timestamp``, ``token`` and ``signature``, checked exactly as for the
event webhooks (HMAC-SHA256 with ``MAILGUN_WEBHOOK_SIGNING_KEY``, the timestamp within
``webhook_tolerance``, each token once). Fields read: ``recipient``, ``sender``,
``subject``, ``body-plain``, ``Message-Id``.
"""

from __future__ import annotations

from pipeline.providers.inbound import (
    InboundMail,
    InboundParser,
    ParsedInbound,
    addresses,
    form_fields,
)
from pipeline.providers.mailgun_events import MailgunWebhook
from pipeline.providers.webhook_events import WebhookRequest


class MailgunInbound(InboundParser):
    name = "mailgun"
    webhook = MailgunWebhook
    auth: MailgunWebhook

    def parse(self, request: WebhookRequest) -> ParsedInbound:
        fields = form_fields(request.body, request.header("Content-Type"))
        token = self.auth.verify(fields, request.received_at)  # type: ignore[arg-type]
        mail = InboundMail(
            recipients=addresses(fields.get("recipient", ""), fields.get("To", "")),
            sender=(addresses(fields.get("sender", "")) or ("",))[0],
            subject=fields.get("subject", "")[:1000],
            text=fields.get("body-plain", "")[:20_000],
            message_id=fields.get("Message-Id", "")[:200],
        )
        return ParsedInbound([mail], replay_token=token)
