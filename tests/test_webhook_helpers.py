"""Shared helpers for the webhook tests (this module holds no tests).

Test keys are made here, never real ones: an EC P-256 key for SendGrid, an RSA key and
a self-signed certificate issued to sns.amazonaws.com for SNS (served through
``responses`` at an https://sns.us-east-1.amazonaws.com/ URL), HMAC secrets for Mailgun
and Resend, basic auth credentials for Postmark. Each ``*_post`` helper signs a body
the way the provider does and posts it with the Flask test client.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import responses
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from flask import Flask
from flask.testing import FlaskClient
from helpers import RecordingProvider
from send_helpers import CONSENT

from pipeline.message_ids import MessageIds
from pipeline.send import Outcome
from pipeline.settings import Settings, load_settings
from subscribers.ledger import Ledger
from subscribers.models import NewSubscriber
from subscribers.store import Store
from subscribers.web import create_app

MAILGUN_KEY = "key-test-mailgun-webhook-signing"
RESEND_SECRET = "whsec_" + base64.b64encode(b"test resend signing secret").decode()
POSTMARK_AUTH = ("postmark-hook", "s3cret-pa55")
TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:ses-events"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem"
SUBSCRIBE_URL = (
    "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
    f"&TopicArn={TOPIC_ARN}&Token=2336412f37fb687f5d51e6e2425c464de12884a2"
)
SLUG, TOPIC = "hip-hinge", "updates"

EC_KEY = ec.generate_private_key(ec.SECP256R1())
SENDGRID_PUBLIC = base64.b64encode(
    EC_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def self_signed(key: rsa.RSAPrivateKey, name: str = "sns.amazonaws.com", days: int = 30) -> bytes:
    """A PEM certificate for ``key`` issued to ``name`` (valid from yesterday)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


SNS_CERT = self_signed(RSA_KEY)

WEBHOOK_ENV = {
    "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY,
    "RESEND_WEBHOOK_SECRET": RESEND_SECRET,
    "POSTMARK_WEBHOOK_USER": POSTMARK_AUTH[0],
    "POSTMARK_WEBHOOK_PASSWORD": POSTMARK_AUTH[1],
    "SENDGRID_WEBHOOK_PUBLIC_KEY": SENDGRID_PUBLIC,
    "SES_SNS_TOPIC_ARNS": f"{TOPIC_ARN}, arn:aws:sns:eu-west-1:123456789012:other",
}


# ---- the app and the ledger -------------------------------------------------------------


@dataclass
class Hook:
    """A web app with every webhook configured, its test client and its store."""

    app: Flask
    client: FlaskClient
    store: Store
    settings: Settings
    now: int  # the app's clock, frozen: timestamps are checked against this second


@contextlib.contextmanager
def webhook_app(project: Path, env: dict[str, str], **extra_env: str) -> Iterator[Hook]:
    """The app with its clock frozen at a whole second, so that "301 s off" is exactly
    that however slowly the test runs (requests signed "now" are a moment later)."""
    settings = load_settings(project / "newsletter.toml", env={**env, **WEBHOOK_ENV, **extra_env})
    now = int(time.time())
    app = create_app(settings, provider=RecordingProvider(), clock=lambda: float(now))
    services = app.extensions["newsletter"]
    try:
        yield Hook(app, app.test_client(), services.store, services.settings, now)
    finally:
        services.store.close()


@dataclass(frozen=True)
class Sent:
    """One recipient of the test campaign."""

    email: str
    subscriber_id: int
    message_id: str  # our Message-ID
    provider_id: str  # what the provider answered (the ledger's provider_id)


def sent_campaign(
    store: Store, settings: Settings, emails: list[str], provider: str, provider_ids: list[str]
) -> dict[str, Sent]:
    """Confirmed subscribers of ``updates``, mailed the hip-hinge campaign via ``provider``."""
    rows = [NewSubscriber(e, "", (TOPIC,), line=i) for i, e in enumerate(emails)]
    ids = {
        r.row.email: r.subscriber_id for r in store.add_many(rows, confirmed=True, consent=CONSENT)
    }
    ledger = Ledger(store)
    campaign, _ = ledger.open_campaign(
        slug=SLUG, topic=TOPIC, subject="Hinge", content_hash="x", provider=provider
    )
    claimed = ledger.claim(campaign.id, 1000, TOPIC)
    assert claimed is not None
    pid = dict(zip(emails, provider_ids, strict=True))
    by_id = {ids[e]: e for e in emails}
    outcomes = [Outcome(sid, "sent", pid[by_id[sid]]) for sid, *_ in claimed.rows]
    ledger.record(campaign.id, claimed.claim, outcomes)
    message_ids = MessageIds(settings.secret_key(), settings.site_domain)
    return {e: Sent(e, ids[e], message_ids.make(SLUG, TOPIC, ids[e]), pid[e]) for e in emails}


