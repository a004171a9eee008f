"""SendGrid on the wire: /v3/mail/send personalizations and its documented replies."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import pytest
import requests
import responses
from messages import SITE, sample_message

from pipeline.errors import ProviderError
from pipeline.message import Message
from pipeline.providers import get_provider
from pipeline.providers.base import Status
from pipeline.providers.retry import RetryPolicy
from pipeline.providers.sendgrid import SendGridProvider
from pipeline.settings import Settings

URL = "https://api.sendgrid.com/v3/mail/send"
KEY = "SG.secret-key-abcdef.0123456789"
ARTICLE = "".join(
    f'<p style="margin:0">Hinge step {n}: hips back, spine long.</p>\n' for n in range(40)
)


def make_message(i: int, name: str = "") -> Message:
    name = name or f"Reader {i}"
    token = f"tok{i}"
    return sample_message(
        i,
        to_name=name,
        subject=f"{name}, master the hip hinge",
        html=f"<html><body><p>Hi {name},</p>\n{ARTICLE}"
        f'<a href="https://{SITE}/u/tok{i}">Unsubscribe</a></body></html>',
        text=f"Hi {name},\n\nHinge steps.\n\nUnsubscribe: https://{SITE}/u/tok{i}\n",
        headers={
            "List-Unsubscribe": f"<https://{SITE}/u/{token}>, "
            f"<mailto:unsubscribe@{SITE}?subject=unsubscribe>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "List-Id": f"Hinge Strength <updates.{SITE}>",
            "Feedback-ID": "hip-hinge:updates:hinge",
        },
    )


def rebuilt(body: dict[str, Any], index: int, kind: str) -> str:
    """What SendGrid delivers to personalization ``index``: content with substitutions."""
    [content] = [c["value"] for c in body["content"] if c["type"] == kind]
    for tag, value in body["personalizations"][index].get("substitutions", {}).items():
        content = content.replace(tag, value)
    return content


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def provider(settings: Settings, sleeps: list[float]) -> SendGridProvider:
    configured = replace(
        settings, provider="sendgrid", env={**settings.env, "SENDGRID_API_KEY": KEY}
    )
    built = get_provider(configured, sleep=sleeps.append)
    assert isinstance(built, SendGridProvider)
    built.retry = RetryPolicy(max_retries=3, sleep=sleeps.append, random=lambda: 1.0)
    return built


@responses.activate
def test_one_personalization_per_recipient_with_our_headers(provider: SendGridProvider) -> None:
    responses.post(URL, status=202, body="", headers={"X-Message-Id": "sg-batch-abc123"})
    messages = [make_message(0), make_message(1, "Dana, Strong"), make_message(2)]

    results = provider.send_batch(messages)

    [call] = responses.calls
    assert call.request.url == URL
    assert call.request.headers["Authorization"] == f"Bearer {KEY}"
    assert call.request.headers["Content-Type"] == "application/json"
    body = json.loads(call.request.body)
    assert body["from"] == {"email": "coach@hingestrength.example.com", "name": "Coach Sam"}
    assert body["reply_to"] == {"email": "coach@hingestrength.example.com"}
    assert body["categories"] == ["hip-hinge"]
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert len(body["personalizations"]) == 3
    first = body["personalizations"][0]
    assert first["to"] == [{"email": "reader0@example.com", "name": "Reader 0"}]
    assert first["subject"] == "Reader 0, master the hip hinge"
    assert first["headers"] == {"Message-ID": messages[0].message_id, **messages[0].headers}
    assert first["custom_args"] == {"campaign": "hip-hinge", "message_id": messages[0].message_id}
    # A display name with a comma is quoted (SendGrid's personalizations bug, per anymail).
    assert body["personalizations"][1]["to"][0]["name"] == '"Dana, Strong"'
    # The shared body is sent once; each recipient gets exactly their own body back.
    assert body["content"][1]["value"].count("Hinge step 39") == 1
    for i, m in enumerate(messages):
        assert rebuilt(body, i, "text/html") == m.html
        assert rebuilt(body, i, "text/plain") == m.text
    assert [r.status for r in results] == [Status.QUEUED] * 3
    assert {r.provider_id for r in results} == {"sg-batch-abc123"}
    assert [r.message_id for r in results] == [m.message_id for m in messages]


@responses.activate
def test_invalid_recipient_fails_alone_and_the_rest_is_sent(provider: SendGridProvider) -> None:
    responses.post(
        URL,
        status=400,
        json={
            "errors": [
                {
                    "message": "Does not contain a valid address.",
                    "field": "personalizations.1.to.0.email",
                    "help": "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html",
                }
            ]
        },
    )
    responses.post(URL, status=202, body="", headers={"X-Message-Id": "sg-2"})

    results = provider.send_batch([make_message(0), make_message(1), make_message(2)])

    assert [r.status for r in results] == [Status.QUEUED, Status.INVALID, Status.QUEUED]
    assert results[1].reason == "Does not contain a valid address."
    resent = json.loads(responses.calls[1].request.body)
    assert [p["to"][0]["email"] for p in resent["personalizations"]] == [
        "reader0@example.com",
        "reader2@example.com",
    ]


@responses.activate
def test_request_level_400_raises_with_sendgrids_words(provider: SendGridProvider) -> None:
    responses.post(
        URL,
        status=400,
        json={
            "errors": [
                {
                    "field": "from.email",
                    "message": "The from email does not contain a valid address.",
                }
            ]
        },
    )

    with pytest.raises(ProviderError) as caught:
        provider.send_batch([make_message(0)])

    assert not caught.value.retryable and caught.value.status == 400
    assert "from.email: The from email does not contain a valid address." in str(caught.value)


@responses.activate
def test_401_names_the_key_to_check_without_showing_it(provider: SendGridProvider) -> None:
    responses.post(
        URL,
        status=401,
        json={
            "errors": [
                {
                    "field": None,
                    "message": "The provided authorization grant is invalid, expired, or revoked",
                    "help": None,
                }
            ]
        },
    )

    with pytest.raises(ProviderError) as caught:
        provider.send_batch([make_message(0)])

    assert "SENDGRID_API_KEY" in str(caught.value)
    assert KEY not in str(caught.value) and KEY not in repr(provider)


@responses.activate
def test_429_waits_until_rate_limit_reset(provider: SendGridProvider, sleeps: list[float]) -> None:
    reset = int(time.time()) + 30
    responses.post(
        URL,
        status=429,
        headers={"X-RateLimit-Reset": str(reset)},
        json={"errors": [{"field": None, "message": "too many requests"}]},
    )
    responses.post(URL, status=202, body="")

    [result] = provider.send_batch([make_message(0)])

    assert result.accepted
    assert len(sleeps) == 1 and 27 <= sleeps[0] <= 30


@responses.activate
def test_429_without_reset_backs_off(provider: SendGridProvider, sleeps: list[float]) -> None:
    responses.post(
        URL, status=429, json={"errors": [{"field": None, "message": "too many requests"}]}
    )
    responses.post(URL, status=202, body="")

    provider.send_batch([make_message(0)])

    assert sleeps == [0.5]


@responses.activate
def test_503_gives_up_retryable(provider: SendGridProvider) -> None:
    responses.post(URL, status=503, body="Internal Server Error")

    with pytest.raises(ProviderError) as caught:
        provider.send_batch([make_message(0)])

    assert caught.value.retryable and len(responses.calls) == 4


@responses.activate
def test_500_is_an_unknown_outcome_sent_once(provider: SendGridProvider) -> None:
    responses.post(URL, status=500, body="Internal Server Error")

    (result,) = provider.send_batch([make_message(0)])
    assert result.status == Status.UNKNOWN  # may have been accepted: never sent twice

    assert len(responses.calls) == 1


@responses.activate
def test_read_timeout_raises_outcome_unknown(provider: SendGridProvider) -> None:
    responses.post(URL, body=requests.ReadTimeout("read timed out"))

    (result,) = provider.send_batch([make_message(0)])
    assert result.status == Status.UNKNOWN  # may have been accepted: never sent twice
    assert len(responses.calls) == 1


@responses.activate
def test_same_address_twice_goes_in_separate_requests(provider: SendGridProvider) -> None:
    responses.post(URL, status=202, body="")
    twin = replace(make_message(0), message_id="<twin@hingestrength.example.com>")

    results = provider.send_batch([make_message(0), twin])

    assert len(responses.calls) == 2
    assert all(r.accepted for r in results)


@responses.activate
def test_bodies_that_do_not_merge_are_sent_per_body(provider: SendGridProvider) -> None:
    responses.post(URL, status=202, body="")
    odd = replace(make_message(1), text="One line only")

    results = provider.send_batch([make_message(0), odd])

    assert len(responses.calls) == 2
    for call in responses.calls:
        body = json.loads(call.request.body)
        assert "substitutions" not in body["personalizations"][0]
    assert [r.message_id for r in results] == [make_message(0).message_id, odd.message_id]


@responses.activate
def test_failure_of_a_later_request_keeps_earlier_acceptances(provider: SendGridProvider) -> None:
    responses.post(URL, status=202, body="")
    responses.post(
        URL,
        status=403,
        json={
            "errors": [
                {
                    "field": "from",
                    "message": "The from address does not match a verified Sender Identity.",
                }
            ]
        },
    )
    odd = replace(make_message(1), text="One line only")

    results = provider.send_batch([make_message(0), odd])

    assert results[0].accepted
    assert results[1].status == Status.FAILED and results[1].retryable
    assert "not sent" in results[1].reason
