"""Postmark webhooks: Postmark's documented example records, checked against the store.

The records are Postmark's examples (postmarkapp.com/developer/webhooks/*, as also used
in django-anymail's tests) with the recipient and ids pointed at our test campaign.
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
    postmark_post,
    sent_campaign,
    types_of,
    webhook_app,
)

# Postmark's "Bounce webhook" example (with RecordType and MessageStream, as sent today).
BOUNCE = {
    "RecordType": "Bounce",
    "MessageStream": "outbound",
    "ID": 4323372036854775807,
    "Type": "HardBounce",
    "TypeCode": 1,
    "Name": "Hard bounce",
    "Tag": "Test",
    "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
    "Metadata": {"a_key": "a_value", "b_key": "b_value"},
    "ServerID": 23,
    "Description": (
        "The server was unable to deliver your message (ex: unknown user, mailbox not found)."
    ),
    "Details": "Test bounce details",
    "Email": "john@example.com",
    "From": "sender@example.com",
    "BouncedAt": "2019-11-05T16:33:54.9070259Z",
    "DumpAvailable": True,
    "Inactive": True,
    "CanActivate": True,
    "Subject": "Test subject",
    "Content": "<Full dump of bounce>",
}

# "Spam complaint webhook" example.
SPAM = {
    "RecordType": "SpamComplaint",
    "MessageStream": "outbound",
    "ID": 42,
    "Type": "SpamComplaint",
    "TypeCode": 512,
    "Name": "Spam complaint",
    "Tag": "Test",
    "MessageID": "00000000-0000-0000-0000-000000000000",
    "Metadata": {"a_key": "a_value", "b_key": "b_value"},
    "ServerID": 1234,
    "Description": "",
    "Details": "Test spam complaint details",
    "Email": "john@example.com",
    "From": "sender@example.com",
    "BouncedAt": "2019-11-05T16:33:54.9070259Z",
    "DumpAvailable": True,
    "Inactive": True,
    "CanActivate": False,
    "Subject": "Test subject",
    "Content": "<Abuse report dump>",
}

# "Subscription change webhook" example: how broadcast streams report bounces/complaints.
SUBSCRIPTION_CHANGE = {
    "RecordType": "SubscriptionChange",
    "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
    "ServerID": 123456,
    "MessageStream": "outbound",
    "ChangedAt": "2020-02-01T10:53:34.416071Z",
    "Recipient": "bounced-address@wildbit.com",
    "Origin": "Recipient",
    "SuppressSending": True,
    "SuppressionReason": "HardBounce",
    "Tag": "my-tag",
    "Metadata": {"example": "value", "example_2": "value"},
}

DELIVERY = {
    "RecordType": "Delivery",
    "ServerID": 23,
    "MessageStream": "outbound",
    "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
    "Recipient": "john@example.com",
    "Tag": "welcome-email",
    "DeliveredAt": "2019-11-05T16:33:54.9070259Z",
    "Details": "Test delivery webhook details",
    "Metadata": {"a_key": "a_value", "b_key": "b_value"},
}

OPEN = {
    "RecordType": "Open",
    "MessageStream": "outbound",
    "FirstOpen": True,
    "Client": {"Name": "Chrome 35.0.1916.153", "Company": "Google", "Family": "Chrome"},
    "OS": {"Name": "OS X 10.7 Lion", "Company": "Apple Computer, Inc.", "Family": "OS X 10"},
    "Platform": "WebMail",
    "UserAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_7_5) AppleWebKit/537.36",
    "ReadSeconds": 5,
    "Geo": {"CountryISOCode": "RS", "Country": "Serbia", "City": "Novi Sad"},
    "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
    "Metadata": {"a_key": "a_value", "b_key": "b_value"},
    "ReceivedAt": "2019-11-05T16:33:54.9070259Z",
    "Tag": "welcome-email",
    "Recipient": "john@example.com",
}

CLICK = {
    "RecordType": "Click",
    "MessageStream": "outbound",
    "ClickLocation": "HTML",
    "Client": {"Name": "Chrome 35.0.1916.153", "Company": "Google", "Family": "Chrome"},
    "OS": {"Name": "OS X 10.7 Lion", "Company": "Apple Computer, Inc.", "Family": "OS X 10"},
    "Platform": "Desktop",
    "UserAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_7_5) AppleWebKit/537.36",
    "OriginalLink": "https://example.com",
    "Geo": {"CountryISOCode": "RS", "Country": "Serbia", "City": "Novi Sad"},
    "MessageID": "00000000-0000-0000-0000-000000000000",
    "ReceivedAt": "2017-10-25T15:21:11.9065619Z",
    "Metadata": {"a_key": "a_value", "b_key": "b_value"},
    "Tag": "welcome-email",
    "Recipient": "john@example.com",
}

EMAILS = ["ann@example.com", "bob@example.com", "cy@example.com"]
PIDS = ["883953f4-6105-42a2-a16a-77a8eac79483", "00000000-0000-0000-0000-000000000000", "pm-3"]


@pytest.fixture
def hook(project: Path, test_env: dict[str, str]) -> Iterator[Hook]:
    with webhook_app(project, test_env) as hook:
        yield hook


@pytest.fixture
def sent(hook: Hook) -> dict:
    return sent_campaign(hook.store, hook.settings, EMAILS, "postmark", PIDS)


def record(example: dict, **changes: object) -> dict:
    found = copy.deepcopy(example)
    found.update(changes)
    return found


def test_a_hard_bounce_suppresses_and_marks_the_subscriber(hook: Hook, sent: dict) -> None:
    # Tied to the delivery through the ledger's provider id (Postmark's MessageID).
    resp = postmark_post(hook.client, record(BOUNCE, Email="ann@example.com"))
    assert resp.status_code == 200 and resp.json == {"received": 1, "recorded": 1}
    assert hook.store.suppression_reason("ann@example.com") == "bounced"
    assert hook.store.find("ann@example.com").status == "bounced"
    [row] = event_rows(hook.store)
    assert (row["type"], row["bounce"], row["provider_event_id"]) == (
        "bounced",
        "hard",
        "Bounce:4323372036854775807",
    )
    assert row["subscriber_id"] == sent["ann@example.com"].subscriber_id
    assert row["campaign_id"] is not None
    assert "unable to deliver" in row["detail"]


def test_a_spam_complaint_suppresses_as_complained(hook: Hook, sent: dict) -> None:
    metadata = {"message_id": sent["bob@example.com"].message_id, "campaign": "hip-hinge"}
    resp = postmark_post(hook.client, record(SPAM, Email="bob@example.com", Metadata=metadata))
    assert resp.status_code == 200
    assert hook.store.suppression_reason("bob@example.com") == "complained"
    assert hook.store.find("bob@example.com").status == "complained"
    assert event_rows(hook.store)[0]["subscriber_id"] == sent["bob@example.com"].subscriber_id


def test_broadcast_subscription_changes_suppress_or_unsubscribe(hook: Hook, sent: dict) -> None:
    bounce = record(SUBSCRIPTION_CHANGE, Recipient="ann@example.com")
    spam = record(
        SUBSCRIPTION_CHANGE, Recipient="bob@example.com", SuppressionReason="SpamComplaint"
    )
    manual = record(
        SUBSCRIPTION_CHANGE, Recipient="cy@example.com", SuppressionReason="ManualSuppression"
    )
    for body in (bounce, spam, manual):
        assert postmark_post(hook.client, body).status_code == 200
    assert hook.store.find("ann@example.com").status == "bounced"
    assert hook.store.find("bob@example.com").status == "complained"
    assert hook.store.find("cy@example.com").status == "unsubscribed"
    assert hook.store.suppression_reason("cy@example.com") is None  # left, not suppressed
    assert types_of(hook.store) == ["bounced", "complained", "unsubscribed"]


def test_a_reactivation_is_recorded_and_changes_nobody(hook: Hook, sent: dict) -> None:
    reactivated = record(
        SUBSCRIPTION_CHANGE,
        Recipient="ann@example.com",
        SuppressSending=False,
        SuppressionReason=None,
        Tag=None,
        Metadata={},
        MessageID=None,
    )
    assert postmark_post(hook.client, reactivated).status_code == 200
    assert hook.store.find("ann@example.com").status == "active"
    assert types_of(hook.store) == ["unknown"]


def test_delivery_open_and_click_are_counted_not_acted_on(hook: Hook, sent: dict) -> None:
    for body in (
        record(DELIVERY, Recipient="ann@example.com"),
        record(OPEN, Recipient="ann@example.com"),
        record(CLICK, Recipient="bob@example.com"),
    ):
        assert postmark_post(hook.client, body).status_code == 200
    assert types_of(hook.store) == ["delivered", "opened", "clicked"]
    assert {r["subscriber_id"] for r in event_rows(hook.store)} == {
        sent["ann@example.com"].subscriber_id,
        sent["bob@example.com"].subscriber_id,
    }
    assert hook.store.count("active") == 3


def test_a_retried_record_without_id_counts_once(hook: Hook, sent: dict) -> None:
    body = record(DELIVERY, Recipient="ann@example.com")
    first = postmark_post(hook.client, body)
    before = snapshot(hook.store)
    again = postmark_post(hook.client, body)
    assert first.json["recorded"] == 1 and again.json == {"received": 1, "recorded": 0}
    assert snapshot(hook.store) == before


def test_soft_bounces_suppress_after_the_limit_and_a_delivery_starts_over(
    hook: Hook, sent: dict
) -> None:
    def soft(n: int) -> dict:
        return record(BOUNCE, ID=1000 + n, Type="SoftBounce", TypeCode=4096, Email="cy@example.com")

    for n in range(2):
        postmark_post(hook.client, soft(n))
    postmark_post(hook.client, record(DELIVERY, Recipient="cy@example.com", MessageID="pm-3"))
    for n in range(2, 4):
        postmark_post(hook.client, soft(n))
    assert hook.store.suppression_reason("cy@example.com") is None  # 2 in a row, limit 3
    postmark_post(hook.client, soft(4))
    assert hook.store.suppression_reason("cy@example.com") == "bounced"
    assert hook.store.find("cy@example.com").status == "bounced"


def test_transient_and_dns_errors_are_deferrals(hook: Hook, sent: dict) -> None:
    for n, kind in enumerate(("Transient", "DnsError")):
        postmark_post(hook.client, record(BOUNCE, ID=n, Type=kind, Email="ann@example.com"))
    assert types_of(hook.store) == ["deferred", "deferred"]
    assert hook.store.suppression_reason("ann@example.com") is None


def test_the_unmodified_example_for_an_unknown_address_is_taken(hook: Hook) -> None:
    resp = postmark_post(hook.client, BOUNCE)
    assert resp.status_code == 200
    [row] = event_rows(hook.store)
    assert row["subscriber_id"] is None and row["campaign_id"] is None
    assert hook.store.suppression_reason("john@example.com") == "bounced"  # never signs up