def event_rows(store: Store) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    from subscribers import schema

    t = schema.delivery_events
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(t).order_by(t.c.id))]


def types_of(store: Store) -> list[str]:
    return [r["type"] for r in event_rows(store)]


# ---- signing like the providers do ---------------------------------------------------------


def postmark_post(client: FlaskClient, record: Any, auth: tuple[str, str] = POSTMARK_AUTH) -> Any:
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    return client.post(
        "/webhooks/postmark",
        data=json.dumps(record),
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
    )


def sendgrid_post(
    client: FlaskClient,
    events: Any,
    *,
    key: ec.EllipticCurvePrivateKey = EC_KEY,
    timestamp: int | str | None = None,
    body: bytes | None = None,
) -> Any:
    raw = body if body is not None else json.dumps(events).encode()
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(stamp.encode() + raw, ec.ECDSA(hashes.SHA256()))
    headers = {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
    }
    return client.post("/webhooks/sendgrid", data=raw, headers=headers)


def mailgun_signature(timestamp: str, token: str, key: str = MAILGUN_KEY) -> str:
    return hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()


def mailgun_body(
    event_data: dict[str, Any],
    *,
    key: str = MAILGUN_KEY,
    timestamp: int | str | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    token = token or uuid.uuid4().hex + uuid.uuid4().hex[:18]
    signature = {
        "timestamp": stamp,
        "token": token,
        "signature": mailgun_signature(stamp, token, key),
    }
    return {"signature": signature, "event-data": event_data}


def mailgun_post(client: FlaskClient, body: dict[str, Any]) -> Any:
    return client.post("/webhooks/mailgun", data=json.dumps(body), content_type="application/json")


def svix_headers(
    body: bytes,
    *,
    secret: str = RESEND_SECRET,
    msg_id: str | None = None,
    timestamp: int | str | None = None,
) -> dict[str, str]:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex[:27]}"
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    signature = base64.b64encode(digest).decode()
    return {
        "svix-id": msg_id,
        "svix-timestamp": stamp,
        "svix-signature": f"v1,{base64.b64encode(b'old-secret-signature').decode()} v1,{signature}",
        "Content-Type": "application/json",
    }


def resend_post(client: FlaskClient, event: Any, **signing: Any) -> Any:
    raw = json.dumps(event).encode()
    return client.post("/webhooks/resend", data=raw, headers=svix_headers(raw, **signing))


def sns_envelope(
    message: str,
    *,
    kind: str = "Notification",
    topic: str = TOPIC_ARN,
    cert_url: str = CERT_URL,
    version: str = "2",
    key: rsa.RSAPrivateKey = RSA_KEY,
    timestamp: dt.datetime | str | None = None,
    message_id: str | None = None,
    subscribe_url: str = SUBSCRIBE_URL,
) -> dict[str, Any]:
    """An SNS message as SNS posts it, signed with ``key`` (SignatureVersion 1 or 2)."""
    when = timestamp or dt.datetime.now(dt.UTC)
    stamp = when if isinstance(when, str) else when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    envelope: dict[str, Any] = {
        "Type": kind,
        "MessageId": message_id or str(uuid.uuid4()),
        "TopicArn": topic,
        "Message": message,
        "Timestamp": stamp,
        "SignatureVersion": version,
        "SigningCertURL": cert_url,
    }
    if kind == "Notification":
        envelope["UnsubscribeURL"] = (
            f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={topic}:x"
        )
        fields = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
    else:
        envelope["Token"] = "2336412f37fb687f5d51e6e2425c464de12884a2"
        envelope["SubscribeURL"] = subscribe_url
        fields = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
    signed = "".join(f"{f}\n{envelope[f]}\n" for f in fields if f in envelope).encode()
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # SNS v1 is SHA1withRSA
    envelope["Signature"] = base64.b64encode(
        key.sign(signed, padding.PKCS1v15(), algorithm)
    ).decode()
    return envelope


def sns_post(client: FlaskClient, envelope: dict[str, Any], *, header: str | None = None) -> Any:
    headers = {
        "x-amz-sns-message-type": header or envelope["Type"],
        "x-amz-sns-message-id": envelope["MessageId"],
        "x-amz-sns-topic-arn": envelope["TopicArn"],
        "Content-Type": "text/plain; charset=UTF-8",
    }
    return client.post("/webhooks/ses", data=json.dumps(envelope), headers=headers)


@contextlib.contextmanager
def aws_mock() -> Iterator[responses.RequestsMock]:
    """SNS's certificate served by ``responses``; any other outgoing request fails."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(CERT_URL, body=SNS_CERT, content_type="application/x-x509-ca-cert")
        yield mock
