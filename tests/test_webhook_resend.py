"""Resend webhooks (Svix signatures): documented example events against the store.

The events are Resend's examples (resend.com/docs/webhooks, and as used in
django-anymail's tests) with ``to``, ``email_id`` and our tags pointed at our campaign.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import snapshot
from test_webhook_helpers import (
    Hook,
    event_rows,
    resend_post,
    sent_campaign,
    types_of,
    webhook_app,
)

DELIVERED = {
    "type": "email.delivered",
    "created_at": "2024-02-22T23:41:12.126Z",
    "data": {
        "created_at": "2024-02-22T23:41:11.894719+00:00",
        "email_id": "56761188-7520-42d8-8898-ff6fc54ce618",
        "from": "Acme <onboarding@resend.dev>",
        "to": ["delivered@resend.dev"],
        "subject": "Sending this example",
    },
}

BOUNCED = {
    "type": "email.bounced",
    "created_at": "2024-11-22T23:41:12.126Z",
    "data": {
        "broadcast_id": "8b146471-e88e-4322-86af-016cd36fd216",
        "created_at": "2024-11-22T23:41:11.894719+00:00",
        "email_id": "56761188-7520-42d8-8898-ff6fc54ce618",
        "from": "Acme <onboarding@resend.dev>",
        "to": ["delivered@resend.dev"],
        "subject": "Sending this example",
        "bounce": {
            "message": (
                "The recipient's email address is on the suppression list because it has a"
                " history of producing hard bounces."
            ),
            "subType": "Suppressed",
            "type": "Permanent",
        },
        "tags": {"category": "confirm_email"},
    },
}

COMPLAINED = {
    "type": "email.complained",
    "created_at": "2023-10-02T18:10:03.690Z",
    "data": {
        "created_at": "2023-10-02T18:10:03.241Z",
        "email_id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "from": "Sender <from@example.com>",
        "subject": "Sending test",
        "to": ["complained@resend.dev"],
    },
}

OPENED = {
    "type": "email.opened",
    "created_at": "2023-09-28T17:20:38.990Z",
    "data": {
        "created_at": "2023-09-28T17:19:43.982Z",
        "email_id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "from": "Sender <from@example.com>",
        "subject": "Sending test",
        "to": ["to@example.org"],
    },
}

CLICKED = {
    "type": "email.clicked",
    "created_at": "2024-11-22T23:41:12.126Z",
    "data": {
        "created_at": "2024-11-22T23:41:11.894719+00:00",
        "email_id": "56761188-7520-42d8-8898-ff6fc54ce618",
        "from": "Acme <onboarding@resend.dev>",
        "to": ["delivered@resend.dev"],
        "click": {
            "ipAddress": "122.115.53.11",
            "link": "https://resend.com",
            "timestamp": "2024-11-24T05:00:57.163Z",
            "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36",
        },
        "subject": "Sending this example",
    },
}

DELAYED = {
    "type": "email.delivery_delayed",
    "created_at": "2023-02-22T23:41:12.126Z",
    "data": {
        "created_at": "2023-02-22T23:41:11.894719+00:00",
        "email_id": "56761188-7520-42d8-8898-ff6fc54ce618",
        "from": "Acme <onboarding@resend.dev>",
        "to": ["delivered@resend.dev"],
        "subject": "Sending this example",
    },
}

EMAILS = ["ann@example.com", "bob@example.com", "cy@example.com"]
PIDS = ["re-ann-0001", "re-bob-0002", "re-cy-0003"]


@pytest.fixture
def hook(project: Path, test_env: dict[str, str]) -> Iterator[Hook]:
    with webhook_app(project, test_env) as hook:
        yield hook


@pytest.fixture
def sent(hook: Hook) -> dict:
    return sent_campaign(hook.store, hook.settings, EMAILS, "resend", PIDS)


def for_recipient(example: dict, sent: dict, email: str, *, tags_as_list: bool = False) -> dict:
    event = copy.deepcopy(example)
    r = sent[email]
    event["data"]["to"] = [f"Reader <{email}>"]
    event["data"]["email_id"] = r.provider_id
    tags = {"tag": "hip-hinge", "campaign": "hip-hinge", "recipient": str(r.subscriber_id)}
    event["data"]["tags"] = (
        [{"name": k, "value": v} for k, v in tags.items()] if tags_as_list else tags
    )
    return event


def test_documented_events_for_our_recipients(hook: Hook, sent: dict) -> None:
    posts = [
        for_recipient(DELIVERED, sent, "ann@example.com"),
        for_recipient(DELAYED, sent, "ann@example.com"),
        for_recipient(OPENED, sent, "ann@example.com", tags_as_list=True),
        for_recipient(CLICKED, sent, "ann@example.com"),
        for_recipient(BOUNCED, sent, "bob@example.com"),
        for_recipient(COMPLAINED, sent, "cy@example.com", tags_as_list=True),
    ]
    for event in posts:
        resp = resend_post(hook.client, event)
        assert resp.status_code == 200 and resp.json == {"received": 1, "recorded": 1}
    assert types_of(hook.store) == [
        "delivered",
        "deferred",
        "opened",
        "clicked",
        "bounced",
        "complained",
    ]
    assert hook.store.find("bob@example.com").status == "bounced"
    assert hook.store.find("cy@example.com").status == "complained"
    assert hook.store.find("ann@example.com").status == "active"
    rows = event_rows(hook.store)
    assert all(r["campaign_id"] is not None for r in rows)
    assert rows[3]["detail"] == "https://resend.com"
    assert "Permanent | Suppressed" in rows[4]["detail"]


def test_the_email_id_alone_ties_the_event(hook: Hook, sent: dict) -> None:
    event = copy.deepcopy(BOUNCED)
    event["data"]["email_id"] = sent["bob@example.com"].provider_id
    del event["data"]["tags"]
    event["data"]["to"] = ["bob@example.com"]
    assert resend_post(hook.client, event).status_code == 200
    [row] = event_rows(hook.store)
    assert row["subscriber_id"] == sent["bob@example.com"].subscriber_id
    assert row["campaign_id"] is not None


def test_a_transient_bounce_is_soft(hook: Hook, sent: dict) -> None:
    event = for_recipient(BOUNCED, sent, "ann@example.com")
    event["data"]["bounce"] = {
        "message": "Mailbox full",
        "subType": "MailboxFull",
        "type": "Transient",
    }
    assert resend_post(hook.client, event).status_code == 200
    assert [(r["type"], r["bounce"]) for r in event_rows(hook.store)] == [("bounced", "soft")]
    assert hook.store.suppression_reason("ann@example.com") is None


def test_a_retry_carries_the_same_svix_id_and_counts_once(hook: Hook, sent: dict) -> None:
    event = for_recipient(COMPLAINED, sent, "cy@example.com")
    assert (
        resend_post(hook.client, event, msg_id="msg_2W2D3qXLS5fOaPja1GDg7rF2CwB").status_code == 200
    )
    before = snapshot(hook.store)
    again = resend_post(hook.client, event, msg_id="msg_2W2D3qXLS5fOaPja1GDg7rF2CwB")
    assert again.status_code == 200 and again.json["recorded"] == 0
    assert snapshot(hook.store) == before
