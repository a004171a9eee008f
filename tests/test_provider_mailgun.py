"""Mailgun on the wire: multipart batch with recipient-variables, and its documented replies."""

from __future__ import annotations

import base64
import email
import email.policy
import json
from dataclasses import replace

import pytest
import requests
import responses
from messages import SITE, sample_message

from pipeline.errors import ConfigError, ProviderError
from pipeline.message import Message
from pipeline.providers import get_provider
from pipeline.providers.base import Status
from pipeline.providers.mailgun import MailgunProvider
from pipeline.providers.retry import RetryPolicy
from pipeline.settings import Settings

DOMAIN = "mg.hingestrength.example.com"
URL = f"https://api.mailgun.net/v3/{DOMAIN}/messages"
KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
QUEUED = {"id": "<20111114174239.25659.5817@samples.mailgun.org>", "message": "Queued. Thank you."}
BAD_TO = {"message": "'to' parameter is not a valid address. please check documentation"}
ARTICLE = "".join(f"<p>Hinge step {n}: hips back.</p>\n" for n in range(30))


def make_message(i: int, email_addr: str = "") -> Message:
    token = f"tok{i}"
    return sample_message(
        i,
        to_email=email_addr or f"reader{i}@example.com",
        subject=f"Reader {i}, master the hip hinge",
        html=f"<html><body><p>Hi Reader {i},</p>\n{ARTICLE}"
        f'<a href="https://{SITE}/u/tok{i}">Unsubscribe</a></body></html>',
        text=f"Hi Reader {i},\n\nHinge steps.\n\nUnsubscribe: https://{SITE}/u/tok{i}\n",
        headers={
            "List-Unsubscribe": f"<https://{SITE}/u/{token}>, "
            f"<mailto:unsubscribe@{SITE}?subject=unsubscribe>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "List-Id": f"Hinge Strength <updates.{SITE}>",
        },
    )


def form(body: bytes, content_type: str) -> list[tuple[str, str]]:
    """The multipart form fields of a request, in order."""
    raw = f"Content-Type: {content_type}\r\n\r\n".encode() + body
    parsed = email.message_from_bytes(raw, policy=email.policy.HTTP)
    return [
        (
            part.get_param("name", header="content-disposition"),
            part.get_payload(decode=True).decode(),
        )
        for part in parsed.iter_parts()
    ]


def fields_of(call: responses.Call) -> list[tuple[str, str]]:
    return form(call.request.body, call.request.headers["Content-Type"])


def delivered(fields: list[tuple[str, str]], to_email: str, name: str) -> str:
    """What Mailgun makes of field ``name`` for one recipient: %recipient.x% substituted."""
    value = dict(fields)[name]
    variables = json.loads(dict(fields)["recipient-variables"])[to_email]
    for key, replacement in variables.items():
        value = value.replace(f"%recipient.{key}%", replacement)
    return value


@pytest.fixture
def sleeps() -> list[float]:
    return []


def configured(settings: Settings, **options: str) -> Settings:
    return replace(
        settings,
        provider="mailgun",
        provider_options={**settings.provider_options, "mailgun_domain": DOMAIN, **options},
        env={**settings.env, "MAILGUN_API_KEY": KEY},
    )


@pytest.fixture
def provider(settings: Settings, sleeps: list[float]) -> MailgunProvider:
    built = get_provider(configured(settings), sleep=sleeps.append)
    assert isinstance(built, MailgunProvider)
    built.retry = RetryPolicy(max_retries=3, sleep=sleeps.append, random=lambda: 1.0)
    return built


