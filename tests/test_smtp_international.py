"""SMTP to internationalised addresses against a real aiosmtpd on 127.0.0.1."""

from __future__ import annotations

from messages import sample_message
from smtp_server import Sink, smtp_server

from pipeline.message import Message
from pipeline.providers.base import Status
from pipeline.providers.retry import RetryPolicy
from pipeline.providers.smtp import SmtpProvider, SmtpTarget


def message(to_email: str) -> Message:
    return sample_message(
        to_email=to_email, to_name="Zoë", subject="Héllo", message_id=f"<{to_email}@example.com>"
    )


def provider(port: int) -> SmtpProvider:
    retry = RetryPolicy(max_retries=1, sleep=lambda seconds: None)
    return SmtpProvider(SmtpTarget("127.0.0.1", port), timeout=5, retry=retry)


def test_idn_domain_goes_out_in_idna() -> None:
    sink = Sink()
    with smtp_server(sink) as (_, port), provider(port) as smtp:
        (result,) = smtp.send_batch([message("x@bücher.de")])
    assert result.status == Status.SENT
    assert sink.received[0].rcpt_tos == ["x@xn--bcher-kva.de"]


def test_non_ascii_local_part_uses_smtputf8_when_offered() -> None:
    sink = Sink()
    with smtp_server(sink, enable_SMTPUTF8=True) as (_, port), provider(port) as smtp:
        (result,) = smtp.send_batch([message("chloé@exämple.de")])
    assert result.status == Status.SENT, result.reason
    assert sink.received[0].rcpt_tos == ["chloé@xn--exmple-cua.de"]
    assert "To: Zoë <chloé@xn--exmple-cua.de>".encode() in sink.received[0].data


def test_non_ascii_local_part_without_smtputf8_fails_only_that_recipient() -> None:
    sink = Sink()
    with smtp_server(sink, enable_SMTPUTF8=False) as (_, port), provider(port) as smtp:
        results = smtp.send_batch([message("chloé@exämple.de"), message("ann@example.com")])
    assert results[0].status != Status.SENT and not results[0].retryable
    assert "SMTPUTF8" in results[0].reason
    assert results[1].status == Status.SENT
    assert [r.rcpt_tos for r in sink.received] == [["ann@example.com"]]
