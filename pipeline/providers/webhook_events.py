"""What providers report after a send, in one vocabulary (after django-anymail).

Each provider's webhook parser lives beside its sender, in
``pipeline/providers/<name>_events.py``: it checks that a request really comes from
the provider (stricter than the usual libraries: timestamp windows, replay
protection, pinned certificate hosts) and turns the provider's records into
:class:`Event` objects. Nothing here touches the store; the web app
(``subscribers/webhooks.py``) records the events and applies their effects.

A parser raises a :class:`WebhookError` whose ``status`` is the HTTP answer:
400 malformed, 401 unauthenticated (missing or wrong signature), 403 refused
(stale, replayed, wrong topic, not configured), 503 when a provider's certificate
cannot be fetched right now (the provider retries).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

import orjson

from pipeline.errors import PipelineError
from pipeline.providers import load_class
from pipeline.settings import Settings

# name -> "module:Class", imported lazily (like pipeline.providers.PROVIDERS).
WEBHOOKS: dict[str, str] = {
    "postmark": "pipeline.providers.postmark_events:PostmarkWebhook",
    "sendgrid": "pipeline.providers.sendgrid_events:SendGridWebhook",
    "mailgun": "pipeline.providers.mailgun_events:MailgunWebhook",
    "ses": "pipeline.providers.ses_events:SesWebhook",
    "resend": "pipeline.providers.resend_events:ResendWebhook",
}


class EventType(StrEnum):
    """The shared vocabulary; no provider-specific name leaks past its parser."""

    DELIVERED = "delivered"
    BOUNCED = "bounced"  # with Event.bounce "hard" or "soft"
    DEFERRED = "deferred"  # the provider is still trying
    COMPLAINED = "complained"  # marked as spam
    UNSUBSCRIBED = "unsubscribed"  # through the provider (its link, its list)
    OPENED = "opened"  # unreliable: privacy proxies fetch images
    CLICKED = "clicked"
    UNKNOWN = "unknown"


HARD = "hard"
SOFT = "soft"


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened to one message for one recipient."""

    provider: str
    event_id: str  # the provider's id for this event: retries of it carry the same
    type: EventType
    email: str = ""  # the recipient the event is about
    bounce: str = ""  # HARD or SOFT, for BOUNCED
    message_id: str = ""  # our Message-ID, when the provider echoes it back
    provider_id: str = ""  # the provider's id for the message (the ledger's provider_id)
    campaign: str = ""  # campaign slug from the metadata we sent
    recipient: str = ""  # subscriber id from the metadata we sent
    detail: str = ""  # the provider's words (reason, SMTP reply, link)
    occurred_at: dt.datetime | None = None

    @property
    def suppresses(self) -> bool:
        """A hard bounce or a complaint: stop mailing this address at once."""
        hard = self.type == EventType.BOUNCED and self.bounce == HARD
        return hard or self.type == EventType.COMPLAINED


@dataclass(frozen=True)
class WebhookRequest:
    """What a parser gets of an HTTP request: raw body, headers with lower-case names."""

    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    received_at: float = field(default_factory=time.time)

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


@dataclass
class Parsed:
    """The events of one request, and what the caller must still do with it."""

    events: list[Event] = field(default_factory=list)
    replay_token: str = ""  # used once only: the caller refuses a token it has seen
    confirm_url: str = ""  # an SNS subscription to confirm (already checked)
    note: str = ""  # for the log: why a request carried no events


# ---- errors ------------------------------------------------------------------------


class WebhookError(PipelineError):
    """A webhook request we refuse; ``status`` is the HTTP answer."""

    status: ClassVar[int] = 400


class Malformed(WebhookError):
    """The body is not what this provider sends."""

    status = 400


class Unauthenticated(WebhookError):
    """No signature or credentials, or wrong ones."""

    status = 401


class Refused(WebhookError):
    """Authentic-looking but not acceptable: stale, replayed, wrong topic or host."""

    status = 403


