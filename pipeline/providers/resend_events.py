"""Resend webhooks, signed the Svix way.

Key: base64-decode the secret without its ``whsec_`` prefix (``RESEND_WEBHOOK_SECRET``).
Signature: base64(HMAC-SHA256(key, ``"{svix-id}.{svix-timestamp}.{raw body}"``)), in
``svix-signature`` as space-separated ``v1,<sig>`` entries (several during a secret
rotation). Timestamps more than five minutes off are refused, as Svix prescribes.
``svix-id`` is the same on every retry of a message: it is the event id.

The body is ``{type, created_at, data: {email_id, to, tags, bounce ...}}``; our tags
(``campaign``, ``recipient``) come back in ``data.tags``, as an object or as a list
of ``{name, value}`` (both forms appear in Resend's documentation).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from email.utils import parseaddr
from typing import Any

from pipeline.providers.webhook_events import (
    HARD,
    SOFT,
    Event,
    EventType,
    Fetch,
    Malformed,
    NotConfigured,
    Parsed,
    Unauthenticated,
    WebhookParser,
    WebhookRequest,
    check_fresh,
    json_object,
    mapping,
    parse_time,
    required_env,
    text,
)
from pipeline.settings import Settings

SECRET = "RESEND_WEBHOOK_SECRET"
WINDOW = 300  # Svix: five minutes

TYPES: dict[str, EventType] = {
    "email.delivered": EventType.DELIVERED,
    "email.bounced": EventType.BOUNCED,
    "email.delivery_delayed": EventType.DEFERRED,
    "email.complained": EventType.COMPLAINED,
    "email.opened": EventType.OPENED,
    "email.clicked": EventType.CLICKED,
}


class ResendWebhook(WebhookParser):
    name = "resend"

    def __init__(self, *, key: bytes, window: int = WINDOW) -> None:
        self._key = key
        self.window = window

    @classmethod
    def from_settings(cls, settings: Settings, *, fetch: Fetch | None = None) -> ResendWebhook:
        return cls(key=signing_key(required_env(settings, SECRET, cls.name)))

    def parse(self, request: WebhookRequest) -> Parsed:
        event_id = self.verify(request)
        body = json_object(request.body)
        if not isinstance(body.get("type"), str) or not isinstance(body.get("data"), dict):
            raise Malformed("not a Resend webhook event (no type or data)")
        return Parsed([self.event(event_id, body)])

    def verify(self, request: WebhookRequest) -> str:
        msg_id, timestamp = request.header("svix-id"), request.header("svix-timestamp")
        signatures = request.header("svix-signature")
        if not (msg_id and timestamp and signatures):
            raise Unauthenticated("no svix-id, svix-timestamp or svix-signature header")
        signed = f"{msg_id}.{timestamp}.".encode() + request.body
        expected = base64.b64encode(hmac.new(self._key, signed, hashlib.sha256).digest())
        offered = [s.partition(",")[2] for s in signatures.split() if s.startswith("v1,")]
        if not any(hmac.compare_digest(expected, s.encode("utf-8", "replace")) for s in offered):
            raise Unauthenticated(
                "the Resend (Svix) signature does not verify",
                hint=f"check {SECRET}: the webhook's signing secret (whsec_...)",
            )
        check_fresh(timestamp, request.received_at, self.window)
        return msg_id[:200]

    def event(self, event_id: str, body: dict[str, Any]) -> Event:
        data = body["data"]
        kind, bounce = classify(text(body.get("type")), mapping(data.get("bounce")))
        tags = _tags(data.get("tags"))
        return Event(
            provider=self.name,
            event_id=event_id,
            type=kind,
            email=_first_to(data.get("to")),
            bounce=bounce,
            message_id=_header(data.get("headers"), "message-id"),
            provider_id=text(data.get("email_id"), 200),
            campaign=tags.get("campaign", ""),
            recipient=tags.get("recipient", ""),
            detail=_detail(data),
            occurred_at=parse_time(body.get("created_at")),
        )


def signing_key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NotConfigured(
            f"{SECRET} is not a Svix secret (whsec_ followed by base64)",
            hint="copy the signing secret from the webhook's page in Resend",
        ) from exc


def classify(name: str, bounce: dict[str, Any]) -> tuple[EventType, str]:
    kind = TYPES.get(name, EventType.UNKNOWN)
    if kind != EventType.BOUNCED:
        return kind, ""
    transient = text(bounce.get("type")).lower() == "transient"
    return kind, SOFT if transient else HARD


def _tags(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        return {text(k, 100): text(v, 200) for k, v in value.items()}
    if isinstance(value, list):
        pairs = (mapping(t) for t in value)
        return {text(t.get("name"), 100): text(t.get("value"), 200) for t in pairs}
    return {}


def _first_to(value: Any) -> str:
    first = value[0] if isinstance(value, list) and value else value
    return parseaddr(text(first, 400))[1][:320]


def _header(headers: Any, name: str) -> str:
    for header in headers if isinstance(headers, list) else []:
        if text(mapping(header).get("name")).lower() == name:
            return text(header.get("value"), 300)
    return ""


def _detail(data: dict[str, Any]) -> str:
    bounce, click = mapping(data.get("bounce")), mapping(data.get("click"))
    parts = [text(bounce.get(k), 500) for k in ("type", "subType", "message")]
    parts.append(text(click.get("link"), 400))
    return " | ".join(p for p in parts if p)[:1000]
