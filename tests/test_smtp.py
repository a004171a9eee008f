"""SMTP against a real aiosmtpd server on 127.0.0.1: delivery, refusals, retries, drops."""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator
from dataclasses import replace

import pytest
from messages import SITE, sample_message
from smtp_server import Sink, free_port, password_check, smtp_server

from pipeline.errors import ConfigError, ProviderError
from pipeline.message import Message
from pipeline.providers import get_provider
from pipeline.providers.base import Status
from pipeline.providers.retry import RetryPolicy
from pipeline.providers.smtp import SmtpProvider, SmtpTarget, parse_smtp_url
from pipeline.settings import Settings

PASSWORD = "s3cret:p@ss/word"


def make_message(i: int) -> Message:
    return sample_message(
        i,
        html=f"<p>Hi Reader {i}</p>\n<p>.A line starting with a dot</p>",
        text=f"Hi Reader {i}\n.A line starting with a dot\n",
        reply_to="",
        headers={
            "List-Unsubscribe": f"<https://{SITE}/u/t{i}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        tag="",
        metadata={},
    )


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def server(sink: Sink) -> Iterator[tuple[str, int]]:
    with smtp_server(sink) as address:
        yield address


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def provider(server: tuple[str, int], sleeps: list[float]) -> Iterator[SmtpProvider]:
    host, port = server
    retry = RetryPolicy(max_retries=2, sleep=sleeps.append, random=lambda: 1.0)
    smtp = SmtpProvider(SmtpTarget(host, port), timeout=5, retry=retry)
    yield smtp
    smtp.close()


def message_ids(sink: Sink) -> list[str]:
    return [email.message_from_bytes(r.data)["Message-ID"] for r in sink.received]


def test_batch_is_delivered_over_one_reused_connection(provider: SmtpProvider, sink: Sink) -> None:
    first = provider.send_batch([make_message(i) for i in range(3)])
    second = provider.send_batch([make_message(i) for i in range(3, 5)])

    assert [r.status for r in first + second] == [Status.SENT] * 5
    assert first[0].provider_id == "2.0.0 Ok: queued as Q1"
    assert provider.connections == 1  # reused across batches
    assert [r.rcpt_tos for r in sink.received] == [[f"reader{i}@example.com"] for i in range(5)]
    assert {r.mail_from for r in sink.received} == {"coach@hingestrength.example.com"}
    data = sink.received[0].data
    assert data.count(b"\n") == data.count(b"\r\n")  # CRLF on the wire
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert parsed["Message-ID"] == "<m0.1700000000@hingestrength.example.com>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = parsed.get_body(("plain",)).get_content()
    assert ".A line starting with a dot" in text  # dot-stuffing undone by the server


def test_550_fails_only_that_recipient(provider: SmtpProvider, sink: Sink) -> None:
    sink.refuse["reader1@example.com"] = (
        "550 5.1.1 <reader1@example.com>: Recipient address rejected: User unknown"
    )

    results = provider.send_batch([make_message(i) for i in range(3)])

    assert [r.status for r in results] == [Status.SENT, Status.REJECTED, Status.SENT]
    assert results[1].suppress and not results[1].retryable
    assert "User unknown" in results[1].reason
    assert message_ids(sink) == [make_message(0).message_id, make_message(2).message_id]


def test_421_is_retried_then_delivered(
    provider: SmtpProvider, sink: Sink, sleeps: list[float]
) -> None:
    sink.data_replies.append("421 4.3.0 Try again later")

    results = provider.send_batch([make_message(0), make_message(1)])

    assert [r.status for r in results] == [Status.SENT, Status.SENT]
    assert sleeps == [0.5]
    assert message_ids(sink) == [make_message(0).message_id, make_message(1).message_id]
    assert provider.connections == 2  # 421 means the server is closing: reconnect


def test_connection_lost_after_the_message_left_puts_only_it_in_doubt(
    provider: SmtpProvider, sink: Sink
) -> None:
    sink.drop_at_data = {3}  # the whole message arrives, then the connection drops

    results = provider.send_batch([make_message(i) for i in range(5)])

    assert [r.status for r in results] == [Status.SENT] * 2 + [Status.UNKNOWN] + [Status.FAILED] * 2
    assert results[3].retryable and results[4].retryable  # never left: retried next run
    assert message_ids(sink) == [make_message(i).message_id for i in range(2)]  # none twice


def test_idle_connection_closed_by_the_server_is_reopened(
    provider: SmtpProvider, sink: Sink
) -> None:
    provider.send_batch([make_message(0)])
    assert provider._conn is not None
    provider._conn.sock.shutdown(socket.SHUT_RDWR)  # as if the server closed the idle connection

    [result] = provider.send_batch([make_message(1)])

    assert result.status == Status.SENT and provider.connections == 2
    assert len(sink.received) == 2


def test_4xx_that_never_clears_fails_that_message_retryable(
    provider: SmtpProvider, sink: Sink, sleeps: list[float]
) -> None:
    sink.data_replies.extend(["451 4.7.1 Greylisted, try later"] * 3)

    results = provider.send_batch([make_message(0), make_message(1)])

    assert results[0].status == Status.FAILED and results[0].retryable
    assert "451" in results[0].reason
    assert results[1].status == Status.SENT
    assert sleeps == [0.5, 1.0]


def test_no_server_gives_up_retryable(sleeps: list[float]) -> None:
    retry = RetryPolicy(max_retries=2, sleep=sleeps.append, random=lambda: 1.0)
    smtp = SmtpProvider(SmtpTarget("127.0.0.1", free_port()), timeout=2, retry=retry)

    with pytest.raises(ProviderError) as caught:
        smtp.send_batch([make_message(0)])

    assert caught.value.retryable and "could not connect" in str(caught.value)
    assert len(sleeps) == 2


def test_login_with_credentials_from_smtp_url(settings: Settings, sink: Sink) -> None:
    with smtp_server(
        sink, authenticator=password_check("coach", PASSWORD), auth_require_tls=False
    ) as (host, port):
        url = f"smtp://coach:s3cret%3Ap%40ss%2Fword@{host}:{port}"
        configured = replace(settings, provider="smtp", env={"SMTP_URL": url})
        with get_provider(configured, sleep=fail) as smtp:
            [result] = smtp.send_batch([make_message(0)])
            assert PASSWORD not in repr(smtp) and "s3cret" not in repr(smtp)
    assert result.status == Status.SENT and len(sink.received) == 1


def fail(seconds: float) -> None:
    raise AssertionError(f"unexpected retry (sleep {seconds})")


def test_wrong_password_says_what_to_check_without_showing_it(
    settings: Settings, sink: Sink
) -> None:
    with smtp_server(
        sink, authenticator=password_check("coach", "right"), auth_require_tls=False
    ) as (host, port):
        url = f"smtp://coach:{'wrong-pass-123'}@{host}:{port}"
        smtp = get_provider(replace(settings, provider="smtp", env={"SMTP_URL": url}), sleep=fail)
        with pytest.raises(ProviderError) as caught:
            smtp.send_batch([make_message(0)])
    assert not caught.value.retryable
    assert "SMTP_URL" in str(caught.value) and "wrong-pass-123" not in str(caught.value)
    assert sink.received == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "smtp://user:p%40ss@mail.example.com:587",
            SmtpTarget("mail.example.com", 587, "user", "p@ss"),
        ),
        (
            "smtps://user:pw@mail.example.com",
            SmtpTarget("mail.example.com", 465, "user", "pw", True),
        ),
        ("smtp://user:pw@mail.example.com", SmtpTarget("mail.example.com", 587, "user", "pw")),
        ("smtp://127.0.0.1:1025", SmtpTarget("127.0.0.1", 1025)),
        ("smtp://localhost", SmtpTarget("localhost", 25)),
        (
            "smtp+insecure://user:pw@relay.lan:25",
            SmtpTarget("relay.lan", 25, "user", "pw", insecure=True),
        ),
    ],
)
def test_smtp_url_forms(url: str, expected: SmtpTarget) -> None:
    assert parse_smtp_url(url) == expected


