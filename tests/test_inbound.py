"""Mailto unsubscribes: the List-Unsubscribe mailto is advertised only with an inbound path,
and what the provider forwards (Postmark inbound JSON, a Mailgun route's form, an SES
receipt through SNS) is authenticated like the event webhooks before anyone leaves.

Signed requests carrying the reader's token unsubscribe that reader; unsigned, wrongly
signed, replayed or stale ones are refused and change nothing; a forged token or mail
to another address is answered 200 (no retry) and changes nothing either.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode

import pytest
from flask.testing import FlaskClient
from helpers import RecordingProvider, snapshot
from test_webhook_helpers import (
    MAILGUN_KEY,
    POSTMARK_AUTH,
    RSA_KEY,
    TOPIC_ARN,
    WEBHOOK_ENV,
    aws_mock,
    mailgun_signature,
    sns_envelope,
)

from pipeline.content import find_module, load_module
from pipeline.errors import ConfigError
from pipeline.message import to_bytes
from pipeline.providers.inbound import InboundMail, form_fields
from pipeline.render import Recipient, compile_campaign
from pipeline.settings import Settings, load_settings
from subscribers.models import Consent, NewSubscriber, PendingConfirmation
from subscribers.store import Store
from subscribers.tokens import subscriber_token
from subscribers.web import create_app

UNSUB = "unsubscribe@inbound.hingestrength.example.com"
CONSENT = Consent(kind="import", source="test", wording="test readers")


def configure(project: Path, inbound: str, address: str = UNSUB) -> Path:
    config = project / "newsletter.toml"
    text = config.read_text().replace("[site]", f'[site]\nunsubscribe_email = "{address}"', 1)
    config.write_text(text.replace("[provider]", f'[provider]\ninbound = "{inbound}"', 1))
    return config


# ---- settings and what is advertised ----------------------------------------------------


def test_inbound_needs_an_unsubscribe_address(project: Path) -> None:
    config = configure(project, "postmark", address="")
    with pytest.raises(ConfigError, match="provider.inbound = 'postmark' needs site.unsubscribe"):
        load_settings(config, env={})


def test_inbound_must_be_a_provider_with_an_inbound_path(project: Path) -> None:
    config = configure(project, "resend")
    with pytest.raises(ConfigError, match="provider.inbound must be one of postmark, mailgun, ses"):
        load_settings(config, env={})


def test_without_inbound_no_mailto_is_advertised(settings: Settings) -> None:
    assert settings.unsubscribe_email == ""
    msg = compiled(settings).personalize(Recipient(7, "r@example.com", "R", "7.tok"))
    assert msg.headers["List-Unsubscribe"] == "<http://127.0.0.1:8000/unsubscribe/7.tok>"


def test_with_inbound_the_mailto_carries_the_readers_token(project: Path) -> None:
    settings = load_settings(configure(project, "postmark"), env={"NEWSLETTER_SECRET_KEY": "k"})
    token = subscriber_token("k", 7, "key7")
    msg = compiled(settings).personalize(Recipient(7, "r@example.com", "R", token))
    assert msg.headers["List-Unsubscribe"] == (
        f"<http://127.0.0.1:8000/unsubscribe/{token}>, "
        f"<mailto:{UNSUB}?subject=unsubscribe%20{token}>"
    )


def test_confirmation_emails_carry_the_token_too(project: Path) -> None:
    from subscribers.confirmation import ConfirmationSender, Links

    settings = load_settings(configure(project, "postmark"), env={"NEWSLETTER_SECRET_KEY": "k"})
    sender = ConfirmationSender(settings, None, Links(settings, "k"), RecordingProvider())  # type: ignore[arg-type]
    item = PendingConfirmation(5, "new@example.com", "", ("updates",), link_key="key5")
    msg = sender.build(item)
    assert (
        f"<mailto:{UNSUB}?subject=unsubscribe%20{subscriber_token('k', 5, 'key5')}>"
        in (msg.headers["List-Unsubscribe"])
    )


def compiled(settings: Settings):  # noqa: ANN201
    return compile_campaign(load_module(find_module(settings, "hip-hinge"), settings), settings)


@pytest.mark.parametrize(
    ("subject", "body", "token"),
    [
        ("unsubscribe 12.AbCdEfGhIjKlMnOpQrStUv", "", "12.AbCdEfGhIjKlMnOpQrStUv"),
        ("Re: Unsubscribe 12.AbCdEfGhIjKlMnOpQrStUv", "", "12.AbCdEfGhIjKlMnOpQrStUv"),
        ("please remove me", "unsubscribe 3.x-y_zAbCdEfGhIjKl\n", "3.x-y_zAbCdEfGhIjKl"),
        ("unsubscribe", "", ""),
        ("unsubscribe 12.AbCdEfGhIjKl.extra", "", ""),
    ],
)
def test_the_token_is_read_from_the_subject_or_body(subject: str, body: str, token: str) -> None:
    mail = InboundMail(recipients=(UNSUB,), subject=subject, text=body)
    assert mail.unsubscribe_token() == token


# ---- a web app with an inbound path -----------------------------------------------------


class Inbound:
    def __init__(self, client: FlaskClient, store: Store, settings: Settings) -> None:
        self.client, self.store, self.settings = client, store, settings
        self.ids = {
            r.row.email: r.subscriber_id
            for r in store.add_many(
                [NewSubscriber(f"r{i}@example.com", "", ("updates",)) for i in range(2)],
                confirmed=True,
                consent=CONSENT,
            )
        }

    def token(self, email: str) -> str:
        reader = self.store.get(self.ids[email])
        assert reader is not None
        return subscriber_token(self.settings.secret_key(), reader.id, reader.link_key)

    def status(self, email: str) -> str:
        return self.store.find(email).status  # type: ignore[union-attr]


@pytest.fixture
def make_inbound(project: Path, test_env: dict[str, str]) -> Iterator[Any]:
    stores: list[Store] = []

    def make(provider: str, **env: str) -> Inbound:
        config = configure(project, provider)
        settings = load_settings(config, env={**test_env, **WEBHOOK_ENV, **env})
        app = create_app(settings, provider=RecordingProvider())
        services = app.extensions["newsletter"]
        stores.append(services.store)
        return Inbound(app.test_client(), services.store, services.settings)

    yield make
    for store in stores:
        store.close()


# ---- Postmark inbound -------------------------------------------------------------------


def postmark_mail(subject: str, to: str = UNSUB, sender: str = "r0@example.com") -> dict:
    # The shape of Postmark's documented inbound webhook (abridged to what we read).
    return {
        "FromName": "Reader",
        "MessageStream": "inbound",
        "From": sender,
        "FromFull": {"Email": sender, "Name": "Reader", "MailboxHash": ""},
        "To": to,
        "ToFull": [{"Email": to, "Name": "", "MailboxHash": ""}],
        "Cc": "",
        "CcFull": [],
        "OriginalRecipient": to,
        "Subject": subject,
        "MessageID": "73e6d360-66eb-11e1-8e72-a8904824019b",
        "Date": "Fri, 1 Aug 2025 16:45:32 -04:00",
        "TextBody": "",
        "HtmlBody": "",
        "StrippedTextReply": "",
        "Headers": [{"Name": "X-Spam-Status", "Value": "No"}],
        "Attachments": [],
    }


def postmark_post(client: FlaskClient, record: dict, auth: tuple[str, str] | None = POSTMARK_AUTH):  # noqa: ANN201
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    return client.post("/inbound/postmark", data=json.dumps(record), headers=headers)


def test_postmark_signed_mail_with_the_token_unsubscribes(make_inbound) -> None:  # noqa: ANN001
    hook = make_inbound("postmark")
    resp = postmark_post(hook.client, postmark_mail(f"unsubscribe {hook.token('r0@example.com')}"))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json() == {"received": 1, "unsubscribed": 1}
    assert hook.status("r0@example.com") == "unsubscribed"
    assert hook.status("r1@example.com") == "active"
    [event] = [
        e for e in hook.store.events_for(hook.ids["r0@example.com"]) if e["kind"] == "unsubscribed"
    ]
    assert event["detail"] == "mailto (postmark inbound)"
    again = postmark_post(hook.client, postmark_mail(f"unsubscribe {hook.token('r0@example.com')}"))
    assert again.status_code == 200  # a retry: nothing more happens


@pytest.mark.parametrize(
    "auth", [None, (POSTMARK_AUTH[0], "wrong"), ("other", POSTMARK_AUTH[1])], ids=str
)
def test_postmark_unsigned_or_wrong_credentials_change_nothing(make_inbound, auth) -> None:  # noqa: ANN001
    hook = make_inbound("postmark")
    before = snapshot(hook.store)
    record = postmark_mail(f"unsubscribe {hook.token('r0@example.com')}")
    resp = postmark_post(hook.client, record, auth=auth)
    assert resp.status_code == 401
    assert snapshot(hook.store) == before


def test_postmark_forged_token_or_other_address_is_ignored(make_inbound) -> None:  # noqa: ANN001
    hook = make_inbound("postmark")
    before = snapshot(hook.store)
    sid = hook.ids["r0@example.com"]
    forged = postmark_post(hook.client, postmark_mail(f"unsubscribe {sid}.AAAAAAAAAAAAAAAAAAAAAA"))
    assert forged.status_code == 200 and forged.get_json()["unsubscribed"] == 0
    other = postmark_post(
        hook.client,
        postmark_mail(f"unsubscribe {hook.token('r0@example.com')}", to="coach@example.com"),
    )
    assert other.status_code == 200 and other.get_json()["unsubscribed"] == 0
    no_token = postmark_post(hook.client, postmark_mail("unsubscribe"))  # From alone is no proof
    assert no_token.get_json() == {"received": 1, "unsubscribed": 0}
    assert snapshot(hook.store) == before


def test_postmark_inbound_without_its_secrets_is_refused(make_inbound, caplog) -> None:  # noqa: ANN001
    hook = make_inbound("postmark", POSTMARK_WEBHOOK_USER="", POSTMARK_WEBHOOK_PASSWORD="")
    resp = postmark_post(hook.client, postmark_mail("unsubscribe 1.x"))
    assert resp.status_code == 403
    assert "set POSTMARK_WEBHOOK_USER in the environment" in caplog.text  # the log says what


def test_only_the_configured_inbound_provider_answers(make_inbound) -> None:  # noqa: ANN001
    hook = make_inbound("postmark")
    resp = hook.client.post("/inbound/mailgun", data={"subject": "unsubscribe 1.x"})
    assert resp.status_code == 404


def test_postmark_malformed_body_is_400(make_inbound) -> None:  # noqa: ANN001
    hook = make_inbound("postmark")
    resp = postmark_post(hook.client, {"RecordType": "Bounce"})
    assert resp.status_code == 400


# ---- Mailgun routes ------------------------------------------------------------------------


def mailgun_fields(subject: str, *, key: str = MAILGUN_KEY, timestamp: int | None = None,
                   token: str | None = None, recipient: str = UNSUB) -> dict[str, str]:  # fmt: skip
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    token = token or uuid.uuid4().hex + uuid.uuid4().hex[:18]
    # What a route's forward() posts (Mailgun "Receiving Messages via HTTP"), abridged.
    return {
        "recipient": recipient,
        "sender": "r0@example.com",
        "from": "Reader <r0@example.com>",
        "subject": subject,
        "body-plain": "",
        "stripped-text": "",
        "Message-Id": "<CAF+x@mail.example.com>",
        "message-headers": json.dumps([["Subject", subject]]),
        "timestamp": stamp,
        "token": token,
        "signature": mailgun_signature(stamp, token, key),
    }


def test_mailgun_route_multipart_signed_unsubscribes(make_inbound) -> None:  # noqa: ANN001
    hook = make_inbound("mailgun")
    fields = mailgun_fields(f"unsubscribe {hook.token('r1@example.com')}")
    resp = hook.client.post("/inbound/mailgun", data=fields, content_type="multipart/form-data")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json() == {"received": 1, "unsubscribed": 1}
    assert hook.status("r1@example.com") == "unsubscribed"


def test_mailgun_route_urlencoded_signed_unsubscribes(make_inbound) -> None:  # noqa: ANN001
    hook = make_inbound("mailgun")
    body = urlencode(mailgun_fields(f"unsubscribe {hook.token('r0@example.com')}"))
    resp = hook.client.post(
        "/inbound/mailgun", data=body, content_type="application/x-www-form-urlencoded"
    )
    assert resp.get_json() == {"received": 1, "unsubscribed": 1}


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"signature": ""}, 401),  # unsigned
        ({"key": "another-key"}, 401),  # signed with another key
        ({"timestamp": int(time.time()) - 3600}, 403),  # stale
    ],
    ids=["unsigned", "wrong-key", "stale"],
)
def test_mailgun_route_bad_signatures_change_nothing(make_inbound, change, status) -> None:  # noqa: ANN001
    hook = make_inbound("mailgun")
    before = snapshot(hook.store)
    subject = f"unsubscribe {hook.token('r0@example.com')}"
    fields = mailgun_fields(subject, **{k: v for k, v in change.items() if k != "signature"})
    if "signature" in change:
        fields["signature"] = ""
    resp = hook.client.post("/inbound/mailgun", data=fields, content_type="multipart/form-data")
    assert resp.status_code == status
    assert snapshot(hook.store) == before


def test_mailgun_route_replayed_token_is_refused(make_inbound) -> None:  # noqa: ANN001
    hook = make_inbound("mailgun")
    fields = mailgun_fields(f"unsubscribe {hook.token('r0@example.com')}", token="t" * 50)
    first = hook.client.post("/inbound/mailgun", data=fields, content_type="multipart/form-data")
    assert first.status_code == 200
    fields["subject"] = f"unsubscribe {hook.token('r1@example.com')}"  # a captured signature
    replay = hook.client.post("/inbound/mailgun", data=fields, content_type="multipart/form-data")
    assert replay.status_code == 403
    assert hook.status("r1@example.com") == "active"


def test_form_fields_skip_files() -> None:
    body = (
        b'--b\r\nContent-Disposition: form-data; name="subject"\r\n\r\nunsubscribe 1.x\r\n'
        b'--b\r\nContent-Disposition: form-data; name="attachment-1"; filename="a.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\nhello\r\n--b--\r\n"
    )
    assert form_fields(body, "multipart/form-data; boundary=b") == {"subject": "unsubscribe 1.x"}


# ---- Amazon SES through SNS ---------------------------------------------------------------


def ses_received(raw: bytes, recipient: str = UNSUB) -> str:
    # SES "Received" notification for an SNS action with Base64 encoding (AWS docs, abridged).
    return json.dumps(
        {
            "notificationType": "Received",
            "mail": {
                "timestamp": "2025-08-05T00:40:02.012Z",
                "source": "r0@example.com",
                "messageId": "o3vrnil0e2ic28trm7dfhrc2v0clambfbt8jn0g1",
                "destination": [recipient],
                "commonHeaders": {"from": ["r0@example.com"], "to": [recipient], "subject": "x"},
            },
            "receipt": {
                "recipients": [recipient],
                "spfVerdict": {"status": "PASS"},
                "dkimVerdict": {"status": "PASS"},
                "action": {"type": "SNS", "topicArn": TOPIC_ARN, "encoding": "BASE64"},
            },
            "content": base64.b64encode(raw).decode(),
        }
    )


def raw_mail(subject: str) -> bytes:
    return (
        f"From: Reader <r0@example.com>\r\nTo: {UNSUB}\r\nSubject: {subject}\r\n"
        "Message-ID: <x@mail.example.com>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Sent from my phone\r\n"
    ).encode()


def sns_post(client: FlaskClient, envelope: dict) -> Any:
    headers = {"x-amz-sns-message-type": envelope["Type"], "Content-Type": "text/plain"}
    return client.post("/inbound/ses", data=json.dumps(envelope), headers=headers)


def test_ses_signed_receipt_unsubscribes(make_inbound) -> None:  # noqa: ANN001
    hook = make_inbound("ses")
    raw = raw_mail(f"unsubscribe {hook.token('r0@example.com')}")
    with aws_mock():
        resp = sns_post(hook.client, sns_envelope(ses_received(raw)))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json() == {"received": 1, "unsubscribed": 1}
    assert hook.status("r0@example.com") == "unsubscribed"


def test_ses_badly_signed_or_foreign_topic_changes_nothing(make_inbound) -> None:  # noqa: ANN001
    from cryptography.hazmat.primitives.asymmetric import rsa

    hook = make_inbound("ses")
    before = snapshot(hook.store)
    message = ses_received(raw_mail(f"unsubscribe {hook.token('r0@example.com')}"))
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with aws_mock():
        forged = sns_post(hook.client, sns_envelope(message, key=other_key))
        foreign = sns_post(
            hook.client, sns_envelope(message, topic="arn:aws:sns:us-east-1:999:x", key=RSA_KEY)
        )
        unsigned = sns_envelope(message)
        unsigned["Signature"] = ""
        missing = sns_post(hook.client, unsigned)
    assert (forged.status_code, foreign.status_code, missing.status_code) == (401, 403, 401)
    assert snapshot(hook.store) == before


def test_ses_subscription_is_confirmed(make_inbound) -> None:  # noqa: ANN001
    from test_webhook_helpers import SUBSCRIBE_URL

    hook = make_inbound("ses")
    with aws_mock() as mock:
        confirm = mock.get(SUBSCRIBE_URL, body="<ConfirmSubscriptionResponse/>")
        resp = sns_post(
            hook.client, sns_envelope("You have chosen ...", kind="SubscriptionConfirmation")
        )
    assert resp.status_code == 200
    assert confirm.call_count == 1


# ---- end to end: the mailto of a sent email, as a mail client uses it ---------------------


def test_the_mailto_of_a_real_message_unsubscribes_its_reader(make_inbound, project: Path) -> None:  # noqa: ANN001
    hook = make_inbound("postmark")
    sid = hook.ids["r1@example.com"]
    token = hook.token("r1@example.com")
    msg = compiled(hook.settings).personalize(Recipient(sid, "r1@example.com", "", token))
    wire = message_from_bytes(to_bytes(msg), policy=policy.default)
    mailto = re.search(r"<mailto:([^>]+)>", str(wire["List-Unsubscribe"])).group(1)
    address, _, query = mailto.partition("?")
    subject = unquote(query.removeprefix("subject="))  # what the mail client puts in Subject
    resp = postmark_post(hook.client, postmark_mail(subject, to=address, sender="r1@example.com"))
    assert resp.get_json() == {"received": 1, "unsubscribed": 1}
    assert hook.status("r1@example.com") == "unsubscribed"
    assert hook.status("r0@example.com") == "active"