class NotConfigured(Refused):
    """This provider's webhook secret is not set: the message names the variable."""


class Unavailable(WebhookError):
    """Something we need from the provider cannot be had right now (retry later)."""

    status = 503


# ---- the parser interface -------------------------------------------------------------

Fetch = Callable[[str], bytes]


class WebhookParser(ABC):
    """One subclass per provider, in ``pipeline/providers/<name>_events.py``."""

    name: ClassVar[str]

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings, *, fetch: Fetch | None = None) -> WebhookParser:
        """Build the parser; :class:`NotConfigured` names any missing variable."""

    @abstractmethod
    def parse(self, request: WebhookRequest) -> Parsed:
        """Check the request is the provider's, then turn it into events."""

    def confirm(self, url: str) -> None:
        """Confirm a subscription the provider asked for (``Parsed.confirm_url``)."""
        raise Refused(f"the {self.name} webhook has no subscription to confirm")


def webhook_class(name: str) -> type[WebhookParser] | None:
    """The parser class for a provider name, or None for a provider without webhooks."""
    target = WEBHOOKS.get(name)
    if target is None:
        return None
    return load_class(target)


# ---- helpers the parsers share ------------------------------------------------------------


def required_env(settings: Settings, name: str, provider: str) -> str:
    value = settings.env.get(name, "").strip()
    if not value:
        raise NotConfigured(
            f"the {provider} webhook is not configured",
            hint=f"set {name} in the environment (see README, Webhooks)",
        )
    return value


def tolerance(settings: Settings) -> int:
    return max(1, int(settings.provider_options.get("webhook_tolerance", 300)))


def load_json(body: bytes) -> Any:
    """Strict JSON (orjson): NaN, Infinity, numbers beyond a double, nesting past 1024
    levels and bad UTF-8 are all a 400, never an exception escaping as a 500."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Malformed(f"the body is not valid UTF-8 JSON: {exc}") from exc


def json_object(body: bytes) -> dict[str, Any]:
    data = load_json(body)
    if not isinstance(data, dict):
        raise Malformed("the body must be a JSON object")
    return data


def check_fresh(timestamp: str | int | float, now: float, window: int) -> None:
    """Refuse a signed timestamp more than ``window`` seconds from now.

    ``float()`` reads "nan", "inf" and "1e999" too: NaN compares false with everything,
    so it would pass any window. Only a finite number of seconds is a timestamp.
    """
    try:
        when = float(timestamp)
    except (TypeError, ValueError) as exc:
        raise Malformed("the signature timestamp is not a number") from exc
    if not math.isfinite(when):
        raise Malformed(f"the signature timestamp {str(timestamp)[:40]!r} is not a finite number")
    if abs(now - when) > window:
        raise Refused(
            f"the signature timestamp is {abs(now - when):.0f} s off (more than {window} s)",
            hint="a stale or replayed request; check the server clock if this repeats",
        )


def text(value: Any, limit: int = 1000) -> str:
    """A field as a bounded string ('' for None or a container)."""
    if value is None or isinstance(value, dict | list):
        return ""
    return str(value)[:limit]


def mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def stable_id(record: Any) -> str:
    """A stable id for a record that has none: the SHA-256 of its canonical JSON."""
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def angle(message_id: str) -> str:
    """A Message-ID with its angle brackets (some providers drop them)."""
    value = message_id.strip()
    if not value:
        return ""
    return value if value.startswith("<") else f"<{value}>"


def parse_time(value: Any) -> dt.datetime | None:
    """An ISO 8601 or epoch-seconds timestamp, as aware UTC; None when unreadable."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return dt.datetime.fromtimestamp(float(value), dt.UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or not value:
        return None
    iso = re.sub(r"(\.\d{6})\d+", r"\1", value.strip().replace("Z", "+00:00"))
    try:
        parsed = dt.datetime.fromisoformat(iso)
    except ValueError:
        return None
    return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
