"""Postmark webhooks: one JSON record per request, authenticated by HTTP basic auth.

Postmark signs nothing; the webhook URL carries credentials
(``https://USER:PASSWORD@site/webhooks/postmark``) that must match
``POSTMARK_WEBHOOK_USER`` and ``POSTMARK_WEBHOOK_PASSWORD``. Broadcast streams report
bounces and spam complaints only as ``SubscriptionChange`` records (Postmark's
suppression list), transactional streams also as ``Bounce``/``SpamComplaint``.

Bounce and spam records carry an ``ID``; the others have no event id, so a record's
id is the hash of its canonical JSON: a retried delivery of the same record counts once.
"""

from __future__ import annotations

import base64
import binascii
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
    json_object,
    mapping,
    parse_time,
    required_env,
    stable_id,
    text,
)
from pipeline.settings import Settings

USER = "POSTMARK_WEBHOOK_USER"
PASSWORD = "POSTMARK_WEBHOOK_PASSWORD"

# RecordType -> our type (Bounce and SubscriptionChange are refined below).
TYPE_BY_RECORD: dict[str, EventType] = {
    "Delivery": EventType.DELIVERED,
    "Bounce": EventType.BOUNCED,
    "SpamComplaint": EventType.COMPLAINED,
    "Open": EventType.OPENED,
    "Click": EventType.CLICKED,
    "SubscriptionChange": EventType.UNSUBSCRIBED,
}

# Bounce "Type" -> (our type, hard/soft). Others (AutoResponder, ...) are unknown.
BOUNCE_TYPES: dict[str, tuple[EventType, str]] = {
    "HardBounce": (EventType.BOUNCED, HARD),
    "BadEmailAddress": (EventType.BOUNCED, HARD),
    "SoftBounce": (EventType.BOUNCED, SOFT),
    "Transient": (EventType.DEFERRED, ""),
    "DnsError": (EventType.DEFERRED, ""),
    "SpamNotification": (EventType.COMPLAINED, ""),
    "SpamComplaint": (EventType.COMPLAINED, ""),
    "Unsubscribe": (EventType.UNSUBSCRIBED, ""),
}

# SubscriptionChange "SuppressionReason" (when SuppressSending is true) -> our type.
SUPPRESSION_REASONS: dict[str, tuple[EventType, str]] = {
    "HardBounce": (EventType.BOUNCED, HARD),
    "SpamComplaint": (EventType.COMPLAINED, ""),
    "ManualSuppression": (EventType.UNSUBSCRIBED, ""),  # also a recipient's unsubscribe
}

TIME_FIELDS = ("DeliveredAt", "BouncedAt", "ReceivedAt", "ChangedAt")


class PostmarkWebhook(WebhookParser):
    name = "postmark"

    def __init__(self, *, user: str, password: str) -> None:
        self._user = user.encode("utf-8")
        self._password = password.encode("utf-8")

    @classmethod
    def from_settings(cls, settings: Settings, *, fetch: Fetch | None = None) -> PostmarkWebhook:
        return cls(
            user=required_env(settings, USER, cls.name),
            password=required_env(settings, PASSWORD, cls.name),
        )

    def parse(self, request: WebhookRequest) -> Parsed:
        self.authenticate(request.header("Authorization"))
        record = json_object(request.body)
        if "RecordType" not in record:
            raise Malformed("not a Postmark webhook record (no RecordType)")
        return Parsed([self.event(record)])

    def authenticate(self, authorization: str) -> None:
        """Both basic auth fields must match, compared in constant time."""
        user, password = _basic(authorization)
        good_user = hmac.compare_digest(user, self._user)
        good_password = hmac.compare_digest(password, self._password)
        if not (good_user and good_password):
            raise Unauthenticated(
                "wrong or missing basic auth credentials",
                hint=f"put {USER}:{PASSWORD} in the webhook URL set in Postmark",
            )

    def event(self, record: dict[str, Any]) -> Event:
        kind, bounce = self.classify(record)
        metadata = mapping(record.get("Metadata"))
        return Event(
            provider=self.name,
            event_id=_event_id(record),
            type=kind,
            email=text(record.get("Email") or record.get("Recipient"), 320),
            bounce=bounce,
            message_id=text(metadata.get("message_id"), 300),
            provider_id=text(record.get("MessageID"), 200),
            campaign=text(metadata.get("campaign"), 200),
            recipient=text(metadata.get("recipient"), 20),
            detail=_detail(record),
            occurred_at=parse_time(next((record[f] for f in TIME_FIELDS if f in record), None)),
        )

    @staticmethod
    def classify(record: dict[str, Any]) -> tuple[EventType, str]:
        record_type = text(record.get("RecordType"))
        kind = TYPE_BY_RECORD.get(record_type, EventType.UNKNOWN)
        if record_type in ("Bounce", "SpamComplaint"):
            return BOUNCE_TYPES.get(text(record.get("Type")), (EventType.UNKNOWN, ""))
        if record_type == "SubscriptionChange":
            if record.get("SuppressSending") is not True:
                return EventType.UNKNOWN, ""  # a reactivation: recorded, nothing to do
            reason = text(record.get("SuppressionReason"))
            return SUPPRESSION_REASONS.get(reason, (EventType.UNSUBSCRIBED, ""))
        return kind, ""


def _basic(authorization: str) -> tuple[bytes, bytes]:
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic" or not value:
        return b"", b""
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return b"", b""
    user, _, password = decoded.partition(b":")
    return user, password


def _event_id(record: dict[str, Any]) -> str:
    if record.get("ID") is not None and record.get("RecordType") in ("Bounce", "SpamComplaint"):
        return f"{record['RecordType']}:{text(record['ID'], 100)}"
    return stable_id(record)


def _detail(record: dict[str, Any]) -> str:
    parts = [
        text(record.get(k), 500)
        for k in ("Type", "SuppressionReason", "Description", "Details", "OriginalLink")
    ]
    return " | ".join(p for p in parts if p)[:1000]
