"""Amazon SES events through SNS: AWS's documented example records in signed SNS messages.

The SES records are AWS's examples ("Examples of event data that Amazon SES publishes
to Amazon SNS") with recipients, message ids and our tags pointed at our campaign. The
SNS envelopes are signed with a test RSA key whose self-signed certificate (issued to
sns.amazonaws.com) is served by ``responses`` at an https://sns.us-east-1.amazonaws.com
URL; nothing leaves the machine.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import responses
from helpers import snapshot
from test_webhook_helpers import (
    CERT_URL,
    SUBSCRIBE_URL,
    Hook,
    aws_mock,
    event_rows,
    sent_campaign,
    sns_envelope,
    sns_post,
    types_of,
    webhook_app,
)

MAIL = {
    "timestamp": "2017-08-05T00:40:02.012Z",
    "source": "Sender Name <sender@example.com>",
    "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/sender@example.com",
    "sendingAccountId": "123456789012",
    "messageId": "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
    "destination": ["recipient@example.com"],
    "headersTruncated": False,
    "headers": [
        {"name": "From", "value": "Sender Name <sender@example.com>"},
        {"name": "To", "value": "recipient@example.com"},
        {"name": "Subject", "value": "Message sent from Amazon SES"},
        {"name": "MIME-Version", "value": "1.0"},
    ],
    "commonHeaders": {
        "from": ["Sender Name <sender@example.com>"],
        "to": ["recipient@example.com"],
        "messageId": "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
        "subject": "Message sent from Amazon SES",
    },
    "tags": {
        "ses:configuration-set": ["ConfigSet"],
        "ses:source-ip": ["192.0.2.0"],
        "ses:from-domain": ["example.com"],
        "ses:caller-identity": ["ses_user"],
    },
}

BOUNCE = {
    "eventType": "Bounce",
    "bounce": {
        "bounceType": "Permanent",
        "bounceSubType": "General",
        "bouncedRecipients": [
            {
                "emailAddress": "recipient@example.com",
                "action": "failed",
                "status": "5.1.1",
                "diagnosticCode": "smtp; 550 5.1.1 user unknown",
            }
        ],
        "timestamp": "2017-08-05T00:41:02.669Z",
        "feedbackId": "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000",
        "reportingMTA": "dsn; mta.example.com",
    },
    "mail": MAIL,
}

COMPLAINT = {
    "eventType": "Complaint",
    "complaint": {
        "complainedRecipients": [{"emailAddress": "recipient@example.com"}],
        "timestamp": "2017-08-05T00:41:02.669Z",
        "feedbackId": "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000",
        "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36",
        "complaintFeedbackType": "abuse",
        "arrivalDate": "2017-08-05T00:41:02.669Z",
    },
    "mail": MAIL,
}

DELIVERY = {
    "eventType": "Delivery",
    "mail": MAIL,
    "delivery": {
        "timestamp": "2016-10-19T23:21:04.133Z",
        "processingTimeMillis": 11893,
        "recipients": ["recipient@example.com"],
        "smtpResponse": "250 2.6.0 Message received",
        "reportingMTA": "mta.example.com",
    },
}

OPEN = {
    "eventType": "Open",
    "mail": MAIL,
    "open": {
        "ipAddress": "192.0.2.1",
        "timestamp": "2017-08-09T22:00:19.652Z",
        "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 10_3_3 like Mac OS X) AppleWebKit/603.3.8",
    },
}

CLICK = {
    "eventType": "Click",
    "click": {
        "ipAddress": "192.0.2.1",
        "link": "http://docs.aws.amazon.com/ses/latest/DeveloperGuide/send-email-smtp.html",
        "linkTags": {"samplekey0": ["samplevalue0"], "samplekey1": ["samplevalue1"]},
        "timestamp": "2017-08-09T23:51:25.570Z",
        "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36",
    },
    "mail": MAIL,
}

EMAILS = ["ann@example.com", "bob@example.com", "cy@example.com"]
PIDS = [f"0100018{n}-ses-message-id-000000" for n in range(3)]


@pytest.fixture
def hook(project: Path, test_env: dict[str, str]) -> Iterator[Hook]:
    with webhook_app(project, test_env) as hook:
        yield hook


@pytest.fixture
def sent(hook: Hook) -> dict:
    return sent_campaign(hook.store, hook.settings, EMAILS, "ses", PIDS)


@pytest.fixture
def aws() -> Iterator[responses.RequestsMock]:
    with aws_mock() as mock:
        yield mock


def for_recipient(example: dict, sent: dict, email: str) -> str:
    """The SES record for our recipient, as SES publishes it: the SNS ``Message`` string."""
    record = copy.deepcopy(example)
    r = sent[email]
    record["mail"]["messageId"] = r.provider_id
    record["mail"]["destination"] = [email]
    record["mail"]["tags"].update(campaign=["hip-hinge"], recipient=[str(r.subscriber_id)])
    for key, recipients in (("bounce", "bouncedRecipients"), ("complaint", "complainedRecipients")):
        if key in record:
            record[key][recipients][0]["emailAddress"] = email
    if "delivery" in record:
        record["delivery"]["recipients"] = [email]
    return json.dumps(record)


@pytest.mark.parametrize("version", ["1", "2"])
def test_documented_records_in_signed_notifications(
    hook: Hook, sent: dict, aws: responses.RequestsMock, version: str
) -> None:
    posts = [
        (DELIVERY, "ann@example.com"),
        (OPEN, "ann@example.com"),
        (CLICK, "ann@example.com"),
        (BOUNCE, "bob@example.com"),
        (COMPLAINT, "cy@example.com"),
    ]
    for example, email in posts:
        envelope = sns_envelope(for_recipient(example, sent, email), version=version)
        resp = sns_post(hook.client, envelope)
        assert resp.status_code == 200 and resp.json == {"received": 1, "recorded": 1}
    assert types_of(hook.store) == ["delivered", "opened", "clicked", "bounced", "complained"]
    assert hook.store.find("bob@example.com").status == "bounced"
    assert hook.store.find("cy@example.com").status == "complained"
    assert hook.store.find("ann@example.com").status == "active"
    rows = event_rows(hook.store)
    assert all(r["campaign_id"] is not None for r in rows)
    assert "smtp; 550 5.1.1 user unknown" in rows[3]["detail"]
    # The certificate was fetched once and then served from the cache.
    assert [c.request.url for c in aws.calls] == [CERT_URL]


def test_the_ses_message_id_alone_ties_the_event(
    hook: Hook, sent: dict, aws: responses.RequestsMock
) -> None:
    record = copy.deepcopy(BOUNCE)
    record["mail"]["messageId"] = sent["bob@example.com"].provider_id
    record["bounce"]["bouncedRecipients"][0]["emailAddress"] = "bob@example.com"
    assert sns_post(hook.client, sns_envelope(json.dumps(record))).status_code == 200
    [row] = event_rows(hook.store)
    assert row["subscriber_id"] == sent["bob@example.com"].subscriber_id
    assert row["campaign_id"] is not None


def test_a_transient_bounce_is_soft(hook: Hook, sent: dict, aws: responses.RequestsMock) -> None:
    record = json.loads(for_recipient(BOUNCE, sent, "ann@example.com"))
    record["bounce"]["bounceType"] = "Transient"
    record["bounce"]["bounceSubType"] = "MailboxFull"
    assert sns_post(hook.client, sns_envelope(json.dumps(record))).status_code == 200
    assert [(r["type"], r["bounce"]) for r in event_rows(hook.store)] == [("bounced", "soft")]
    assert hook.store.suppression_reason("ann@example.com") is None


def test_an_sns_retry_counts_once(hook: Hook, sent: dict, aws: responses.RequestsMock) -> None:
    envelope = sns_envelope(for_recipient(COMPLAINT, sent, "cy@example.com"))
    assert sns_post(hook.client, envelope).json["recorded"] == 1
    before = snapshot(hook.store)
    again = sns_post(hook.client, envelope)
    assert again.status_code == 200 and again.json["recorded"] == 0
    assert snapshot(hook.store) == before


def test_a_subscription_confirmation_is_confirmed(hook: Hook, aws: responses.RequestsMock) -> None:
    aws.get(SUBSCRIBE_URL, body="<ConfirmSubscriptionResponse/>")
    message = (
        "You have chosen to subscribe to the topic "
        "arn:aws:sns:us-east-1:123456789012:ses-events.\n"
        "To confirm the subscription, visit the SubscribeURL included in this message."
    )
    before = snapshot(hook.store)
    resp = sns_post(hook.client, sns_envelope(message, kind="SubscriptionConfirmation"))
    assert resp.status_code == 200 and resp.json == {"received": 0, "recorded": 0}
    assert [c.request.url for c in aws.calls] == [CERT_URL, SUBSCRIBE_URL]
    assert snapshot(hook.store) == before


def test_the_topic_validation_message_is_taken_quietly(
    hook: Hook, aws: responses.RequestsMock
) -> None:
    text = "Successfully validated SNS topic for Amazon SES event publishing."
    resp = sns_post(hook.client, sns_envelope(text))
    assert resp.status_code == 200 and resp.json == {"received": 0, "recorded": 0}


def test_the_unmodified_example_suppresses_its_address(
    hook: Hook, aws: responses.RequestsMock
) -> None:
    assert sns_post(hook.client, sns_envelope(json.dumps(BOUNCE))).status_code == 200
    [row] = event_rows(hook.store)
    assert row["subscriber_id"] is None
    assert hook.store.suppression_reason("recipient@example.com") == "bounced"
