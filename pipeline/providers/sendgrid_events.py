"""SendGrid's signed Event Webhook: a JSON array of events, ECDSA-signed.

SendGrid signs ``timestamp + raw body`` with ECDSA P-256/SHA-256; the base64 DER
signature is in ``X-Twilio-Email-Event-Webhook-Signature``, the timestamp in
``X-Twilio-Email-Event-Webhook-Timestamp``. The verification key (Mail Settings,
Signed Event Webhook) is base64 DER, or PEM, in ``SENDGRID_WEBHOOK_PUBLIC_KEY``.
Unlike the usual helpers we also refuse timestamps outside ``webhook_tolerance``.

Our ``custom_args`` (message_id, campaign, recipient) come back merged into each
event; ``sg_event_id`` is the event id SendGrid keeps across retries.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

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
    load_json,
    parse_time,
    required_env,
    stable_id,
    text,
    tolerance,
)
from pipeline.settings import Settings

KEY = "SENDGRID_WEBHOOK_PUBLIC_KEY"
SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"

# "event" -> our type; bounce and dropped are refined below.
TYPES: dict[str, EventType] = {
    "delivered": EventType.DELIVERED,
    "bounce": EventType.BOUNCED,
    "deferred": EventType.DEFERRED,
    "spamreport": EventType.COMPLAINED,
    "unsubscribe": EventType.UNSUBSCRIBED,
    "group_unsubscribe": EventType.UNSUBSCRIBED,
    "open": EventType.OPENED,
    "click": EventType.CLICKED,
}

# bounce "type": bounce is a hard bounce, blocked a soft one (after anymail / SendGrid docs).
BOUNCE_KINDS: dict[str, str] = {"bounce": HARD, "blocked": SOFT}

# dropped "reason" (lower case) -> what it tells about the address.
DROPPED: dict[str, tuple[EventType, str]] = {
    "bounced address": (EventType.BOUNCED, HARD),
    "invalid": (EventType.BOUNCED, HARD),
    "spam reporting address": (EventType.COMPLAINED, ""),
    "unsubscribed address": (EventType.UNSUBSCRIBED, ""),
}


class SendGridWebhook(WebhookParser):
    name = "sendgrid"

    def __init__(self, *, public_key: ec.EllipticCurvePublicKey, window: int = 300) -> None:
        self.public_key = public_key
        self.window = window

    @classmethod
    def from_settings(cls, settings: Settings, *, fetch: Fetch | None = None) -> SendGridWebhook:
        key = load_public_key(required_env(settings, KEY, cls.name))
        return cls(public_key=key, window=tolerance(settings))

    def parse(self, request: WebhookRequest) -> Parsed:
        self.verify(request)
        data = load_json(request.body)
        if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
            raise Malformed("a SendGrid event webhook body is a JSON array of objects")
        return Parsed([self.event(record) for record in data])

    def verify(self, request: WebhookRequest) -> None:
        signature, timestamp = request.header(SIGNATURE), request.header(TIMESTAMP)
        if not signature or not timestamp:
            raise Unauthenticated(f"no {SIGNATURE} or {TIMESTAMP} header")
        try:
            der = base64.b64decode(signature, validate=True)
            signed = timestamp.encode("ascii") + request.body
            self.public_key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
        except (binascii.Error, ValueError, UnicodeEncodeError, InvalidSignature) as exc:
            raise Unauthenticated(
                "the SendGrid signature does not verify",
                hint=f"check {KEY} (Mail Settings > Signed Event Webhook > verification key)",
            ) from exc
        check_fresh(timestamp, request.received_at, self.window)

    def event(self, record: dict[str, Any]) -> Event:
        kind, bounce = classify(record)
        return Event(
            provider=self.name,
            event_id=text(record.get("sg_event_id"), 200) or stable_id(record),
            type=kind,
            email=text(record.get("email"), 320),
            bounce=bounce,
            message_id=text(record.get("message_id") or record.get("smtp-id"), 300),
            provider_id=text(record.get("sg_message_id"), 200).split(".", 1)[0],
            campaign=text(record.get("campaign"), 200),
            recipient=text(record.get("recipient"), 20),
            detail=text(record.get("reason") or record.get("response") or record.get("url")),
            occurred_at=parse_time(record.get("timestamp")),
        )


def classify(record: dict[str, Any]) -> tuple[EventType, str]:
    name = text(record.get("event"))
    if name == "dropped":
        return DROPPED.get(text(record.get("reason")).lower(), (EventType.UNKNOWN, ""))
    kind = TYPES.get(name, EventType.UNKNOWN)
    if kind == EventType.BOUNCED:
        return kind, BOUNCE_KINDS.get(text(record.get("type")), HARD)
    return kind, ""


def load_public_key(value: str) -> ec.EllipticCurvePublicKey:
    """SendGrid's verification key: base64 DER as shown in SendGrid, or PEM."""
    try:
        if "BEGIN PUBLIC KEY" in value:
            key = serialization.load_pem_public_key(value.encode("ascii"))
        else:
            key = serialization.load_der_public_key(base64.b64decode(value, validate=True))
    except (ValueError, TypeError, binascii.Error, UnicodeEncodeError) as exc:
        raise NotConfigured(
            f"{KEY} is not a valid public key",
            hint="copy the verification key from SendGrid's Signed Event Webhook settings",
        ) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise NotConfigured(f"{KEY} is not an elliptic-curve (ECDSA) public key")
    return key
