"""Postmark on the wire: /email/batch request shape and its documented replies."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import requests
import responses
from messages import SITE, sample_message

from pipeline.errors import ProviderError
from pipeline.message import Message
from pipeline.providers import get_provider
from pipeline.providers.base import Status
from pipeline.providers.http import OutcomeUnknown
from pipeline.providers.postmark import PostmarkProvider
from pipeline.providers.retry import RetryPolicy
from pipeline.settings import Settings

URL = "https://api.postmarkapp.com/email/batch"
TOKEN = "pm-server-token-0f1e2d3c"
INACTIVE = (
    "You tried to send to recipient(s) that have been marked as inactive.\n"
    "Found inactive addresses: reader1@example.com.\n"
    "Inactive recipients are ones that have generated a hard bounce or a spam complaint. "
)


def make_message(i: int) -> Message:
    return sample_message(
        i,
        headers={
            "List-Unsubscribe": f"<https://{SITE}/u/t{i}>, "
            f"<mailto:unsubscribe@{SITE}?subject=unsubscribe>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "List-Id": f"Hinge Strength <updates.{SITE}>",
            "Feedback-ID": "hip-hinge:updates:hinge",
        },
    )


def ok_item(i: int) -> dict[str, object]:
    # The documented batch reply item.
    return {
        "ErrorCode": 0,
        "Message": "OK",
        "MessageID": f"b7bc2f4a-e38e-4336-af7d-e6c392c2f81{i}",
        "SubmittedAt": "2010-11-26T12:01:05.1794748-05:00",
        "To": f"reader{i}@example.com",
    }


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def provider(settings: Settings, sleeps: list[float]) -> PostmarkProvider:
    configured = replace(
        settings, provider="postmark", env={**settings.env, "POSTMARK_SERVER_TOKEN": TOKEN}
    )
    built = get_provider(configured, sleep=sleeps.append)
    assert isinstance(built, PostmarkProvider)
    built.retry = RetryPolicy(max_retries=3, sleep=sleeps.append, random=lambda: 1.0)
    return built


@responses.activate
def test_batch_request_is_the_documented_shape(provider: PostmarkProvider) -> None:
    responses.post(URL, json=[ok_item(0), ok_item(1)])

    results = provider.send_batch([make_message(0), make_message(1)])

    request = responses.calls[0].request
    assert request.url == URL
    assert request.headers["X-Postmark-Server-Token"] == TOKEN
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Content-Type"] == "application/json"
    body = json.loads(request.body)
    assert len(body) == 2
    assert body[0] == {
        "From": "Coach Sam <coach@hingestrength.example.com>",
        "To": "Reader 0 <reader0@example.com>",
        "Subject": "Master the Hip Hinge",
        "HtmlBody": "<p>Hi Reader 0</p>",
        "TextBody": "Hi Reader 0",
        "Headers": [
            {"Name": "Message-ID", "Value": "<m0.1700000000@hingestrength.example.com>"},
            {
                "Name": "List-Unsubscribe",
                "Value": "<https://hingestrength.example.com/u/t0>, "
                "<mailto:unsubscribe@hingestrength.example.com?subject=unsubscribe>",
            },
            {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"},
            {"Name": "List-Id", "Value": "Hinge Strength <updates.hingestrength.example.com>"},
            {"Name": "Feedback-ID", "Value": "hip-hinge:updates:hinge"},
        ],
        "Metadata": {
            "campaign": "hip-hinge",
            "message_id": "<m0.1700000000@hingestrength.example.com>",
        },
        "MessageStream": "broadcast",
        "ReplyTo": "coach@hingestrength.example.com",
        "Tag": "hip-hinge",
    }
    assert body[1]["To"] == "Reader 1 <reader1@example.com>"
    assert [r.status for r in results] == [Status.QUEUED, Status.QUEUED]
    assert [r.provider_id for r in results] == [ok_item(0)["MessageID"], ok_item(1)["MessageID"]]
    assert results[0].message_id == "<m0.1700000000@hingestrength.example.com>"


@responses.activate
def test_partial_batch_failure_is_per_recipient(provider: PostmarkProvider) -> None:
    responses.post(
        URL,
        json=[
            ok_item(0),
            {"ErrorCode": 406, "Message": INACTIVE},
            {"ErrorCode": 300, "Message": "Invalid 'To' address: 'reader2@example'."},
        ],
    )

    results = provider.send_batch([make_message(0), make_message(1), make_message(2)])

    assert results[0].accepted
    assert results[1].status == Status.REJECTED
    assert results[1].suppress and not results[1].retryable
    assert "inactive" in results[1].reason
    assert results[2].status == Status.INVALID
    assert not results[2].suppress
    assert "Invalid 'To' address" in results[2].reason


@responses.activate
def test_account_error_in_every_item_raises_with_what_to_fix(provider: PostmarkProvider) -> None:
    refused = {"ErrorCode": 405, "Message": "Not allowed to send: you have run out of credits."}
    responses.post(URL, json=[refused, refused])

    with pytest.raises(ProviderError) as caught:
        provider.send_batch([make_message(0), make_message(1)])

    assert not caught.value.retryable
    assert "credits" in str(caught.value)


@responses.activate
def test_account_error_after_some_accepted_keeps_the_acceptances(
    provider: PostmarkProvider,
) -> None:
    refused = {"ErrorCode": 405, "Message": "Not allowed to send: you have run out of credits."}
    responses.post(URL, json=[ok_item(0), refused])

    results = provider.send_batch([make_message(0), make_message(1)])

    assert results[0].accepted
    assert results[1].status == Status.FAILED and results[1].retryable


@responses.activate
def test_401_says_which_token_to_check_and_never_shows_it(provider: PostmarkProvider) -> None:
    responses.post(
        URL,
        status=401,
        json={
            "ErrorCode": 10,
            "Message": "No Account or Server API tokens were supplied in the HTTP headers.",
        },
    )

    with pytest.raises(ProviderError) as caught:
        provider.send_batch([make_message(0)])

    error = caught.value
    assert error.status == 401 and not error.retryable
    assert "POSTMARK_SERVER_TOKEN" in str(error)
    assert TOKEN not in str(error) and TOKEN not in repr(provider)
    assert len(responses.calls) == 1


@responses.activate
def test_422_request_error_raises_with_postmarks_reason(provider: PostmarkProvider) -> None:
    responses.post(
        URL, status=422, json={"ErrorCode": 300, "Message": "Invalid 'From' address: 'coach'."}
    )

    with pytest.raises(ProviderError) as caught:
        provider.send_batch([make_message(0), make_message(1)])

    assert caught.value.status == 422 and not caught.value.retryable
    assert "Invalid 'From' address" in str(caught.value)


@responses.activate
def test_422_inactive_single_recipient_is_a_result(provider: PostmarkProvider) -> None:
    responses.post(URL, status=422, json={"ErrorCode": 406, "Message": INACTIVE})

    [result] = provider.send_batch([make_message(1)])

    assert result.status == Status.REJECTED and result.suppress


@responses.activate
def test_429_honours_retry_after(provider: PostmarkProvider, sleeps: list[float]) -> None:
    responses.post(
        URL,
        status=429,
        headers={"Retry-After": "7"},
        json={"ErrorCode": 429, "Message": "Rate limit exceeded"},
    )
    responses.post(URL, json=[ok_item(0)])

    [result] = provider.send_batch([make_message(0)])

    assert result.accepted
    assert sleeps == [7.0]
    assert len(responses.calls) == 2


@responses.activate
def test_429_without_retry_after_backs_off_exponentially(
    provider: PostmarkProvider, sleeps: list[float]
) -> None:
    for _ in range(3):
        responses.post(URL, status=429, json={"ErrorCode": 429, "Message": "Rate limit exceeded"})
    responses.post(URL, json=[ok_item(0)])

    [result] = provider.send_batch([make_message(0)])

    assert result.accepted
    assert sleeps == [0.5, 1.0, 2.0]  # full jitter with random() == 1.0


@responses.activate
def test_503_retries_then_gives_up_retryable(
    provider: PostmarkProvider, sleeps: list[float]
) -> None:
    responses.post(URL, status=503, json={"ErrorCode": 503, "Message": "Service unavailable"})

    with pytest.raises(ProviderError) as caught:
        provider.send_batch([make_message(0)])

    assert caught.value.retryable and caught.value.status == 503
    assert len(responses.calls) == 4  # the try and 3 retries
    assert len(sleeps) == 3


@responses.activate
@pytest.mark.parametrize("status", [500, 502, 504])
def test_500_502_504_may_have_been_accepted_and_are_not_resent(
    provider: PostmarkProvider, sleeps: list[float], status: int
) -> None:
    responses.post(URL, status=status, json={"ErrorCode": status, "Message": "gateway"})

    with pytest.raises(OutcomeUnknown) as caught:
        provider.send_batch([make_message(0)])

    assert len(responses.calls) == 1 and sleeps == []
    assert f"HTTP {status}" in str(caught.value)


@responses.activate
def test_connect_timeout_is_retried(provider: PostmarkProvider, sleeps: list[float]) -> None:
    responses.post(URL, body=requests.ConnectTimeout("connect timed out"))
    responses.post(URL, json=[ok_item(0)])

    [result] = provider.send_batch([make_message(0)])

    assert result.accepted and len(sleeps) == 1


@responses.activate
def test_read_timeout_is_not_resent_blindly(provider: PostmarkProvider) -> None:
    responses.post(URL, body=requests.ReadTimeout("read timed out"))

    with pytest.raises(OutcomeUnknown) as caught:
        provider.send_batch([make_message(0)])

    assert len(responses.calls) == 1  # Postmark has no idempotency key: no second POST
    assert caught.value.retryable
    assert "may have accepted" in str(caught.value)


def test_api_base_url_overrides_the_host(settings: Settings) -> None:
    options = {**settings.provider_options, "api_base_url": "http://127.0.0.1:9999"}
    configured = replace(settings, provider_options=options, env={"POSTMARK_SERVER_TOKEN": TOKEN})
    provider = PostmarkProvider.from_settings(configured)
    assert provider.base_url == "http://127.0.0.1:9999"


def test_batch_above_500_is_refused(provider: PostmarkProvider) -> None:
    with pytest.raises(ValueError, match="at most 500"):
        provider.send_batch([make_message(i) for i in range(501)])


# ---- the ErrorCode table (postmarkapp.com/developer/api/overview#error-codes) ------------

REQUEST_BUG_CODES = {
    402: "Invalid JSON",
    403: "Incompatible JSON",
    409: "JSON required",
    410: "Too many batch messages",
}


@pytest.mark.parametrize("code", REQUEST_BUG_CODES)
@responses.activate
def test_request_bugs_are_not_retryable(provider: PostmarkProvider, code: int) -> None:
    """402/403/409/410 say our request was malformed: the same request fails again."""
    bug = {"ErrorCode": code, "Message": REQUEST_BUG_CODES[code]}
    responses.post(URL, json=[ok_item(0), bug])
    results = provider.send_batch([make_message(0), make_message(1)])
    assert results[0].accepted
    assert results[1].status == Status.FAILED and not results[1].retryable
    assert str(code) in results[1].reason


@pytest.mark.parametrize("code", REQUEST_BUG_CODES)
@responses.activate
def test_a_request_bug_for_the_whole_request_says_it_is_a_bug(
    provider: PostmarkProvider, code: int
) -> None:
    responses.post(URL, status=422, json={"ErrorCode": code, "Message": REQUEST_BUG_CODES[code]})
    with pytest.raises(ProviderError) as caught:
        provider.send_batch([make_message(0), make_message(1)])
    assert not caught.value.retryable
    assert "a bug, please report it" in str(caught.value)


@pytest.mark.parametrize("code", [405, 412, 413])
@responses.activate
def test_account_states_are_retryable_once_fixed(provider: PostmarkProvider, code: int) -> None:
    refused = {"ErrorCode": code, "Message": "refused"}
    responses.post(URL, json=[ok_item(0), refused])
    results = provider.send_batch([make_message(0), make_message(1)])
    assert results[1].status == Status.FAILED and results[1].retryable


@responses.activate
def test_413_means_the_account_may_not_send(provider: PostmarkProvider) -> None:
    """413 is "Account May Not Send" (the account is stopped), not a pending approval
    (that is 412) and not a recipient problem."""
    responses.post(URL, status=422, json={"ErrorCode": 413, "Message": "Account may not send."})
    with pytest.raises(ProviderError) as caught:
        provider.send_batch([make_message(0)])
    text = str(caught.value)
    assert "stopped this account from sending" in text and "pending" not in text
