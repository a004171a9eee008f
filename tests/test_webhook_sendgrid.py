"""SendGrid's signed Event Webhook: documented example events, signed with a test P-256 key.

The events are SendGrid's examples (Event Webhook Reference, and as used in
django-anymail's tests) with our ``custom_args`` merged in, as SendGrid does.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from test_webhook_helpers import (
    EC_KEY,
    Hook,
    event_rows,
    sendgrid_post,
    sent_campaign,
    types_of,
    webhook_app,
)

# X-Message-Id of the batch, as SendGrid answered the send (the ledger's provider_id).
BATCH = "wrfRRvF7Q0GgwUo2CvDmEA"
EMAILS = ["ann@example.com", "bob@example.com", "cy@example.com", "dee@example.com"]


def events(sent: dict) -> list[dict]:
    """SendGrid's documented examples, one of each kind, for our recipients."""

    def ours(email: str) -> dict:
        r = sent[email]
        return {
            "message_id": r.message_id,
            "campaign": "hip-hinge",
            "recipient": str(r.subscriber_id),
        }

    return [
        {
            "email": "ann@example.com",
            "timestamp": 1513299569,
            "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
            "event": "processed",
            "category": "cat facts",
            "sg_event_id": "rbtnWrG1DVDGGGFHFyun0A==",
            "sg_message_id": f"{BATCH}.filter0001.16648.5515E0B88.000000000000000000000",
            **ours("ann@example.com"),
        },
        {
            "email": "ann@example.com",
            "timestamp": 1513299569,
            "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
            "event": "delivered",
            "category": "cat facts",
            "sg_event_id": "rWVYmVk90MjZJ9iohOBa3w==",
            "sg_message_id": f"{BATCH}.filter0001.16648.5515E0B88.000000000000000000000",
            "response": "250 OK",
            **ours("ann@example.com"),
        },
        {
            "email": "bob@example.com",
            "timestamp": 1513299569,
            "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
            "event": "bounce",
            "category": "cat facts",
            "sg_event_id": "6g4ZI7SA-xmRDv57GoPIPw==",
            "sg_message_id": f"{BATCH}.filter0001.16648.5515E0B88.000000000000000000000",
            "reason": "500 unknown recipient",
            "status": "5.0.0",
            "type": "bounce",
            **ours("bob@example.com"),
        },
        {
            "email": "cy@example.com",
            "timestamp": 1513299569,
            "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
            "event": "spamreport",
            "category": "cat facts",
            "sg_event_id": "37nvH5QBz858KGVYCM4uOA==",
            "sg_message_id": f"{BATCH}.filter0001.16648.5515E0B88.000000000000000000000",
            **ours("cy@example.com"),
        },
        {
            "email": "dee@example.com",
            "timestamp": 1513299569,
            "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
            "event": "unsubscribe",
            "category": "cat facts",
            "sg_event_id": "zz_BjPgU_5pS-J8vlfB1sg==",
            "sg_message_id": f"{BATCH}.filter0001.16648.5515E0B88.000000000000000000000",
            **ours("dee@example.com"),
        },
        {
            "email": "ann@example.com",
            "timestamp": 1513299569,
            "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
            "event": "open",
            "sg_machine_open": False,
            "category": "cat facts",
            "sg_event_id": "FOTFFO0ecsBE-zxFXfs6WA==",
            "sg_message_id": f"{BATCH}.filter0001.16648.5515E0B88.000000000000000000000",
            "useragent": "Mozilla/4.0 (compatible; MSIE 6.1; Windows XP; .NET CLR 1.1.4322)",
            "ip": "255.255.255.255",
            **ours("ann@example.com"),
        },
        {
            "email": "ann@example.com",
            "timestamp": 1513299569,
            "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
            "event": "click",
            "category": "cat facts",
            "sg_event_id": "kCAi1KttyQdEKHhdC-nuEA==",
            "sg_message_id": f"{BATCH}.filter0001.16648.5515E0B88.000000000000000000000",
            "useragent": "Mozilla/4.0 (compatible; MSIE 6.1; Windows XP; .NET CLR 1.1.4322)",
            "ip": "255.255.255.255",
            "url": "http://www.sendgrid.com/",
            **ours("ann@example.com"),
        },
    ]