@responses.activate
def test_batch_uses_recipient_variables_and_per_recipient_headers(
    provider: MailgunProvider,
) -> None:
    responses.post(URL, json=QUEUED)
    messages = [make_message(0), make_message(1), make_message(2)]

    results = provider.send_batch(messages)

    [call] = responses.calls
    assert call.request.url == URL
    expected_auth = "Basic " + base64.b64encode(f"api:{KEY}".encode()).decode()
    assert call.request.headers["Authorization"] == expected_auth
    assert call.request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    fields = fields_of(call)
    names = [name for name, _ in fields]
    assert [v for n, v in fields if n == "to"] == [m.to for m in messages]
    assert dict(fields)["from"] == "Coach Sam <coach@hingestrength.example.com>"
    assert dict(fields)["h:Reply-To"] == "coach@hingestrength.example.com"
    assert dict(fields)["o:tag"] == "hip-hinge"
    assert dict(fields)["v:campaign"] == "hip-hinge"
    assert dict(fields)["h:List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert dict(fields)["h:List-Unsubscribe"].startswith("%recipient.")
    assert names[-1] == "recipient-variables"
    variables = json.loads(dict(fields)["recipient-variables"])
    assert sorted(variables) == [m.to_email for m in messages]  # recipients never see each other
    for m in messages:
        assert delivered(fields, m.to_email, "html") == m.html
        assert delivered(fields, m.to_email, "text") == m.text
        assert delivered(fields, m.to_email, "subject") == m.subject
        assert delivered(fields, m.to_email, "h:Message-Id") == m.message_id
        assert delivered(fields, m.to_email, "v:message_id") == m.message_id
        assert delivered(fields, m.to_email, "h:List-Unsubscribe") == m.headers["List-Unsubscribe"]
        assert delivered(fields, m.to_email, "h:List-Id") == m.headers["List-Id"]
    assert [r.status for r in results] == [Status.QUEUED] * 3
    assert {r.provider_id for r in results} == {QUEUED["id"]}  # one id per batch


@responses.activate
def test_eu_region_uses_the_eu_host(settings: Settings) -> None:
    responses.post(f"https://api.eu.mailgun.net/v3/{DOMAIN}/messages", json=QUEUED)
    provider = MailgunProvider.from_settings(configured(settings, mailgun_region="eu"))

    [result] = provider.send_batch([make_message(0)])

    assert result.accepted


def test_missing_domain_says_what_to_set(settings: Settings) -> None:
    bare = replace(settings, provider="mailgun", env={"MAILGUN_API_KEY": KEY})
    with pytest.raises(ConfigError, match="provider.mailgun_domain") as caught:
        get_provider(bare)
    assert KEY not in str(caught.value)


@responses.activate
def test_invalid_address_fails_only_that_recipient(provider: MailgunProvider) -> None:
    def reply(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        tos = [v for n, v in form(request.body, request.headers["Content-Type"]) if n == "to"]
        if any("reader1@" in to for to in tos):
            return 400, {}, json.dumps(BAD_TO)
        return 200, {}, json.dumps(QUEUED)

    responses.add_callback(responses.POST, URL, callback=reply)
    messages = [make_message(0), make_message(1), make_message(2), make_message(3)]

    results = provider.send_batch(messages)

    assert [r.status for r in results] == [
        Status.QUEUED,
        Status.INVALID,
        Status.QUEUED,
        Status.QUEUED,
    ]
    assert "not a valid address" in results[1].reason
    sent = [
        to
        for call in responses.calls
        if call.response.status_code == 200
        for n, to in fields_of(call)
        if n == "to"
    ]
    assert sorted(sent) == sorted(m.to for m in messages if m.to_email != "reader1@example.com")


@responses.activate
def test_request_level_400_raises(provider: MailgunProvider) -> None:
    responses.post(URL, status=400, json={"message": "from parameter is missing"})

    with pytest.raises(ProviderError) as caught:
        provider.send_batch([make_message(0), make_message(1)])

    assert not caught.value.retryable and "from parameter is missing" in str(caught.value)
    assert len(responses.calls) == 1


@responses.activate
def test_401_names_the_key_without_showing_it(provider: MailgunProvider) -> None:
    responses.post(URL, status=401, body="Forbidden")

    with pytest.raises(ProviderError) as caught:
        provider.send_batch([make_message(0)])

    assert caught.value.status == 401 and "MAILGUN_API_KEY" in str(caught.value)
    assert KEY not in str(caught.value) and KEY not in repr(provider)


@responses.activate
def test_404_unknown_domain_points_at_domain_and_region(provider: MailgunProvider) -> None:
    responses.post(URL, status=404, json={"message": f"Domain not found: {DOMAIN}"})

    with pytest.raises(ProviderError, match="mailgun_region"):
        provider.send_batch([make_message(0)])


@responses.activate
def test_429_honours_retry_after(provider: MailgunProvider, sleeps: list[float]) -> None:
    responses.post(
        URL, status=429, headers={"Retry-After": "3"}, json={"message": "Too many requests"}
    )
    responses.post(URL, json=QUEUED)

    [result] = provider.send_batch([make_message(0)])

    assert result.accepted and sleeps == [3.0]


@responses.activate
def test_429_without_retry_after_backs_off(provider: MailgunProvider, sleeps: list[float]) -> None:
    responses.post(URL, status=429, json={"message": "Too many requests"})
    responses.post(URL, status=429, json={"message": "Too many requests"})
    responses.post(URL, json=QUEUED)

    provider.send_batch([make_message(0)])

    assert sleeps == [0.5, 1.0]


@responses.activate
def test_500_gives_up_retryable(provider: MailgunProvider) -> None:
    responses.post(URL, status=503, body="Service Unavailable")

    with pytest.raises(ProviderError) as caught:
        provider.send_batch([make_message(0)])

    assert caught.value.retryable and caught.value.status == 503
    assert len(responses.calls) == 4


@responses.activate
def test_timeouts(provider: MailgunProvider, sleeps: list[float]) -> None:
    responses.post(URL, body=requests.ConnectTimeout("connect timed out"))
    responses.post(URL, body=requests.ReadTimeout("read timed out"))

    (result,) = provider.send_batch([make_message(0)])
    assert result.status == Status.UNKNOWN  # may have been accepted: never sent twice

    assert len(responses.calls) == 2  # the refused connection was retried, the lost reply not
    assert len(sleeps) == 1
