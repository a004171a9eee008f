"""Mailgun webhooks: documented example event data, signed with a test HMAC key.

The event-data records are Mailgun's examples (documentation.mailgun.com, Webhook
Payloads, and as used in django-anymail's tests) with our ``v:`` variables in
``user-variables`` and the recipients pointed at our test campaign.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import snapshot
from test_webhook_helpers import (
    Hook,
    event_rows,
    mailgun_body,
    mailgun_post,
    sent_campaign,
    types_of,
    webhook_app,
)

DELIVERED = {
    "tags": [],
    "timestamp": 1534108637.153125,
    "storage": {
        "url": "https://sw.api.mailgun.net/v3/domains/example.org/messages/eyJwI...",
        "key": "eyJwI...",
    },
    "recipient-domain": "example.com",
    "id": "hTWCTD81RtiDN-fDuzQGqQ",
    "campaigns": [],
    "user-variables": {},
    "flags": {"is-routed": False, "is-authenticated": True, "is-test-mode": False},
    "log-level": "info",
    "envelope": {
        "sending-ip": "333.123.123.200",
        "sender": "test@example.org",
        "transport": "smtp",
        "targets": "recipient@example.com",
    },
    "message": {
        "headers": {
            "to": "recipient@example.com",
            "message-id": "20180812211713.1.DF5966851B4BAA99@example.org",
            "from": "test@example.org",
            "subject": "Testing",
        },
        "attachments": [],
        "size": 809,
    },
    "recipient": "recipient@example.com",
    "event": "delivered",
    "delivery-status": {
        "tls": True,
        "mx-host": "smtp-in.example.com",
        "attempt-no": 1,
        "description": "",
        "session-seconds": 3.5700838565826416,
        "utf8": True,
        "code": 250,
        "message": "OK",
        "certificate-verified": True,
    },
}

FAILED_PERMANENT = {
    "event": "failed",
    "id": "G9Bn5sl1TC6nu79C8C0bwg",
    "severity": "permanent",
    "reason": "bounce",
    "recipient": "invalid@example.com",
    "timestamp": 1534110422.389832,
    "log-level": "error",
    "message": {
        "headers": {
            "to": "invalid@example.com",
            "message-id": "20180812214658.1.0DF563D0B3597700@example.org",
            "from": "Test Sender <test@example.org>",
        },
    },
    "delivery-status": {
        "tls": True,
        "mx-host": "aspmx.l.example.org",
        "attempt-no": 1,
        "description": "",
        "session-seconds": 2.952177047729492,
        "utf8": True,
        "code": 550,
        "message": "5.1.1 The email account that you tried to reach does not exist.",
        "certificate-verified": True,
    },
}

FAILED_TEMPORARY = {
    "event": "failed",
    "id": "Fs7-5t81S2ms-K4jvXDSnA",
    "severity": "temporary",
    "reason": "generic",
    "timestamp": 1534111899.659519,
    "log-level": "warn",
    "message": {
        "headers": {
            "to": "undeliverable@nomx.example.com",
            "message-id": "20180812214638.1.4A7D468E9BC18C5D@example.org",
            "from": "Test Sender <test@example.org>",
            "subject": "Testing",
        },
    },
    "recipient": "undeliverable@nomx.example.com",
    "delivery-status": {
        "attempt-no": 3,
        "description": "No MX for nomx.example.com",
        "session-seconds": 0.0,
        "retry-seconds": 1800,
        "code": 498,
        "message": "No MX for nomx.example.com",
    },
}

COMPLAINED = {
    "id": "ncV2XwymRUKbPek_MIM-Gw",
    "timestamp": 1377214260.049634,
    "log-level": "warn",
    "event": "complained",
    "envelope": {"sending-ip": "173.193.210.33"},
    "flags": {"is-test-mode": False},
    "message": {
        "headers": {
            "to": "foo@example.com",
            "message-id": "20130718032413.263EE2E0926@example.com",
            "from": "John Doe <sender@example.com>",
            "subject": "This is the subject.",
        },
        "attachments": [],
        "size": 18937,
    },
    "recipient": "foo@example.com",
    "campaigns": [],
    "user-variables": {},
}

UNSUBSCRIBED = {
    "id": "W3X4JOhFT-OZidZGKKr9iA",
    "timestamp": 1377213791.421473,
    "log-level": "info",
    "event": "unsubscribed",
    "recipient": "recipient@example.com",
    "geolocation": {"country": "US", "region": "CA", "city": "San Francisco"},
    "tags": [],
    "campaigns": [],
    "user-variables": {},
    "ip": "23.23.23.345",
    "client-info": {"client-type": "browser", "client-os": "OS X", "device-type": "desktop"},
    "message": {"headers": {"message-id": "20130822232216.13966.79700@samples.mailgun.org"}},
}

OPENED = {
    "id": "-laxIqj9QWubsjY_3pTq_g",
    "timestamp": 1377047343.042277,
    "log-level": "info",
    "event": "opened",
    "recipient": "recipient@example.com",
    "geolocation": {"country": "US", "region": "Texas", "city": "Austin"},
    "tags": [],
    "campaigns": [],
    "user-variables": {},
    "ip": "111.111.111.111",
    "client-info": {"client-type": "mobile browser", "client-os": "iOS", "device-type": "mobile"},
    "message": {"headers": {"message-id": "20130821005614.19826.35976@samples.mailgun.org"}},
}

CLICKED = {
    **copy.deepcopy(OPENED),
    "id": "Ase7i2zsRYeDXztHGENqRA",
    "timestamp": 1377075564.094891,
    "event": "clicked",
    "url": "http://google.com",
}

EMAILS = ["ann@example.com", "bob@example.com", "cy@example.com", "dee@example.com"]


@pytest.fixture
def hook(project: Path, test_env: dict[str, str]) -> Iterator[Hook]:
    with webhook_app(project, test_env) as hook:
        yield hook


@pytest.fixture
def sent(hook: Hook) -> dict:
    pid = "<20180812211713.1.DF5966851B4BAA99@example.org>"
    return sent_campaign(hook.store, hook.settings, EMAILS, "mailgun", [pid] * len(EMAILS))


def for_recipient(example: dict, sent: dict, email: str) -> dict:
    """The example for one of our recipients, carrying our v: variables as Mailgun does."""
    data = copy.deepcopy(example)
    r = sent[email]
    data["recipient"] = email
    data["user-variables"] = {
        "message_id": r.message_id,
        "campaign": "hip-hinge",
        "recipient": str(r.subscriber_id),
    }
    data.setdefault("message", {}).setdefault("headers", {})["message-id"] = r.message_id.strip(
        "<>"
    )
    return data


def test_documented_events_for_our_recipients(hook: Hook, sent: dict) -> None:
    posts = [
        (DELIVERED, "ann@example.com"),
        (FAILED_PERMANENT, "bob@example.com"),
        (FAILED_TEMPORARY, "ann@example.com"),
        (COMPLAINED, "cy@example.com"),
        (UNSUBSCRIBED, "dee@example.com"),
        (OPENED, "ann@example.com"),
        (CLICKED, "ann@example.com"),
    ]
    for example, email in posts:
        resp = mailgun_post(hook.client, mailgun_body(for_recipient(example, sent, email)))
        assert resp.status_code == 200 and resp.json == {"received": 1, "recorded": 1}
    assert types_of(hook.store) == [
        "delivered",
        "bounced",
        "deferred",
        "complained",
        "unsubscribed",
        "opened",
        "clicked",
    ]
    assert hook.store.find("bob@example.com").status == "bounced"
    assert hook.store.find("cy@example.com").status == "complained"
    assert hook.store.find("dee@example.com").status == "unsubscribed"
    assert hook.store.find("ann@example.com").status == "active"
    rows = event_rows(hook.store)
    assert {r["subscriber_id"] for r in rows} == {s.subscriber_id for s in sent.values()}
    assert "550" in rows[1]["detail"] and "does not exist" in rows[1]["detail"]


def test_the_message_id_header_alone_ties_the_event(hook: Hook, sent: dict) -> None:
    data = copy.deepcopy(FAILED_PERMANENT)
    data["recipient"] = "bob@example.com"
    data["message"]["headers"]["message-id"] = sent["bob@example.com"].message_id.strip("<>")
    assert mailgun_post(hook.client, mailgun_body(data)).status_code == 200
    [row] = event_rows(hook.store)
    assert row["subscriber_id"] == sent["bob@example.com"].subscriber_id
    assert row["campaign_id"] is not None


def test_giving_up_after_retries_is_a_soft_bounce(hook: Hook, sent: dict) -> None:
    for n in range(3):
        data = for_recipient(FAILED_PERMANENT, sent, "ann@example.com")
        data.update(id=f"old-{n}", reason="old", timestamp=time.time() + n)
        assert mailgun_post(hook.client, mailgun_body(data)).status_code == 200
    rows = event_rows(hook.store)
    assert [(r["type"], r["bounce"]) for r in rows] == [("bounced", "soft")] * 3
    assert hook.store.suppression_reason("ann@example.com") == "bounced"  # the third one


def test_the_same_event_with_a_fresh_signature_counts_once(hook: Hook, sent: dict) -> None:
    data = for_recipient(COMPLAINED, sent, "cy@example.com")
    assert mailgun_post(hook.client, mailgun_body(data)).json["recorded"] == 1
    before = snapshot(hook.store)
    again = mailgun_post(hook.client, mailgun_body(data))  # a retry: new token, same event
    assert again.status_code == 200 and again.json == {"received": 1, "recorded": 0}
    after = snapshot(hook.store)
    assert after["delivery_events"] == before["delivery_events"]
    assert len(after["webhook_tokens"]) == 2


# ---- the HMAC check, on the parser itself (the second, independent guard) ------------------


class TestSignature:
    """``hex(HMAC-SHA256(signing key, timestamp + token))``, as Mailgun's "Securing
    Webhooks" documents it, computed here from scratch: only that exact signature over
    that exact timestamp and token is accepted."""

    KEY = "key-0123456789abcdef-signing"
    NOW = 1_770_920_772

    def parser(self) -> object:
        from pipeline.providers.mailgun_events import MailgunWebhook

        return MailgunWebhook(signing_key=self.KEY, window=300)

    def request(self, signature: dict[str, str]) -> object:
        import json

        from pipeline.providers.webhook_events import WebhookRequest

        body = {"signature": signature, "event-data": {"event": "delivered", "id": "e1"}}
        return WebhookRequest(
            body=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
            received_at=float(self.NOW),
        )

    def signed(self, timestamp: str, token: str, key: str | None = None) -> dict[str, str]:
        import hashlib
        import hmac

        digest = hmac.new(
            (key or self.KEY).encode(), (timestamp + token).encode(), hashlib.sha256
        ).hexdigest()
        return {"timestamp": timestamp, "token": token, "signature": digest}

    def test_the_documented_signature_verifies(self) -> None:
        token = "e0b5477167110d68991efc6b9f89f0a11066af27834600e123"
        parsed = self.parser().parse(self.request(self.signed(str(self.NOW), token)))
        assert parsed.replay_token == token and parsed.events[0].type == "delivered"

    @pytest.mark.parametrize(
        "change",
        ["other token", "other timestamp", "token+timestamp order", "api key", "truncated", "none"],
    )
    def test_anything_else_is_401(self, change: str) -> None:
        from pipeline.providers.webhook_events import Unauthenticated

        stamp, token = str(self.NOW), "e0b5477167110d68991efc6b9f89f0a11066af27834600e123"
        block = self.signed(stamp, token)
        if change == "other token":
            block["token"] = token[:-1] + "4"
        elif change == "other timestamp":
            block["timestamp"] = str(self.NOW + 1)
        elif change == "token+timestamp order":
            block["signature"] = self.signed(token, stamp)["signature"]
        elif change == "api key":
            block = self.signed(stamp, token, key="key-the-private-api-key")
        elif change == "truncated":
            block["signature"] = block["signature"][:-1]
        else:
            block["signature"] = ""
        with pytest.raises(Unauthenticated) as caught:
            self.parser().parse(self.request(block))
        assert caught.value.status == 401
