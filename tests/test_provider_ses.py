"""Amazon SES v2 on the wire: SigV4-signed SendEmail and its documented replies."""

from __future__ import annotations

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
from pipeline.providers.retry import RetryPolicy
from pipeline.providers.ses import SesProvider
from pipeline.settings import Settings

URL = "https://email.eu-west-1.amazonaws.com/v2/email/outbound-emails"
ACCESS = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEXAMPLEsessiontoken"
UNVERIFIED = (
    "Email address is not verified. The following identities failed the check in region EU-WEST-1: "
)


def make_message(i: int) -> Message:
    msg = sample_message(i)
    msg.headers["List-Id"] = f"Hinge Strength Café <updates.{SITE}>"
    return msg


def ses_error(status: int, kind: str, message: str) -> dict[str, object]:
    """An SES v2 error reply: type in x-amzn-ErrorType, {"message"} in the body."""
    return {
        "status": status,
        "headers": {
            "x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazonaws.sesv2/"
        },
        "json": {"message": message},
    }


def configured(settings: Settings, **env: str) -> Settings:
    options = {
        **settings.provider_options,
        "ses_region": "eu-west-1",
        "ses_configuration_set": "newsletter",
    }
    secrets = {
        "AWS_ACCESS_KEY_ID": ACCESS,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_SESSION_TOKEN": TOKEN,
    }
    return replace(
        settings, provider="ses", provider_options=options, env={**settings.env, **secrets, **env}
    )


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def provider(settings: Settings, sleeps: list[float]) -> SesProvider:
    built = get_provider(configured(settings), sleep=sleeps.append)
    assert isinstance(built, SesProvider)
    built.retry = RetryPolicy(max_retries=3, sleep=sleeps.append, random=lambda: 1.0)
    return built


