"""What every provider shares: choosing one, configuration errors, retries, templates."""

from __future__ import annotations

from dataclasses import replace
from email.utils import formatdate

import pytest

from pipeline.errors import ConfigError, ProviderError
from pipeline.message import Message
from pipeline.providers import PROVIDERS, get_provider
from pipeline.providers.base import SendResult, Status, in_order, send_in_parts
from pipeline.providers.merge import factor, unique_by
from pipeline.providers.retry import RetryPolicy, TryAgain, call_with_retry, retry_after_seconds
from pipeline.settings import Settings

SECRETS = {
    "POSTMARK_SERVER_TOKEN": "pm-0f1e2d3c-secret",
    "SENDGRID_API_KEY": "SG.very-secret-sendgrid",
    "MAILGUN_API_KEY": "key-very-secret-mailgun",
    "RESEND_API_KEY": "re_very_secret_resend",
    "AWS_ACCESS_KEY_ID": "AKIAVERYSECRETID",
    "AWS_SECRET_ACCESS_KEY": "very/secret/aws/key",
    "AWS_SESSION_TOKEN": "very-secret-session-token",
    "SMTP_URL": "smtp://coach:very-secret-smtp-pass@mail.example.com:587",
}
NEEDS = {
    "postmark": ["POSTMARK_SERVER_TOKEN"],
    "sendgrid": ["SENDGRID_API_KEY"],
    "mailgun": ["MAILGUN_API_KEY"],
    "resend": ["RESEND_API_KEY"],
    "ses": ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
    "smtp": ["SMTP_URL"],
}


def with_provider(settings: Settings, name: str, env: dict[str, str]) -> Settings:
    options = {**settings.provider_options, "mailgun_domain": "mg.example.com"}
    return replace(settings, provider=name, provider_options=options, env=env)


def message(i: int) -> Message:
    return Message(
        to_email=f"r{i}@example.com",
        to_name="",
        from_addr="a@example.com",
        subject="s",
        html="<p>h</p>",
        text="t",
        message_id=f"<{i}@example.com>",
    )


# -- choosing a provider -------------------------------------------------------------


def test_unknown_provider_lists_the_valid_names(settings: Settings) -> None:
    with pytest.raises(ConfigError) as caught:
        get_provider(replace(settings, provider="pidgeon"))
    text = str(caught.value)
    assert "unknown provider 'pidgeon'" in text
    for name in ("outbox", "smtp", "postmark", "sendgrid", "mailgun", "ses", "resend"):
        assert name in text


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_each_provider_is_built_with_its_secrets(settings: Settings, name: str) -> None:
    provider = get_provider(with_provider(settings, name, SECRETS))
    assert provider.name == name
    assert 1 <= provider.max_batch <= 1000
    for value in SECRETS.values():
        assert value not in repr(provider)
    provider.close()


@pytest.mark.parametrize(("name", "missing"), [(n, s) for n, needs in NEEDS.items() for s in needs])
def test_missing_secret_says_what_to_set_and_shows_no_secret(
    settings: Settings, name: str, missing: str
) -> None:
    env = {k: v for k, v in SECRETS.items() if k != missing}
    with pytest.raises(ConfigError) as caught:
        get_provider(with_provider(settings, name, env))
    error = caught.value
    assert f"provider {name} needs {missing} in the environment" in str(error)
    for value in SECRETS.values():
        assert value not in str(error) and value not in repr(error)


def test_every_provider_module_has_its_error_mapping() -> None:
    import importlib

    for name, target in PROVIDERS.items():
        module = importlib.import_module(target.partition(":")[0])
        if name == "outbox":
            continue
        mapping = getattr(module, "STATUS_BY_CODE", None) or getattr(
            module, "STATUS_BY_ERROR", None
        )
        assert mapping and all(isinstance(s, Status) for s in mapping.values()), name


def test_resend_is_the_only_idempotent_provider(settings: Settings) -> None:
    idempotent = {n for n in NEEDS if get_provider(with_provider(settings, n, SECRETS)).idempotent}
    assert idempotent == {"resend"}


# -- retries ---------------------------------------------------------------------------