def test_bad_smtp_url_never_echoes_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_smtp_url("http://user:hunter2secret@mail.example.com")
    assert "hunter2secret" not in str(caught.value) and "SMTP_URL" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        parse_smtp_url("smtp://user:hunter2secret@mail.example.com:notaport")
    assert "hunter2secret" not in str(caught.value)


def test_missing_smtp_url_says_what_to_set(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="provider smtp needs SMTP_URL in the environment"):
        get_provider(replace(settings, provider="smtp"))


# ---- no password in clear text to another machine -----------------------------------------


def counting_check(user: str, password: str, calls: list[str]) -> object:
    check = password_check(user, password)

    def authenticate(*args: object) -> object:
        calls.append("AUTH")
        return check(*args)  # type: ignore[operator]

    return authenticate


def test_a_real_connection_to_127_0_0_1_is_loopback(sink: Sink) -> None:
    import smtplib

    from pipeline.providers.smtp import on_loopback

    with smtp_server(sink) as (host, port), smtplib.SMTP(host, port, timeout=5) as conn:
        assert on_loopback(conn)
    assert not on_loopback(smtplib.SMTP())  # not connected: not loopback


def test_auth_without_starttls_to_another_machine_is_refused_before_auth(
    settings: Settings, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server offers AUTH but no STARTTLS. Our test server can only live on
    127.0.0.1, so the provider is told the peer is another machine; nothing else is
    faked: the real server must never see an AUTH command."""
    from pipeline.providers import smtp as smtp_module

    monkeypatch.setattr(smtp_module, "on_loopback", lambda conn: False)
    calls: list[str] = []
    with smtp_server(
        sink, authenticator=counting_check("coach", "pw-123", calls), auth_require_tls=False
    ) as (host, port):
        url = f"smtp://coach:pw-123@{host}:{port}"
        smtp = get_provider(replace(settings, provider="smtp", env={"SMTP_URL": url}), sleep=fail)
        with pytest.raises(ProviderError) as caught:
            smtp.send_batch([make_message(0)])
    assert not caught.value.retryable
    assert "no STARTTLS" in str(caught.value) and "smtp+insecure://" in str(caught.value)
    assert "pw-123" not in str(caught.value)
    assert calls == [] and sink.received == []


def test_smtp_insecure_sends_the_login_without_tls_when_told_to(
    settings: Settings, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.providers import smtp as smtp_module

    monkeypatch.setattr(smtp_module, "on_loopback", lambda conn: False)
    calls: list[str] = []
    with smtp_server(
        sink, authenticator=counting_check("coach", "pw-123", calls), auth_require_tls=False
    ) as (host, port):
        url = f"smtp+insecure://coach:pw-123@{host}:{port}"
        with get_provider(
            replace(settings, provider="smtp", env={"SMTP_URL": url}), sleep=fail
        ) as smtp:
            [result] = smtp.send_batch([make_message(0)])
    assert result.status == Status.SENT and calls == ["AUTH"] and len(sink.received) == 1


def test_a_loopback_relay_gets_the_login_without_tls(settings: Settings, sink: Sink) -> None:
    """A relay on this machine (Postfix on localhost) often has no TLS: allowed, since
    the credentials never leave the machine (the peer is really 127.0.0.1 here)."""
    calls: list[str] = []
    with smtp_server(
        sink, authenticator=counting_check("coach", "pw-123", calls), auth_require_tls=False
    ) as (host, port):
        url = f"smtp://coach:pw-123@{host}:{port}"
        with get_provider(
            replace(settings, provider="smtp", env={"SMTP_URL": url}), sleep=fail
        ) as smtp:
            [result] = smtp.send_batch([make_message(0)])
    assert result.status == Status.SENT and calls == ["AUTH"]
