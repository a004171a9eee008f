"""Mailgun webhooks: ``{"signature": {timestamp, token, signature}, "event-data": {...}}``.

The signature is ``hex(HMAC-SHA256(signing key, timestamp + token))`` with the HTTP
webhook signing key (``MAILGUN_WEBHOOK_SIGNING_KEY``, not the API key). It does not
cover the event data, so beyond checking it we refuse timestamps outside
``webhook_tolerance`` and hand back the token, which the caller accepts only once
(a captured signature cannot carry a forged event).

Our ``v:`` variables (message_id, campaign, recipient) come back in ``user-variables``;
the event's id is ``event-data.id`` (unique within a day) with its timestamp.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from pipeline.providers.webhook_events import (
    HARD,
    SOFT,
    Event,
    EventType,
    Fetch,
    Malformed,
    Parsed,
    Unauthenticated,
    WebhookParser,
    WebhookRequest,
    angle,
    check_fresh,
    json_object,
    mapping,
    parse_time,
    required_env,
    stable_id,
    text,
    tolerance,
)
from pipeline.settings import Settings

KEY = "MAILGUN_WEBHOOK_SIGNING_KEY"

TYPES: dict[str, EventType] = {
    "delivered": EventType.DELIVERED,
    "failed": EventType.BOUNCED,  # refined by severity and reason below
    "complained": EventType.COMPLAINED,
    "unsubscribed": EventType.UNSUBSCRIBED,
    "opened": EventType.OPENED,
    "clicked": EventType.CLICKED,
}

# A permanent failure's "reason" -> what it says of the address (default: hard bounce).
PERMANENT_REASONS: dict[str, tuple[EventType, str]] = {
    "old": (EventType.BOUNCED, SOFT),  # gave up after retrying temporary failures
    "suppress-complaint": (EventType.COMPLAINED, ""),
    "suppress-unsubscribe": (EventType.UNSUBSCRIBED, ""),
}


class MailgunWebhook(WebhookParser):
    name = "mailgun"

    def __init__(self, *, signing_key: str, window: int = 300) -> None:
        self._key = signing_key.encode("utf-8")
        self.window = window

    @classmethod
    def from_settings(cls, settings: Settings, *, fetch: Fetch | None = None) -> MailgunWebhook:
        return cls(signing_key=required_env(settings, KEY, cls.name), window=tolerance(settings))

    def parse(self, request: WebhookRequest) -> Parsed:
        if "json" not in request.header("Content-Type"):
            raise Malformed(
                "Mailgun webhooks are JSON", hint="use Mailgun's current webhooks, not legacy forms"
            )
        body = json_object(request.body)
        token = self.verify(mapping(body.get("signature")), request.received_at)
        data = body.get("event-data")
        if not isinstance(data, dict):
            raise Malformed("no event-data object in the Mailgun webhook")
        return Parsed([self.event(data)], replay_token=token)

    def verify(self, block: dict[str, Any], now: float) -> str:
        """Check the signature block; returns the token (to be used only once)."""
        timestamp, token, signature = (
            text(block.get(k), 200) for k in ("timestamp", "token", "signature")
        )
        if not (timestamp and token and signature):
            raise Unauthenticated("the Mailgun webhook carries no signature")
        expected = hmac.new(self._key, f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            raise Unauthenticated(
                "the Mailgun signature does not verify",
                hint=f"check {KEY}: Mailgun's HTTP webhook signing key (not the API key)",
            )
        check_fresh(timestamp, now, self.window)
        return token

    def event(self, data: dict[str, Any]) -> Event:
        kind, bounce = classify(data)
        variables = mapping(data.get("user-variables"))
        headers = mapping(mapping(data.get("message")).get("headers"))
        status = mapping(data.get("delivery-status"))
        return Event(
            provider=self.name,
            event_id=_event_id(data),
            type=kind,
            email=text(data.get("recipient"), 320),
            bounce=bounce,
            message_id=angle(text(variables.get("message_id") or headers.get("message-id"), 300)),
            provider_id=angle(text(headers.get("message-id"), 200)),
            campaign=text(variables.get("campaign"), 200),
            recipient=text(variables.get("recipient"), 20),
            detail=_detail(data, status),
            occurred_at=parse_time(data.get("timestamp")),
        )


def classify(data: dict[str, Any]) -> tuple[EventType, str]:
    kind = TYPES.get(text(data.get("event")), EventType.UNKNOWN)
    if kind != EventType.BOUNCED:
        return kind, ""
    if text(data.get("severity")) != "permanent":
        return EventType.DEFERRED, ""  # Mailgun retries temporary failures itself
    return PERMANENT_REASONS.get(text(data.get("reason")), (EventType.BOUNCED, HARD))


def _event_id(data: dict[str, Any]) -> str:
    event_id = text(data.get("id"), 150)
    return f"{event_id}:{text(data.get('timestamp'), 40)}" if event_id else stable_id(data)


def _detail(data: dict[str, Any], status: dict[str, Any]) -> str:
    parts = [text(data.get("reason"), 100), text(status.get("code"), 10)]
    parts += [text(status.get("description"), 400), text(status.get("message"), 400)]
    parts.append(text(data.get("url"), 400))
    return " | ".join(p for p in parts if p)[:1000]
