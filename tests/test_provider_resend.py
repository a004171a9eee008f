"""Resend on the wire: /emails/batch with Idempotency-Key, and its documented replies."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import requests
import responses
from messages import sample_message

from pipeline.errors import ProviderError
from pipeline.message import Message
from pipeline.providers import get_provider
from pipeline.providers.base import Status
from pipeline.providers.resend import ResendProvider, idempotency_key
from pipeline.providers.retry import RetryPolicy
from pipeline.settings import Settings

URL = "https://api.resend.com/emails/batch"
KEY = "re_123456789_secretsecret"
IDS = ["ae2014de-c168-4c61-8267-70d2662a1ce1", "faccb7a5-8a28-4e9a-ac64-8da1cc3bc1cb"]


def make_message(i: int, name: str = "") -> Message:
    return sample_message(i, to_name=name or f"Reader {i}", metadata={"campaign": "hip hinge/2026"})


def error(status: int, name: str, message: str) -> dict[str, object]:
    return {"statusCode": status, "message": message, "name": name}


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def provider(settings: Settings, sleeps: list[float]) -> ResendProvider:
    configured = replace(settings, provider="resend", env={**settings.env, "RESEND_API_KEY": KEY})
    built = get_provider(configured, sleep=sleeps.append)
    assert isinstance(built, ResendProvider)
    built.retry = RetryPolicy(max_retries=3, sleep=sleeps.append, random=lambda: 1.0)
    return built


@responses.activate
def test_batch_request_shape_and_stable_idempotency_key(provider: ResendProvider) -> None:
    responses.post(URL, json={"data": [{"id": IDS[0]}, {"id": IDS[1]}]})
    messages = [make_message(0), make_message(1, "Dana, Strong")]

    results = provider.send_batch(messages)
    provider.send_batch(messages)  # the same batch again, e.g. after a crash

    first, again = responses.calls
    assert first.request.url == URL
    assert first.request.headers["Authorization"] == f"Bearer {KEY}"
    assert first.request.headers["x-batch-validation"] == "permissive"
    key = first.request.headers["Idempotency-Key"]
    assert key == again.request.headers["Idempotency-Key"] == idempotency_key(messages)
    assert 1 <= len(key) <= 256
    assert idempotency_key(messages[:1]) != key
    body = json.loads(first.request.body)
    assert body[0] == {
        "from": "Coach Sam <coach@hingestrength.example.com>",
        "to": ["Reader 0 <reader0@example.com>"],
        "subject": "Master the Hip Hinge",
        "html": "<p>Hi Reader 0</p>",
        "text": "Hi Reader 0",
        "headers": {"Message-ID": messages[0].message_id, **messages[0].headers},
        "reply_to": ["coach@hingestrength.example.com"],
        "tags": [
            {"name": "tag", "value": "hip-hinge"},
            {"name": "campaign", "value": "hip_hinge_2026"},  # only letters, digits, _ and -
        ],
    }
    # A quoted display name is sent as an RFC 2047 word (Resend refuses quotes).
    assert body[1]["to"] == ["=?utf-8?q?Dana=2C_Strong?= <reader1@example.com>"]
    assert ResendProvider.idempotent
    assert [r.provider_id for r in results] == IDS
    assert all(r.status == Status.QUEUED for r in results)


@responses.activate
def test_permissive_partial_failure_fails_only_that_email(provider: ResendProvider) -> None:
    responses.post(
        URL,
        json={
            "data": [{"id": IDS[0]}, {"id": IDS[1]}],
            "errors": [{"index": 1, "message": "Invalid `to` field."}],
        },
    )

    results = provider.send_batch([make_message(0), make_message(1), make_message(2)])

    assert [r.status for r in results] == [Status.QUEUED, Status.INVALID, Status.QUEUED]
    assert [r.provider_id for r in results] == [IDS[0], "", IDS[1]]
    assert results[1].reason == "Invalid `to` field."


@responses.activate
def test_invalid_key_names_it_without_showing_it(provider: ResendProvider) -> None:
    responses.post(URL, status=403, json=error(403, "invalid_api_key", "API key is invalid"))

    with pytest.raises(ProviderError) as caught:
        provider.send_batch([make_message(0)])

    assert caught.value.status == 403 and not caught.value.retryable
    assert "RESEND_API_KEY" in str(caught.value)
    assert KEY not in str(caught.value) and KEY not in repr(provider)


@responses.activate
def test_missing_key_401(provider: ResendProvider) -> None:
    responses.post(
        URL,
        status=401,
        json=error(401, "missing_api_key", "Missing API key in the authorization header"),
    )

    with pytest.raises(ProviderError, match="RESEND_API_KEY"):
        provider.send_batch([make_message(0)])


@responses.activate
def test_422_request_error_raises_with_resends_words(provider: ResendProvider) -> None:
    responses.post(
        URL, status=422, json=error(422, "invalid_from_address", "Invalid `from` field.")
    )

    with pytest.raises(ProviderError) as caught:
        provider.send_batch([make_message(0)])

    assert not caught.value.retryable and "Invalid `from` field." in str(caught.value)
    assert len(responses.calls) == 1


@responses.activate
def test_429_honours_lowercase_retry_after(provider: ResendProvider, sleeps: list[float]) -> None:
    responses.post(
        URL,
        status=429,
        headers={"retry-after": "2"},
        json=error(
            429,
            "rate_limit_exceeded",
            "Too many requests. Please limit the number of requests per second.",
        ),
    )
    responses.post(URL, json={"data": [{"id": IDS[0]}]})

    [result] = provider.send_batch([make_message(0)])

    assert result.accepted and sleeps == [2.0]


@responses.activate
def test_429_without_retry_after_backs_off(provider: ResendProvider, sleeps: list[float]) -> None:
    responses.post(URL, status=429, json=error(429, "rate_limit_exceeded", "Too many requests."))
    responses.post(URL, json={"data": [{"id": IDS[0]}]})

    provider.send_batch([make_message(0)])

    assert sleeps == [0.5]


QUOTAS = {
    "daily_quota_exceeded": ("You have reached your daily email sending quota.", "daily quota"),
    "monthly_quota_exceeded": (
        "You have reached your monthly email sending quota.",
        "monthly quota",
    ),
}


@pytest.mark.parametrize("name", QUOTAS)
@responses.activate
def test_a_used_up_quota_stops_at_once_and_is_retryable_later(
    provider: ResendProvider, sleeps: list[float], name: str
) -> None:
    """Resend answers 429 for both quotas, like its rate limit: the rate limit is waited
    out, a quota is not (it renews the next day or month)."""
    message, words = QUOTAS[name]
    responses.post(URL, status=429, json=error(429, name, message), headers={"retry-after": "1"})
    responses.post(URL, json={"data": [{"id": "never"}]})

    with pytest.raises(ProviderError) as caught:
        provider.send_batch([make_message(0)])

    assert caught.value.retryable and words in str(caught.value)
    assert sleeps == [] and len(responses.calls) == 1


@responses.activate
def test_the_rate_limit_429_is_waited_out(provider: ResendProvider, sleeps: list[float]) -> None:
    """The other side: rate_limit_exceeded is retried after retry-after."""
    responses.post(
        URL,
        status=429,
        json=error(429, "rate_limit_exceeded", "Too many requests."),
        headers={"retry-after": "2"},
    )
    responses.post(URL, json={"data": [{"id": "e-0"}]})
    [result] = provider.send_batch([make_message(0)])
    assert result.accepted and sleeps == [2.0] and len(responses.calls) == 2


@responses.activate
def test_409_concurrent_is_retried_but_changed_payload_is_not(provider: ResendProvider) -> None:
    responses.post(
        URL,
        status=409,
        json=error(
            409,
            "concurrent_idempotent_requests",
            "Same idempotency key used while original request is still in progress.",
        ),
    )
    responses.post(
        URL,
        status=409,
        json=error(
            409,
            "invalid_idempotent_request",
            "Same idempotency key used with a different request payload.",
        ),
    )

    with pytest.raises(ProviderError) as caught:
        provider.send_batch([make_message(0)])

    assert len(responses.calls) == 2
    assert not caught.value.retryable and "different request payload" in str(caught.value)


@responses.activate
def test_500_gives_up_retryable(provider: ResendProvider) -> None:
    responses.post(
        URL, status=500, json=error(500, "internal_server_error", "An unexpected error occurred.")
    )

    with pytest.raises(ProviderError) as caught:
        provider.send_batch([make_message(0)])

    assert caught.value.retryable and len(responses.calls) == 4


@responses.activate
def test_lost_reply_is_retried_with_the_same_key(
    provider: ResendProvider, sleeps: list[float]
) -> None:
    responses.post(URL, body=requests.ReadTimeout("read timed out"))
    responses.post(URL, json={"data": [{"id": IDS[0]}]})

    [result] = provider.send_batch([make_message(0)])

    assert result.accepted and len(sleeps) == 1
    keys = {call.request.headers["Idempotency-Key"] for call in responses.calls}
    assert len(keys) == 1