@responses.activate
def test_send_email_is_signed_and_carries_our_headers(provider: SesProvider) -> None:
    responses.post(URL, json={"MessageId": "0100018c-ses-0"})
    responses.post(URL, json={"MessageId": "0100018c-ses-1"})

    results = provider.send_batch([make_message(0), make_message(1)])

    assert len(responses.calls) == 2  # one SendEmail per message
    request = responses.calls[0].request
    assert request.url == URL
    auth = request.headers["Authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS}/")
    assert "/eu-west-1/ses/aws4_request" in auth and "Signature=" in auth
    assert request.headers["X-Amz-Security-Token"] == TOKEN
    assert "x-amz-date" in {k.lower() for k in request.headers}
    assert SECRET not in json.dumps(dict(request.headers))
    assert json.loads(request.body) == {
        "FromEmailAddress": "Coach Sam <coach@hingestrength.example.com>",
        "Destination": {"ToAddresses": ["Reader 0 <reader0@example.com>"]},
        "Content": {
            "Simple": {
                "Subject": {"Data": "Master the Hip Hinge", "Charset": "UTF-8"},
                "Body": {
                    "Text": {"Data": "Hi Reader 0", "Charset": "UTF-8"},
                    "Html": {"Data": "<p>Hi Reader 0</p>", "Charset": "UTF-8"},
                },
                "Headers": [
                    {"Name": "Message-ID", "Value": "<m0.1700000000@hingestrength.example.com>"},
                    {
                        "Name": "List-Unsubscribe",
                        "Value": "<https://hingestrength.example.com/u/t0>",
                    },
                    {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"},
                    # SES header values are printable ASCII: other text is RFC 2047 encoded.
                    {
                        "Name": "List-Id",
                        "Value": "Hinge Strength =?utf-8?q?Caf=C3=A9?="
                        " <updates.hingestrength.example.com>",
                    },
                ],
            }
        },
        "ReplyToAddresses": ["coach@hingestrength.example.com"],
        "EmailTags": [
            {"Name": "tag", "Value": "hip-hinge"},
            {"Name": "campaign", "Value": "hip-hinge"},
        ],
        "ConfigurationSetName": "newsletter",
    }
    assert [r.provider_id for r in results] == ["0100018c-ses-0", "0100018c-ses-1"]
    assert all(r.status == Status.QUEUED for r in results)


@responses.activate
def test_rejected_recipient_fails_alone(provider: SesProvider) -> None:
    responses.post(
        URL,
        **ses_error(
            400,
            "MessageRejected",
            f"{UNVERIFIED}reader0@example.com",
        ),
    )
    responses.post(URL, json={"MessageId": "0100018c-ses-1"})

    results = provider.send_batch([make_message(0), make_message(1)])

    assert results[0].status == Status.REJECTED and "not verified" in results[0].reason
    assert results[1].accepted


@responses.activate
def test_invalid_address_is_invalid(provider: SesProvider) -> None:
    responses.post(URL, **ses_error(400, "BadRequestException", "Missing final '@domain'"))

    [result] = provider.send_batch([make_message(0)])

    assert result.status == Status.INVALID and not result.retryable


@responses.activate
def test_unverified_sender_raises_with_what_to_fix(provider: SesProvider) -> None:
    responses.post(
        URL,
        **ses_error(
            400,
            "MessageRejected",
            f"{UNVERIFIED}coach@hingestrength.example.com",
        ),
    )

    with pytest.raises(ProviderError, match="verify site.from"):
        provider.send_batch([make_message(0)])


@responses.activate
def test_bad_credentials_403(provider: SesProvider) -> None:
    responses.post(
        URL,
        **ses_error(
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ),
    )

    with pytest.raises(ProviderError) as caught:
        provider.send_batch([make_message(0)])

    assert caught.value.status == 403 and not caught.value.retryable
    assert "AWS_SECRET_ACCESS_KEY" in str(caught.value)
    for secret in (SECRET, TOKEN):
        assert secret not in str(caught.value) and secret not in repr(provider)


@responses.activate
def test_account_suspended_after_one_accepted_keeps_it(provider: SesProvider) -> None:
    responses.post(URL, json={"MessageId": "0100018c-ses-0"})
    responses.post(
        URL, **ses_error(400, "AccountSuspendedException", "Sending is suspended for this account.")
    )

    results = provider.send_batch([make_message(0), make_message(1), make_message(2)])

    assert results[0].accepted
    assert [r.status for r in results[1:]] == [Status.FAILED, Status.FAILED]
    assert all(r.retryable for r in results[1:])
    assert len(responses.calls) == 2  # nothing more is tried once the account is suspended


@responses.activate
def test_account_suspended_raises_when_nothing_was_sent(provider: SesProvider) -> None:
    responses.post(
        URL, **ses_error(400, "AccountSuspendedException", "Sending is suspended for this account.")
    )

    with pytest.raises(ProviderError, match="Account dashboard") as caught:
        provider.send_batch([make_message(0)])
    assert not caught.value.retryable


@responses.activate
def test_throttling_429_honours_retry_after(provider: SesProvider, sleeps: list[float]) -> None:
    throttled = ses_error(429, "TooManyRequestsException", "Maximum sending rate exceeded.")
    throttled["headers"]["Retry-After"] = "1"  # type: ignore[index]
    responses.post(URL, **throttled)
    responses.post(
        URL, **ses_error(429, "TooManyRequestsException", "Maximum sending rate exceeded.")
    )
    responses.post(URL, json={"MessageId": "0100018c-ses-0"})

    [result] = provider.send_batch([make_message(0)])

    assert result.accepted
    assert sleeps == [1.0, 1.0]  # the server's wait, then backoff (random()=1: 0.5 * 2**1)


@responses.activate
def test_503_gives_up_retryable(provider: SesProvider) -> None:
    responses.post(URL, status=503, json={"message": "Internal Failure"})

    with pytest.raises(ProviderError) as caught:
        provider.send_batch([make_message(0)])

    assert caught.value.retryable and len(responses.calls) == 4


@responses.activate
def test_500_is_an_unknown_outcome_sent_once(provider: SesProvider) -> None:
    responses.post(URL, status=500, json={"message": "Internal Failure"})

    (result,) = provider.send_batch([make_message(0)])
    assert result.status == Status.UNKNOWN  # one API call per message: that one is in doubt
    assert len(responses.calls) == 1


@responses.activate
def test_read_timeout_is_not_resent(provider: SesProvider) -> None:
    responses.post(URL, body=requests.ReadTimeout("read timed out"))

    (result,) = provider.send_batch([make_message(0)])
    assert result.status == Status.UNKNOWN and "answer lost" in result.reason
    assert len(responses.calls) == 1


@responses.activate
def test_a_lost_answer_mid_batch_leaves_only_that_message_in_doubt(
    provider: SesProvider,
) -> None:
    responses.post(URL, json={"MessageId": "ses-0"})
    responses.post(URL, body=requests.ReadTimeout("read timed out"))
    responses.post(URL, json={"MessageId": "ses-2"})

    results = provider.send_batch([make_message(i) for i in range(3)])

    assert [r.status for r in results] == [Status.QUEUED, Status.UNKNOWN, Status.FAILED]
    assert results[2].retryable and len(responses.calls) == 2  # the third never left


def test_missing_credentials_say_what_to_set(settings: Settings) -> None:
    bare = replace(configured(settings), env={"AWS_SECRET_ACCESS_KEY": SECRET})
    with pytest.raises(ConfigError, match="provider ses needs AWS_ACCESS_KEY_ID") as caught:
        get_provider(bare)
    assert SECRET not in str(caught.value)


def test_bad_region_is_a_config_error(settings: Settings) -> None:
    options = {**configured(settings).provider_options, "ses_region": "evil.example.com/"}
    with pytest.raises(ConfigError, match="ses_region"):
        get_provider(replace(configured(settings), provider_options=options))


# ---- addresses: 7-bit ASCII only (SES has no SMTPUTF8) ------------------------------------


def decoded(address: str) -> tuple[str, str]:
    """(display name, address) as a mail client reads an address header back."""
    from email.headerregistry import HeaderRegistry

    header = HeaderRegistry()("To", address)
    [parsed] = header.addresses
    return parsed.display_name, parsed.addr_spec


@responses.activate
def test_non_ascii_display_names_are_rfc_2047_encoded_words(provider: SesProvider) -> None:
    responses.post(URL, json={"MessageId": "0100018c-ses-0"})
    msg = replace(
        make_message(0),
        to_name="Zoë Ångström",
        from_addr=f"Café Strength — Coach Søren <coach@{SITE}>",
        reply_to=f"Søren <coach@{SITE}>",
    )
    [result] = provider.send_batch([msg])
    assert result.status == Status.QUEUED
    sent = json.loads(responses.calls[0].request.body)
    to = sent["Destination"]["ToAddresses"][0]
    sender = sent["FromEmailAddress"]
    reply_to = sent["ReplyToAddresses"][0]
    for value in (to, sender, reply_to):
        assert value.isascii() and "=?utf-8?" in value, value
    assert decoded(to) == ("Zoë Ångström", "reader0@example.com")
    assert decoded(sender) == ("Café Strength — Coach Søren", f"coach@{SITE}")
    assert decoded(reply_to) == ("Søren", f"coach@{SITE}")


@responses.activate
def test_ascii_names_with_specials_are_quoted_and_domains_are_idna(provider: SesProvider) -> None:
    responses.post(URL, json={"MessageId": "0100018c-ses-0"})
    msg = replace(make_message(0), to_name='Lee, Ann "Coach"', to_email="leser@bücher.de")
    provider.send_batch([msg])
    to = json.loads(responses.calls[0].request.body)["Destination"]["ToAddresses"][0]
    assert to == '"Lee, Ann \\"Coach\\"" <leser@xn--bcher-kva.de>'
    assert decoded(to) == ('Lee, Ann "Coach"', "leser@xn--bcher-kva.de")


@responses.activate
def test_a_non_ascii_local_part_is_invalid_without_a_request(provider: SesProvider) -> None:
    msg = replace(make_message(0), to_email="zoë@example.com")
    [result] = provider.send_batch([msg])
    assert result.status == Status.INVALID and "ASCII" in result.reason
    assert len(responses.calls) == 0
