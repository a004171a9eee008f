"""Webhook authenticity: forged, stale, replayed, misdirected, oversized and malformed
requests change nothing (the whole store is compared before and after) and get the
right 4xx; nothing answers 500 or shows a trace."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from helpers import snapshot
from test_webhook_helpers import (
    CERT_URL,
    POSTMARK_AUTH,
    WEBHOOK_ENV,
    Hook,
    aws_mock,
    mailgun_body,
    mailgun_post,
    postmark_post,
    resend_post,
    self_signed,
    sendgrid_post,
    sent_campaign,
    sns_envelope,
    sns_post,
    svix_headers,
    webhook_app,
)

EMAILS = ["ann@example.com", "bob@example.com"]
OTHER_EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def hook(project: Path, test_env: dict[str, str]) -> Iterator[Hook]:
    with webhook_app(project, test_env) as hook:
        yield hook


@pytest.fixture
def sent(hook: Hook) -> dict:
    return sent_campaign(hook.store, hook.settings, EMAILS, "test", ["p-1", "p-2"])


@pytest.fixture
def aws() -> Iterator[responses.RequestsMock]:
    with aws_mock() as mock:
        yield mock


def bounce_for(sent: dict) -> dict:
    """What an attacker would like us to believe: ann hard-bounced."""
    return {"message_id": sent["ann@example.com"].message_id, "email": "ann@example.com"}


def refused(hook: Hook, post: Callable[[], Any], status: int) -> Any:
    before = snapshot(hook.store)
    resp = post()
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_data(as_text=True)
    assert resp.is_json and "Traceback" not in body and 'File "' not in body
    assert snapshot(hook.store) == before
    assert hook.store.find("ann@example.com").status == "active"
    return resp


# ---- Postmark: basic auth ----------------------------------------------------------------


def postmark_bounce(sent: dict) -> dict:
    return {
        "RecordType": "Bounce",
        "ID": 1,
        "Type": "HardBounce",
        "Email": "ann@example.com",
        "Metadata": {"message_id": sent["ann@example.com"].message_id},
    }


@pytest.mark.parametrize(
    "auth",
    [("postmark-hook", "wrong"), ("intruder", POSTMARK_AUTH[1]), ("", ""), (POSTMARK_AUTH[0], "")],
)
def test_postmark_wrong_basic_auth_is_401(hook: Hook, sent: dict, auth: tuple) -> None:
    resp = refused(hook, lambda: postmark_post(hook.client, postmark_bounce(sent), auth), 401)
    assert resp.headers["WWW-Authenticate"].startswith("Basic")


def test_postmark_without_authorization_is_401(hook: Hook, sent: dict) -> None:
    body = json.dumps(postmark_bounce(sent))
    refused(hook, lambda: hook.client.post("/webhooks/postmark", data=body), 401)


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"Email": "ann@example.com"}', b"\xff"])
def test_postmark_malformed_is_400(hook: Hook, sent: dict, body: bytes) -> None:
    token = base64.b64encode(":".join(POSTMARK_AUTH).encode()).decode()
    headers = {"Authorization": f"Basic {token}"}
    refused(hook, lambda: hook.client.post("/webhooks/postmark", data=body, headers=headers), 400)


# ---- SendGrid: ECDSA + timestamp -----------------------------------------------------------


def sendgrid_bounce(sent: dict) -> list[dict]:
    return [{"event": "bounce", "type": "bounce", "sg_event_id": "x1", **bounce_for(sent)}]


def test_sendgrid_signed_by_another_key_is_401(hook: Hook, sent: dict) -> None:
    post = lambda: sendgrid_post(hook.client, sendgrid_bounce(sent), key=OTHER_EC_KEY)  # noqa: E731
    refused(hook, post, 401)


def test_sendgrid_tampered_body_is_401(hook: Hook, sent: dict) -> None:
    def post() -> object:
        resp = sendgrid_post(hook.client, [{"event": "delivered", "sg_event_id": "ok"}])
        assert resp.status_code == 200  # the genuine one
        return hook.client.post(
            "/webhooks/sendgrid",
            data=json.dumps(sendgrid_bounce(sent)),
            headers={
                "X-Twilio-Email-Event-Webhook-Signature": resp.request.headers[
                    "X-Twilio-Email-Event-Webhook-Signature"
                ],
                "X-Twilio-Email-Event-Webhook-Timestamp": resp.request.headers[
                    "X-Twilio-Email-Event-Webhook-Timestamp"
                ],
            },
        )

    before = snapshot(hook.store)
    resp = post()
    assert resp.status_code == 401
    after = snapshot(hook.store)
    assert len(after["delivery_events"]) == len(before["delivery_events"]) + 1  # genuine only
    assert hook.store.find("ann@example.com").status == "active"


# +310, not +301: the stamp is int(time.time()) + offset and the check comes a moment
# later, so a +301 stamp could land back inside the 300 s window (a flaky test).
@pytest.mark.parametrize("offset", [-301, 310, -86400])
def test_sendgrid_stale_or_future_timestamp_is_403(hook: Hook, sent: dict, offset: int) -> None:
    stamp = hook.now + offset
    post = lambda: sendgrid_post(hook.client, sendgrid_bounce(sent), timestamp=stamp)  # noqa: E731
    refused(hook, post, 403)


def test_sendgrid_without_signature_headers_is_401(hook: Hook, sent: dict) -> None:
    body = json.dumps(sendgrid_bounce(sent))
    refused(hook, lambda: hook.client.post("/webhooks/sendgrid", data=body), 401)


def test_sendgrid_garbage_signature_is_401(hook: Hook, sent: dict) -> None:
    headers = {
        "X-Twilio-Email-Event-Webhook-Signature": "%%% not base64 %%%",
        "X-Twilio-Email-Event-Webhook-Timestamp": str(hook.now),
    }
    body = json.dumps(sendgrid_bounce(sent))
    refused(hook, lambda: hook.client.post("/webhooks/sendgrid", data=body, headers=headers), 401)


@pytest.mark.parametrize("body", [b"{}", b"[1, 2]", b"not json", b'{"event": "bounce"}'])
def test_sendgrid_signed_but_malformed_is_400(hook: Hook, sent: dict, body: bytes) -> None:
    refused(hook, lambda: sendgrid_post(hook.client, None, body=body), 400)


def test_sendgrid_fields_of_odd_types_do_not_break_anything(hook: Hook, sent: dict) -> None:
    odd = [{"event": ["bounce"], "email": {"a": 1}, "sg_event_id": 7, "timestamp": "soon"}]
    resp = sendgrid_post(hook.client, odd)
    assert resp.status_code == 200 and resp.json == {"received": 1, "recorded": 1}
    assert hook.store.count("active") == 2


# ---- Mailgun: HMAC, timestamp window, token used once ------------------------------------------


def mailgun_failed(sent: dict) -> dict:
    return {
        "event": "failed",
        "severity": "permanent",
        "reason": "bounce",
        "id": "forged",
        "recipient": "ann@example.com",
        "user-variables": {"message_id": sent["ann@example.com"].message_id},
    }


def test_mailgun_wrong_key_is_401(hook: Hook, sent: dict) -> None:
    body = mailgun_body(mailgun_failed(sent), key="not-the-signing-key")
    refused(hook, lambda: mailgun_post(hook.client, body), 401)


def test_mailgun_missing_signature_is_401(hook: Hook, sent: dict) -> None:
    body = {"event-data": mailgun_failed(sent)}
    refused(hook, lambda: mailgun_post(hook.client, body), 401)


@pytest.mark.parametrize("offset", [-301, 400, -7200])
def test_mailgun_stale_timestamp_is_403(hook: Hook, sent: dict, offset: int) -> None:
    body = mailgun_body(mailgun_failed(sent), timestamp=hook.now + offset)
    refused(hook, lambda: mailgun_post(hook.client, body), 403)


def test_mailgun_replayed_token_is_403_even_with_other_event_data(hook: Hook, sent: dict) -> None:
    genuine = mailgun_body({"event": "delivered", "id": "d1", "recipient": "bob@example.com"})
    assert mailgun_post(hook.client, genuine).status_code == 200
    forged = {"signature": genuine["signature"], "event-data": mailgun_failed(sent)}
    refused(hook, lambda: mailgun_post(hook.client, forged), 403)
    refused(hook, lambda: mailgun_post(hook.client, genuine), 403)  # the very same request


def test_mailgun_legacy_form_posts_are_400(hook: Hook, sent: dict) -> None:
    form = {"event": "bounced", "recipient": "ann@example.com", "token": "t", "signature": "s"}
    refused(hook, lambda: hook.client.post("/webhooks/mailgun", data=form), 400)


@pytest.mark.parametrize("body", [b"{oops", b"[]", b'{"signature": "x"}'])
def test_mailgun_malformed_is_4xx(hook: Hook, sent: dict, body: bytes) -> None:
    post = lambda: hook.client.post(  # noqa: E731
        "/webhooks/mailgun", data=body, content_type="application/json"
    )
    refused(hook, post, 400 if body != b'{"signature": "x"}' else 401)


def test_mailgun_signed_without_event_data_is_400(hook: Hook, sent: dict) -> None:
    body = mailgun_body({})
    del body["event-data"]
    refused(hook, lambda: mailgun_post(hook.client, body), 400)


# ---- Resend: Svix signature, five minutes ----------------------------------------------------


def resend_bounce(sent: dict) -> dict:
    return {
        "type": "email.bounced",
        "created_at": "2024-11-22T23:41:12.126Z",
        "data": {"email_id": "p-1", "to": ["ann@example.com"], "bounce": {"type": "Permanent"}},
    }


def test_resend_wrong_secret_is_401(hook: Hook, sent: dict) -> None:
    other = "whsec_" + base64.b64encode(b"someone else's secret").decode()
    refused(hook, lambda: resend_post(hook.client, resend_bounce(sent), secret=other), 401)


@pytest.mark.parametrize("offset", [-301, 310])  # +310: see the SendGrid test above
def test_resend_outside_five_minutes_is_403(hook: Hook, sent: dict, offset: int) -> None:
    stamp = hook.now + offset
    refused(hook, lambda: resend_post(hook.client, resend_bounce(sent), timestamp=stamp), 403)


def test_resend_tampered_body_is_401(hook: Hook, sent: dict) -> None:
    headers = svix_headers(json.dumps({"type": "email.delivered", "data": {}}).encode())
    body = json.dumps(resend_bounce(sent))
    refused(hook, lambda: hook.client.post("/webhooks/resend", data=body, headers=headers), 401)


def test_resend_without_svix_headers_is_401(hook: Hook, sent: dict) -> None:
    body = json.dumps(resend_bounce(sent))
    refused(hook, lambda: hook.client.post("/webhooks/resend", data=body), 401)


def test_resend_signed_but_malformed_is_400(hook: Hook, sent: dict) -> None:
    raw = b'{"type": "email.bounced"}'
    post = lambda: hook.client.post(  # noqa: E731
        "/webhooks/resend", data=raw, headers=svix_headers(raw)
    )
    refused(hook, post, 400)


# ---- SES through SNS: topic, certificate host, signature -------------------------------------


def ses_bounce(sent: dict) -> str:
    return json.dumps(
        {
            "eventType": "Bounce",
            "bounce": {
                "bounceType": "Permanent",
                "bouncedRecipients": [{"emailAddress": "ann@example.com"}],
            },
            "mail": {"messageId": "p-1", "destination": ["ann@example.com"]},
        }
    )


def test_sns_wrong_topic_is_403_and_fetches_nothing(
    hook: Hook, sent: dict, aws: responses.RequestsMock
) -> None:
    envelope = sns_envelope(ses_bounce(sent), topic="arn:aws:sns:us-east-1:999999999999:evil")
    refused(hook, lambda: sns_post(hook.client, envelope), 403)
    assert len(aws.calls) == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem",
        "https://evil.example.com/SimpleNotificationService-test.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com@evil.example.com/cert.pem",
        "https://user:pw@sns.us-east-1.amazonaws.com/cert.pem",
        "https://evil.example.com/sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com:8443/cert.pem",
        "https://s3.us-east-1.amazonaws.com/cert.pem",
        "https://sns.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com/cert.txt",
        "https://sns.us-east-1.amazonaws.com/../../cert.pem#frag",
        "file:///etc/ssl/cert.pem",
        "",
    ],
)
def test_sns_certificate_outside_sns_amazonaws_is_403_and_not_fetched(
    hook: Hook, sent: dict, aws: responses.RequestsMock, url: str
) -> None:
    envelope = sns_envelope(ses_bounce(sent), cert_url=url)
    refused(hook, lambda: sns_post(hook.client, envelope), 403)
    assert len(aws.calls) == 0


def test_sns_signed_by_another_key_is_401(
    hook: Hook, sent: dict, aws: responses.RequestsMock
) -> None:
    envelope = sns_envelope(ses_bounce(sent), key=OTHER_RSA_KEY)
    refused(hook, lambda: sns_post(hook.client, envelope), 401)


def test_sns_tampered_message_is_401(hook: Hook, sent: dict, aws: responses.RequestsMock) -> None:
    envelope = sns_envelope(json.dumps({"eventType": "Delivery", "mail": {}}))
    envelope["Message"] = ses_bounce(sent)
    refused(hook, lambda: sns_post(hook.client, envelope), 401)


@pytest.mark.parametrize("version", ["3", "", None])
def test_sns_unknown_signature_version_is_401(
    hook: Hook, sent: dict, aws: responses.RequestsMock, version: str | None
) -> None:
    envelope = sns_envelope(ses_bounce(sent))
    envelope["SignatureVersion"] = version
    refused(hook, lambda: sns_post(hook.client, envelope), 401)


def test_sns_old_message_is_403(hook: Hook, sent: dict, aws: responses.RequestsMock) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    envelope = sns_envelope(ses_bounce(sent), timestamp=old)
    refused(hook, lambda: sns_post(hook.client, envelope), 403)


def test_sns_type_header_must_match_the_body(
    hook: Hook, sent: dict, aws: responses.RequestsMock
) -> None:
    envelope = sns_envelope(ses_bounce(sent))
    refused(hook, lambda: sns_post(hook.client, envelope, header="SubscriptionConfirmation"), 400)


@pytest.mark.parametrize(
    "cert",
    [
        self_signed(rsa.generate_private_key(public_exponent=65537, key_size=2048), "evil.com"),
        b"-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n",
    ],
)
def test_sns_certificate_not_issued_to_sns_is_403(
    hook: Hook, sent: dict, aws: responses.RequestsMock, cert: bytes
) -> None:
    aws.replace(responses.GET, CERT_URL, body=cert)
    envelope = sns_envelope(ses_bounce(sent))
    refused(hook, lambda: sns_post(hook.client, envelope), 403)


def test_sns_expired_certificate_is_403(
    hook: Hook, sent: dict, aws: responses.RequestsMock
) -> None:
    aws.replace(responses.GET, CERT_URL, body=self_signed(OTHER_RSA_KEY, days=-1))
    envelope = sns_envelope(ses_bounce(sent), key=OTHER_RSA_KEY)
    refused(hook, lambda: sns_post(hook.client, envelope), 403)


@pytest.mark.parametrize(
    "reply", [{"status": 404}, {"body": requests.ConnectionError("connection refused")}]
)
def test_sns_certificate_unreachable_is_503_for_a_retry(
    hook: Hook, sent: dict, aws: responses.RequestsMock, reply: dict
) -> None:
    aws.replace(responses.GET, CERT_URL, **reply)
    envelope = sns_envelope(ses_bounce(sent))
    refused(hook, lambda: sns_post(hook.client, envelope), 503)


@pytest.mark.parametrize(
    "subscribe_url",
    [
        "https://evil.example.com/?Action=ConfirmSubscription&Token=x",
        "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=x",  # other region
        "http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=x",
        "https://sns.us-east-1.amazonaws.com.evil.example.com/?Action=ConfirmSubscription",
    ],
)
def test_sns_subscribe_url_outside_the_topics_sns_host_is_403_and_not_fetched(
    hook: Hook, sent: dict, aws: responses.RequestsMock, subscribe_url: str
) -> None:
    envelope = sns_envelope("confirm", kind="SubscriptionConfirmation", subscribe_url=subscribe_url)
    refused(hook, lambda: sns_post(hook.client, envelope), 403)
    assert [c.request.url for c in aws.calls] == [CERT_URL]  # the signature was checked


def test_sns_subscription_for_another_topic_is_403(
    hook: Hook, sent: dict, aws: responses.RequestsMock
) -> None:
    envelope = sns_envelope(
        "confirm", kind="SubscriptionConfirmation", topic="arn:aws:sns:us-east-1:666:evil"
    )
    refused(hook, lambda: sns_post(hook.client, envelope), 403)
    assert len(aws.calls) == 0


# ---- every provider: size, configuration, method, address -------------------------------------

PROVIDERS = ["postmark", "sendgrid", "mailgun", "ses", "resend"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_oversized_bodies_are_413(hook: Hook, sent: dict, provider: str) -> None:
    body = b'{"pad": "' + b"x" * (1_048_576 + 10) + b'"}'
    post = lambda: hook.client.post(  # noqa: E731
        f"/webhooks/{provider}", data=body, content_type="application/json"
    )
    refused(hook, post, 413)


def test_the_size_limit_is_a_setting(project: Path, test_env: dict[str, str]) -> None:
    config = project / "newsletter.toml"
    config.write_text(
        config.read_text().replace("[provider]", "[provider]\nwebhook_max_bytes = 100")
    )
    with webhook_app(project, test_env) as hook:
        resp = sendgrid_post(hook.client, [{"event": "delivered", "pad": "x" * 200}])
    assert resp.status_code == 413


@pytest.mark.parametrize(
    ("provider", "variable"),
    [
        ("postmark", "POSTMARK_WEBHOOK_USER"),
        ("postmark", "POSTMARK_WEBHOOK_PASSWORD"),
        ("sendgrid", "SENDGRID_WEBHOOK_PUBLIC_KEY"),
        ("mailgun", "MAILGUN_WEBHOOK_SIGNING_KEY"),
        ("ses", "SES_SNS_TOPIC_ARNS"),
        ("resend", "RESEND_WEBHOOK_SECRET"),
    ],
)
def test_an_unconfigured_webhook_is_403_and_the_log_names_the_variable(
    project: Path,
    test_env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    provider: str,
    variable: str,
) -> None:
    with webhook_app(project, test_env, **{variable: ""}) as hook:
        before = snapshot(hook.store)
        resp = hook.client.post(f"/webhooks/{provider}", json={"event": "bounce"})
        assert resp.status_code == 403 and snapshot(hook.store) == before
    assert variable not in resp.get_data(as_text=True)  # said in the log, not to the caller
    assert f"set {variable} in the environment" in caplog.text


def test_unknown_provider_is_404_and_get_is_405(hook: Hook) -> None:
    assert hook.client.post("/webhooks/sparkpost", json={}).status_code == 404
    resp = hook.client.get("/webhooks/postmark")
    assert resp.status_code == 405 and "Traceback" not in resp.get_data(as_text=True)


def test_secrets_never_appear_in_answers(hook: Hook, sent: dict) -> None:
    answers = [
        postmark_post(hook.client, postmark_bounce(sent), ("x", "y")),
        mailgun_post(hook.client, mailgun_body({}, key="wrong")),
        resend_post(hook.client, resend_bounce(sent), timestamp=1),
    ]
    for resp in answers:
        text = resp.get_data(as_text=True)
        assert all(secret not in text for secret in WEBHOOK_ENV.values())


def test_a_database_failure_frees_the_mailgun_token_for_the_retry(
    hook: Hook, sent: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from subscribers.errors import DatabaseUnavailable
    from subscribers.events import Feedback

    body = mailgun_body(
        {"event": "complained", "id": "c1", "recipient": "bob@example.com", "timestamp": 1.0}
    )

    def down(self: Feedback, event: object) -> bool:
        raise DatabaseUnavailable("the subscriber database is unavailable: locked")

    with monkeypatch.context() as patch:
        patch.setattr(Feedback, "apply", down)
        first = mailgun_post(hook.client, copy.deepcopy(body))
    assert first.status_code == 503
    retry = mailgun_post(hook.client, body)  # Mailgun retries with the same signature
    assert retry.status_code == 200 and retry.json["recorded"] == 1
    assert hook.store.find("bob@example.com").status == "complained"


# ---- timestamps that are not numbers of seconds -------------------------------------------
# float() reads "nan" and "inf", and NaN compares false with any window: each is refused.

NON_FINITE = ["nan", "NaN", "inf", "-Infinity", "1e999"]


@pytest.mark.parametrize("stamp", NON_FINITE)
def test_sendgrid_non_finite_timestamp_is_refused(hook: Hook, sent: dict, stamp: str) -> None:
    post = lambda: sendgrid_post(hook.client, sendgrid_bounce(sent), timestamp=stamp)  # noqa: E731
    resp = refused(hook, post, 400)
    assert "finite" in resp.json["error"]["message"]


@pytest.mark.parametrize("stamp", NON_FINITE)
def test_mailgun_non_finite_timestamp_is_refused(hook: Hook, sent: dict, stamp: str) -> None:
    body = mailgun_body(mailgun_failed(sent), timestamp=stamp)
    resp = refused(hook, lambda: mailgun_post(hook.client, body), 400)
    assert "finite" in resp.json["error"]["message"]


@pytest.mark.parametrize("stamp", NON_FINITE)
def test_resend_non_finite_timestamp_is_refused(hook: Hook, sent: dict, stamp: str) -> None:
    post = lambda: resend_post(hook.client, resend_bounce(sent), timestamp=stamp)  # noqa: E731
    resp = refused(hook, post, 400)
    assert "finite" in resp.json["error"]["message"]


@pytest.mark.parametrize("stamp", ["NaN", "inf", "1e999"])
def test_sns_non_date_timestamp_is_refused(
    hook: Hook, sent: dict, aws: responses.RequestsMock, stamp: str
) -> None:
    envelope = sns_envelope(ses_bounce(sent), timestamp=stamp)
    refused(hook, lambda: sns_post(hook.client, envelope), 400)


@pytest.mark.parametrize(("provider", "offset"), [("sendgrid", 300), ("resend", -300)])
def test_a_timestamp_exactly_at_the_window_edge_is_accepted(
    hook: Hook, sent: dict, provider: str, offset: int
) -> None:
    """The other side of the 301 s cases: the frozen clock makes the edge exact."""
    if provider == "sendgrid":
        resp = sendgrid_post(hook.client, sendgrid_bounce(sent), timestamp=hook.now + offset)
    else:
        resp = resend_post(hook.client, resend_bounce(sent), timestamp=hook.now + offset)
    assert resp.status_code == 200, resp.get_data(as_text=True)