@pytest.fixture
def hook(project: Path, test_env: dict[str, str]) -> Iterator[Hook]:
    with webhook_app(project, test_env) as hook:
        yield hook


@pytest.fixture
def sent(hook: Hook) -> dict:
    return sent_campaign(hook.store, hook.settings, EMAILS, "sendgrid", [BATCH] * len(EMAILS))


def test_a_signed_batch_of_documented_events(hook: Hook, sent: dict) -> None:
    resp = sendgrid_post(hook.client, events(sent))
    assert resp.status_code == 200 and resp.json == {"received": 7, "recorded": 7}
    assert types_of(hook.store) == [
        "unknown",  # processed
        "delivered",
        "bounced",
        "complained",
        "unsubscribed",
        "opened",
        "clicked",
    ]
    assert hook.store.find("bob@example.com").status == "bounced"
    assert hook.store.suppression_reason("bob@example.com") == "bounced"
    assert hook.store.find("cy@example.com").status == "complained"
    assert hook.store.find("dee@example.com").status == "unsubscribed"
    assert hook.store.find("ann@example.com").status == "active"
    rows = event_rows(hook.store)
    assert all(r["campaign_id"] is not None for r in rows)
    assert rows[2]["bounce"] == "hard" and "500 unknown recipient" in rows[2]["detail"]


def test_a_retried_batch_counts_once(hook: Hook, sent: dict) -> None:
    sendgrid_post(hook.client, events(sent))
    again = sendgrid_post(hook.client, events(sent))
    assert again.status_code == 200 and again.json == {"received": 7, "recorded": 0}
    assert len(event_rows(hook.store)) == 7


def test_blocked_is_a_soft_bounce_and_dropped_reasons_map(hook: Hook, sent: dict) -> None:
    blocked = {
        "email": "ann@example.com",
        "timestamp": 1513299569,
        "event": "bounce",
        "sg_event_id": "blocked-1",
        "sg_message_id": f"{BATCH}.filter0001",
        "reason": "550 blocked by policy",
        "type": "blocked",
    }
    dropped = {
        "email": "bob@example.com",
        "timestamp": 1513299569,
        "event": "dropped",
        "sg_event_id": "dropped-1",
        "sg_message_id": f"{BATCH}.filter0001",
        "reason": "Bounced Address",
    }
    assert sendgrid_post(hook.client, [blocked, dropped]).status_code == 200
    rows = event_rows(hook.store)
    assert [(r["type"], r["bounce"]) for r in rows] == [("bounced", "soft"), ("bounced", "hard")]
    assert hook.store.suppression_reason("ann@example.com") is None  # 1 soft bounce of 3
    assert hook.store.suppression_reason("bob@example.com") == "bounced"
    # No custom_args: tied to the delivery by the batch id and the address.
    assert rows[0]["subscriber_id"] == sent["ann@example.com"].subscriber_id
    assert rows[0]["campaign_id"] is not None


def test_the_verification_key_may_be_given_as_pem(project: Path, test_env: dict[str, str]) -> None:
    pem = (
        EC_KEY.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with webhook_app(project, test_env, SENDGRID_WEBHOOK_PUBLIC_KEY=pem) as hook:
        resp = sendgrid_post(hook.client, [{"event": "delivered", "email": "x@example.com"}])
        assert resp.status_code == 200 and resp.json["recorded"] == 1


def test_a_key_that_is_not_a_public_key_is_a_configuration_error(
    project: Path, test_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    bad = base64.b64encode(b"not a key").decode()
    with webhook_app(project, test_env, SENDGRID_WEBHOOK_PUBLIC_KEY=bad) as hook:
        resp = sendgrid_post(hook.client, [])
    assert resp.status_code == 403
    assert "SENDGRID_WEBHOOK_PUBLIC_KEY is not a valid public key" in caplog.text
