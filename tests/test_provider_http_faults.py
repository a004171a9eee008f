"""How the HTTP providers tell "the request never left" from "it may have been accepted",
against real server processes on 127.0.0.1 (no mocks of requests): a refused
connection is retried; an accepted request whose answer is lost (reset, 504, no answer
in time) is never sent a second time, and a lookup finds what was accepted."""

from __future__ import annotations

import datetime as dt
import socket

import pytest
import requests
import responses
from messages import sample_message

from bench.sinks import SinkProcess
from pipeline.errors import ProviderError
from pipeline.message import Message
from pipeline.providers.base import OutcomeUnknown, Status
from pipeline.providers.mailgun import MailgunProvider
from pipeline.providers.postmark import PostmarkProvider
from pipeline.providers.resend import ResendProvider
from pipeline.providers.retry import RetryPolicy


def batch(n: int, key: str = "claim-1") -> list[Message]:
    messages = [sample_message(i) for i in range(n)]
    for m in messages:
        m.metadata["batch"] = key
    return messages


def postmark(url: str, sleeps: list[float], timeout: float = 2.0) -> PostmarkProvider:
    retry = RetryPolicy(max_retries=3, sleep=sleeps.append, random=lambda: 0.0)
    return PostmarkProvider(token="t", base_url=url, timeout=timeout, retry=retry)


@pytest.mark.parametrize("fault", ["reset", "504", "hang"])
def test_an_accepted_batch_whose_answer_is_lost_is_sent_once(fault: str) -> None:
    sleeps: list[float] = []
    args = ["--fault", fault, "--fault-every", "1", "--fault-limit", "1", "--hang", "3"]
    with SinkProcess("postmark", *args) as sink:
        provider = postmark(sink.url, sleeps, timeout=1.0)
        messages = batch(3)
        with pytest.raises(OutcomeUnknown) as caught:
            provider.send_batch(messages)
        got = sink.received()
        assert got["requests"] == 1 and got["total"] == 3  # accepted once, never again
        assert sleeps == []
        assert "may have accepted" in str(caught.value)
        found = provider.lookup(messages, sent_at=dt.datetime.now(dt.UTC))
    assert sorted(found) == sorted(m.message_id for m in messages)
    assert all(found.values())  # Postmark's own ids


def test_a_refused_connection_never_left_and_is_retried() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps: list[float] = []
    provider = postmark(f"http://127.0.0.1:{port}", sleeps)
    with pytest.raises(ProviderError) as caught:
        provider.send_batch(batch(1))
    assert not isinstance(caught.value, OutcomeUnknown) and caught.value.retryable
    assert len(sleeps) == 3  # tried four times: nothing had left


def test_the_lookup_pages_through_the_batch_and_ignores_other_batches() -> None:
    with SinkProcess("postmark") as sink:
        provider = postmark(sink.url, [])
        mine, other = batch(700, "mine"), batch(5, "other")
        for part in (mine[:500], mine[500:], other):
            assert all(r.status == Status.QUEUED for r in provider.send_batch(part))
        asked = mine[:3] + mine[600:] + [sample_message(9999)]  # the last was never sent
        for m in asked:
            m.metadata["batch"] = "mine"
        found = provider.lookup(asked, sent_at=dt.datetime.now(dt.UTC))
    assert sorted(found) == sorted(m.message_id for m in asked[:-1])


def test_mailgun_lookup_follows_paging_on_its_own_host_only() -> None:
    with SinkProcess("mailgun") as sink:
        provider = MailgunProvider(
            api_key="k",
            domain="mg.example.com",
            base_url=sink.url,
            timeout=2,
            retry=RetryPolicy(max_retries=0),
        )
        messages = batch(650)
        for start in range(0, 650, 325):
            provider.send_batch(messages[start : start + 325])
        found = provider.lookup(messages, sent_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5))
    assert len(found) == 650  # three pages of at most 300 events
    with pytest.raises(ProviderError, match="refusing to follow a link off"):
        provider.ask("GET", "https://evil.example.com/v3/x/events")


@responses.activate
def test_resend_retries_a_lost_answer_under_the_same_idempotency_key() -> None:
    url = "https://api.resend.com/emails/batch"
    responses.post(url, body=requests.ReadTimeout("read timed out"))
    responses.post(url, json={"data": [{"id": "r0"}, {"id": "r1"}]})
    provider = ResendProvider(
        api_key="re_x",
        base_url="https://api.resend.com",
        timeout=1,
        retry=RetryPolicy(max_retries=2, sleep=lambda s: None),
    )
    results = provider.send_batch(batch(2))
    assert [r.status for r in results] == [Status.QUEUED, Status.QUEUED]
    keys = {call.request.headers["Idempotency-Key"] for call in responses.calls}
    assert len(responses.calls) == 2 and len(keys) == 1


@responses.activate
def test_resend_lost_answers_that_outlast_the_retries_are_unknown_not_unsent() -> None:
    responses.post(
        "https://api.resend.com/emails/batch", body=requests.ReadTimeout("read timed out")
    )
    provider = ResendProvider(
        api_key="re_x",
        base_url="https://api.resend.com",
        timeout=1,
        retry=RetryPolicy(max_retries=2, sleep=lambda s: None),
    )
    with pytest.raises(OutcomeUnknown):
        provider.send_batch(batch(2))
    assert provider.settles_unknown == "idempotent"
