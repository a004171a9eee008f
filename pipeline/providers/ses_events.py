"""Amazon SES events through Amazon SNS: signed SNS messages carrying SES event records.

Every SNS message is verified before anything else is read from it:

* its ``TopicArn`` must be one of ``SES_SNS_TOPIC_ARNS`` (comma-separated);
* its signing certificate is fetched only from ``https://sns.<region>.amazonaws.com/
  ...pem`` (cached per URL), must be current and name ``sns.amazonaws.com``;
* the signature (``SignatureVersion`` 1: SHA1withRSA, 2: SHA256withRSA) must verify
  over the fields AWS documents for the message type;
* its ``Timestamp`` must be less than ``SNS_MAX_AGE`` old (SNS retries for a while).

A ``SubscriptionConfirmation`` is confirmed by fetching its ``SubscribeURL``, again only
an ``https://sns.<region>.amazonaws.com/`` URL in the topic's own region. The SNS
``MessageId`` (kept across SNS retries) and the recipient make the event id.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import threading
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from pipeline.providers.webhook_events import (
    HARD,
    SOFT,
    Event,
    EventType,
    Fetch,
    Malformed,
    Parsed,
    Refused,
    Unauthenticated,
    Unavailable,
    WebhookParser,
    WebhookRequest,
    json_object,
    mapping,
    parse_time,
    required_env,
    text,
)
from pipeline.settings import Settings

TOPICS = "SES_SNS_TOPIC_ARNS"
SNS_MAX_AGE = 3600  # seconds: SNS retries an HTTP delivery over some minutes
SNS_HOST = re.compile(r"^sns\.([a-z]{2}(?:-[a-z]+)+-\d{1,2})\.amazonaws\.com$")
CERT_NAME = re.compile(r"^sns(\.[a-z0-9-]+)?\.amazonaws\.com$")
FETCH_TIMEOUT = 10.0
CACHE_SIZE = 16

# The fields signed, in order, per SNS message type (AWS: verifying SNS signatures).
SIGNED_FIELDS: dict[str, tuple[str, ...]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
SIGNED_FIELDS["UnsubscribeConfirmation"] = SIGNED_FIELDS["SubscriptionConfirmation"]
HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}

# SES eventType -> (our type, the record's key, its recipients list key)
SES_TYPES: dict[str, tuple[EventType, str, str]] = {
    "Bounce": (EventType.BOUNCED, "bounce", "bouncedRecipients"),
    "Complaint": (EventType.COMPLAINED, "complaint", "complainedRecipients"),
    "Delivery": (EventType.DELIVERED, "delivery", "recipients"),
    "DeliveryDelay": (EventType.DEFERRED, "deliveryDelay", "delayedRecipients"),
    "Open": (EventType.OPENED, "open", ""),
    "Click": (EventType.CLICKED, "click", ""),
}
BOUNCE_KINDS: dict[str, str] = {"Permanent": HARD, "Transient": SOFT, "Undetermined": SOFT}


def fetch_https(url: str) -> bytes:
    """GET a URL already checked to be an SNS one; no redirects followed."""
    response = requests.get(url, timeout=FETCH_TIMEOUT, allow_redirects=False)
    response.raise_for_status()
    return response.content


class SesWebhook(WebhookParser):
    name = "ses"

    def __init__(self, *, topics: frozenset[str], fetch: Fetch = fetch_https) -> None:
        self.topics = topics
        self.fetch = fetch
        self._certs: dict[str, rsa.RSAPublicKey] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, fetch: Fetch | None = None) -> SesWebhook:
        raw = required_env(settings, TOPICS, cls.name)
        topics = frozenset(t.strip() for t in re.split(r"[,\s]+", raw) if t.strip())
        return cls(topics=topics, fetch=fetch or fetch_https)

    # ---- SNS envelope ----------------------------------------------------------------

    def parse(self, request: WebhookRequest) -> Parsed:
        message = json_object(request.body)
        kind = self.verify(message, request)
        if kind == "SubscriptionConfirmation":
            return Parsed(confirm_url=self.subscribe_url(message), note="subscription confirmed")
        if kind == "UnsubscribeConfirmation":
            return Parsed(note="unsubscribe confirmation ignored")
        return self.notification(message)

    def verify(self, message: dict[str, Any], request: WebhookRequest) -> str:
        kind = text(message.get("Type"))
        if kind not in SIGNED_FIELDS:
            raise Malformed(f"not an SNS message type we take: {kind!r}")
        if request.header("x-amz-sns-message-type") != kind:
            raise Malformed("the x-amz-sns-message-type header does not match the body's Type")
        if text(message.get("TopicArn")) not in self.topics:
            raise Refused(
                f"SNS topic {text(message.get('TopicArn'), 300)!r} is not allowed",
                hint=f"add the topic's ARN to {TOPICS} if it is yours",
            )
        key = self.certificate(text(message.get("SigningCertURL"), 500), request.received_at)
        self.check_signature(key, message, kind)
        self.check_age(message, request.received_at)
        return kind

    def check_signature(self, key: rsa.RSAPublicKey, message: dict[str, Any], kind: str) -> None:
        algorithm = HASHES.get(text(message.get("SignatureVersion")))
        if algorithm is None:
            raise Unauthenticated("unknown SNS SignatureVersion (we take 1 and 2)")
        try:
            signature = base64.b64decode(text(message.get("Signature"), 4000), validate=True)
            key.verify(signature, string_to_sign(message, kind), padding.PKCS1v15(), algorithm())
        except (binascii.Error, ValueError, InvalidSignature) as exc:
            raise Unauthenticated("the SNS signature does not verify") from exc

    @staticmethod
    def check_age(message: dict[str, Any], now: float) -> None:
        sent = parse_time(message.get("Timestamp"))
        if sent is None:
            raise Malformed("the SNS message has no readable Timestamp")
        age = now - sent.timestamp()
        if age > SNS_MAX_AGE or age < -300:
            raise Refused(f"the SNS message is {age:.0f} s old (at most {SNS_MAX_AGE} s)")

    # ---- the signing certificate ------------------------------------------------------

    def certificate(self, url: str, now: float) -> rsa.RSAPublicKey:
        if sns_region(url) is None or not urlsplit(url).path.endswith(".pem"):
            raise Refused(
                "the SNS SigningCertURL is not an https://sns.<region>.amazonaws.com/ .pem URL"
            )
        with self._lock:
            cached = self._certs.get(url)
        if cached is not None:
            return cached
        key = load_certificate(self._download(url), now)
        with self._lock:
            if len(self._certs) >= CACHE_SIZE:
                self._certs.clear()
            self._certs[url] = key
        return key

    def _download(self, url: str) -> bytes:
        try:
            return self.fetch(url)
        except requests.RequestException as exc:
            raise Unavailable(f"could not fetch the SNS signing certificate: {exc}") from exc

    # ---- subscription and notifications ------------------------------------------------

    def subscribe_url(self, message: dict[str, Any]) -> str:
        url = text(message.get("SubscribeURL"), 2000)
        topic_region = text(message.get("TopicArn")).split(":")[3:4]
        if sns_region(url) is None or [sns_region(url)] != topic_region:
            raise Refused("the SubscribeURL is not an https://sns.<region>.amazonaws.com/ URL")
        return url

    def confirm(self, url: str) -> None:
        """Confirm an SNS subscription (the URL was checked by :meth:`subscribe_url`)."""
        if sns_region(url) is None:
            raise Refused("the SubscribeURL is not an https://sns.<region>.amazonaws.com/ URL")
        try:
            self.fetch(url)
        except requests.RequestException as exc:
            raise Unavailable(f"could not confirm the SNS subscription: {exc}") from exc

    def notification(self, message: dict[str, Any]) -> Parsed:
        raw = text(message.get("Message"), 1_000_000)
        if raw.startswith("Successfully validated SNS topic"):
            return Parsed(note="SES topic validation message")
        record = json_object(raw.encode("utf-8"))
        sns_id = text(message.get("MessageId"), 100)
        return Parsed(ses_events(record, sns_id, message.get("Timestamp")))


def ses_events(record: dict[str, Any], sns_id: str, sns_time: Any) -> list[Event]:
    """One event per recipient of an SES event record."""
    name = text(record.get("eventType") or record.get("notificationType"))
    kind, key, recipients_key = SES_TYPES.get(name, (EventType.UNKNOWN, "", ""))
    mail = mapping(record.get("mail"))
    detail = mapping(record.get(key)) if key else {}
    bounce = BOUNCE_KINDS.get(text(detail.get("bounceType")), SOFT) if key == "bounce" else ""
    if key == "complaint" and text(detail.get("complaintFeedbackType")) == "not-spam":
        kind = EventType.UNKNOWN
    tags = {
        k: v[0] if isinstance(v, list) and v else v for k, v in mapping(mail.get("tags")).items()
    }
    template = Event(
        provider="ses",
        event_id=sns_id,
        type=kind,
        bounce=bounce,
        message_id=_header(mail.get("headers"), "message-id"),
        provider_id=text(mail.get("messageId"), 200),
        campaign=text(tags.get("campaign"), 200),
        recipient=text(tags.get("recipient"), 20),
        detail=_detail(name, detail),
        occurred_at=parse_time(detail.get("timestamp")) or parse_time(sns_time),
    )
    return [
        replace(template, event_id=f"{sns_id}:{email.lower()}"[:200], email=email)
        for email in _recipients(detail, recipients_key, mail)
    ]


def _recipients(detail: dict[str, Any], key: str, mail: dict[str, Any]) -> list[str]:
    found = detail.get(key) if key else mail.get("destination")
    if not isinstance(found, list):
        found = mail.get("destination") if isinstance(mail.get("destination"), list) else []
    emails = [
        text(mapping(r).get("emailAddress") if isinstance(r, dict) else r, 320) for r in found
    ]
    return [e for e in emails if e]


def _header(headers: Any, name: str) -> str:
    for header in headers if isinstance(headers, list) else []:
        if text(mapping(header).get("name")).lower() == name:
            return text(header.get("value"), 300)
    return ""


def _detail(name: str, detail: dict[str, Any]) -> str:
    keys = ("bounceType", "bounceSubType", "complaintFeedbackType", "smtpResponse", "link")
    parts = [name] + [text(detail.get(k), 300) for k in keys]
    for recipient in detail.get("bouncedRecipients") or []:
        parts.append(text(mapping(recipient).get("diagnosticCode"), 300))
    return " | ".join(p for p in parts if p)[:1000]


def string_to_sign(message: dict[str, Any], kind: str) -> bytes:
    lines = []
    for name in SIGNED_FIELDS[kind]:
        value = message.get(name)
        if value is None and name == "Subject":
            continue
        if not isinstance(value, str):
            raise Malformed(f"the SNS message has no {name}")
        lines.append(f"{name}\n{value}\n")
    return "".join(lines).encode("utf-8")


def sns_region(url: str) -> str | None:
    """The region of an ``https://sns.<region>.amazonaws.com/`` URL, else None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    if parts.scheme != "https" or parts.username or parts.password or port is not None:
        return None
    if parts.netloc.lower() != host or parts.fragment:
        return None
    found = SNS_HOST.match(host)
    return found.group(1) if found else None


def load_certificate(pem: bytes, now: float) -> rsa.RSAPublicKey:
    """The RSA key of a current certificate issued to SNS; Refused otherwise."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise Refused("the SNS signing certificate is not a PEM certificate") from exc
    when = dt.datetime.fromtimestamp(now, dt.UTC)
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise Refused("the SNS signing certificate is expired or not yet valid")
    if not any(CERT_NAME.match(name) for name in _names(cert)):
        raise Refused("the SNS signing certificate is not issued to sns.amazonaws.com")
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise Refused("the SNS signing certificate does not hold an RSA key")
    return key


def _names(cert: x509.Certificate) -> list[str]:
    names = [str(a.value).lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return names
    return names + [n.lower() for n in san.value.get_values_for_type(x509.DNSName)]