def test_full_jitter_backoff_is_bounded_and_capped() -> None:
    top = RetryPolicy(base=0.5, cap=4.0, random=lambda: 1.0)
    assert [top.backoff(n) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert RetryPolicy(random=lambda: 0.0).backoff(3) == 0.0


def test_retry_after_forms() -> None:
    now = 1_700_000_000.0
    assert retry_after_seconds({"Retry-After": "12"}, now=lambda: now) == 12.0
    date = formatdate(now + 90, usegmt=True)
    assert retry_after_seconds({"Retry-After": date}, now=lambda: now) == pytest.approx(90, abs=1)
    assert retry_after_seconds({"X-RateLimit-Reset": str(int(now) + 30)}, now=lambda: now) == 30.0
    assert retry_after_seconds({"retry-after": "5"}, now=lambda: now) == 5.0
    assert retry_after_seconds({"Retry-After": "soon"}, now=lambda: now) is None
    assert retry_after_seconds({}, now=lambda: now) is None


def test_a_wait_longer_than_max_wait_is_not_slept_through() -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(max_wait=60, sleep=sleeps.append)

    def throttled() -> None:
        raise TryAgain("HTTP 429: daily limit", status=429, retry_after=3600)

    with pytest.raises(ProviderError) as caught:
        call_with_retry(throttled, policy, provider="postmark")

    assert sleeps == []
    assert caught.value.retryable and caught.value.retry_after == 3600
    assert "3600s" in str(caught.value)


def test_retries_stop_at_max_retries() -> None:
    sleeps: list[float] = []
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TryAgain("HTTP 503")
        return "ok"

    policy = RetryPolicy(max_retries=2, sleep=sleeps.append, random=lambda: 0.5)
    assert call_with_retry(flaky, policy, provider="x") == "ok"
    assert sleeps == [0.25, 0.5]


# -- batches that take several calls --------------------------------------------------------


def test_failure_after_an_acceptance_is_reported_not_raised() -> None:
    def send(part: list[Message]) -> list[SendResult]:
        if part[0].to_email == "r2@example.com":
            raise ProviderError("account suspended", provider="ses")
        return [SendResult(m.message_id, m.to_email, Status.QUEUED) for m in part]

    results = send_in_parts([[message(0), message(1)], [message(2)], [message(3)]], send)

    assert [r.status for r in results] == [Status.QUEUED] * 2 + [Status.FAILED] * 2
    assert all(r.retryable and "account suspended" in r.reason for r in results[2:])


def test_failure_before_any_acceptance_raises() -> None:
    def send(part: list[Message]) -> list[SendResult]:
        raise ProviderError("bad key", provider="x")

    with pytest.raises(ProviderError):
        send_in_parts([[message(0)], [message(1)]], send)


def test_in_order_restores_the_batch_order() -> None:
    messages = [message(i) for i in range(3)]
    shuffled = [SendResult(m.message_id, m.to_email, Status.SENT) for m in reversed(messages)]
    assert [r.email for r in in_order(messages, shuffled)] == [m.to_email for m in messages]


# -- shared templates (SendGrid, Mailgun) ---------------------------------------------------


def test_factor_rebuilds_every_body_exactly() -> None:
    article = "".join(f"<p>step {n}</p>" for n in range(50))
    bodies = [
        f"<p>Hi {name}</p>{article}<a href='/u/{n}'>unsubscribe</a>"
        for n, name in enumerate(["Al", "Bea", "Cy"])
    ]

    template = factor(bodies, ">", lambda k: f"[[{k}]]", reserved="[[")

    assert template is not None
    assert template.text.count("step 49") == 1
    assert len(template.markers) == 2
    assert [template.render(i) for i in range(3)] == bodies


def test_factor_refuses_what_it_cannot_merge() -> None:
    assert factor(["a\nb", "a\nb\nc"], "\n", lambda k: f"[[{k}]]", reserved="[[") is None
    assert factor(["a [[x", "b"], "\n", lambda k: f"[[{k}]]", reserved="[[") is None
    same = factor(["x\ny", "x\ny"], "\n", lambda k: f"[[{k}]]", reserved="[[")
    assert same is not None and same.markers == () and same.text == "x\ny"


def test_unique_by_never_puts_a_key_twice_in_a_part() -> None:
    parts = unique_by(["a", "b", "a", "c", "a"], lambda s: s)
    assert parts == [["a", "b", "c"], ["a"], ["a"]]
