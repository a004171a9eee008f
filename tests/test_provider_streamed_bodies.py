"""Large Postmark and Resend batches are written from pieces (the template's parts and
each reader's values) instead of one joined copy: against a real HTTP server on
127.0.0.1, every reader still gets exactly their own email, byte for byte, with an
exact Content-Length; a retried request carries the whole body again; and a batch in
flight holds a fraction of its size in memory."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

from api_server import api_server

from bench.sinks import SinkProcess
from pipeline.content import find_module, load_module
from pipeline.message import Message
from pipeline.providers.base import Status
from pipeline.providers.jsonbody import STREAM_OVER, JsonBody
from pipeline.providers.postmark import PostmarkProvider
from pipeline.providers.resend import ResendProvider
from pipeline.providers.retry import RetryPolicy
from pipeline.render import Recipient, compile_campaign
from pipeline.settings import Settings

NAMES = ["Ann", "", 'Zoë "Z" \\ O\'Brien 💪', "<b>&amp;</b>", "\u2028 line"]


def provider_api(refuse_first: int = 0) -> tuple[dict, list[tuple[dict[str, str], bytes]]]:
    """Routes answering as Postmark's and Resend's batch endpoints document (after
    ``refuse_first`` 503s), and the list of every request they got (headers, raw body)."""
    got: list[tuple[dict[str, str], bytes]] = []

    def postmark(headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        got.append((headers, body))
        if len(got) <= refuse_first:
            return 503, {"Message": "busy"}
        items = json.loads(body)
        return 200, [
            {"ErrorCode": 0, "MessageID": f"pm-{i}", "To": m["To"]} for i, m in enumerate(items)
        ]

    def resend(headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        got.append((headers, body))
        if len(got) <= refuse_first:
            return 503, {"message": "busy"}
        return 200, {"data": [{"id": f"rs-{i}"} for i in range(len(json.loads(body)))]}

    return {("POST", "/email/batch"): postmark, ("POST", "/emails/batch"): resend}, got


def emails(settings: Settings, n: int) -> tuple[list[Message], list[Message]]:
    """``n`` readers' copies of the seed article, as a JSON provider gets them (bodies in
    pieces) and as plain strings to compare with."""
    module = load_module(find_module(settings, "hip-hinge"), settings)
    compiled = compile_campaign(module, settings)
    readers = [
        Recipient(
            i, f"r{i}@example.com", NAMES[i % len(NAMES)] + (f" {i}" if i % 3 else ""), f"t{i}"
        )
        for i in range(n)
    ]
    pieces = [
        compiled.personalize(
            r, message_id=f"<m{r.id}@x>", encodings=frozenset({"json"}), plain=False
        )
        for r in readers
    ]
    plain = [
        compiled.personalize(r, message_id=f"<m{r.id}@x>", encodings=frozenset()) for r in readers
    ]
    return pieces, plain


def retry() -> RetryPolicy:
    return RetryPolicy(max_retries=2, sleep=lambda s: None, random=lambda: 0.0)


def test_a_large_postmark_batch_reaches_the_server_whole(settings: Settings) -> None:
    messages, plain = emails(settings, 500)
    routes, got = provider_api()
    with api_server(routes) as (url, _):
        provider = PostmarkProvider(token="t", base_url=url, timeout=10, retry=retry())
        results = provider.send_batch(messages)
    assert [r.status for r in results] == [Status.QUEUED] * 500
    ((headers, body),) = got
    assert len(body) > STREAM_OVER  # this batch was written from its pieces
    assert int(headers["content-length"]) == len(body) and "transfer-encoding" not in headers
    items = json.loads(body)
    assert [i["HtmlBody"] for i in items] == [m.html for m in plain]
    assert [i["TextBody"] for i in items] == [m.text for m in plain]
    assert [i["Headers"][0]["Value"] for i in items] == [m.message_id for m in plain]
    assert items[2]["To"] == plain[2].to and "Zoë" in items[2]["HtmlBody"]


def test_a_large_resend_batch_is_sent_again_whole_after_a_503(settings: Settings) -> None:
    messages, plain = emails(settings, 100)
    routes, got = provider_api(refuse_first=1)
    with api_server(routes) as (url, _):
        provider = ResendProvider(api_key="re_x", base_url=url, timeout=10, retry=retry())
        results = provider.send_batch(messages)
    assert [r.status for r in results] == [Status.QUEUED] * 100
    (_, first), (_, again) = got
    assert first == again and len(again) > STREAM_OVER
    items = json.loads(again)
    assert [i["html"] for i in items] == [m.html for m in plain]
    assert [i["text"] for i in items] == [m.text for m in plain]


def test_a_batch_in_flight_holds_a_fraction_of_its_size(settings: Settings) -> None:
    messages, _ = emails(settings, 500)
    body = PostmarkProvider(
        token="t", base_url="http://127.0.0.1:9", timeout=1, retry=retry()
    ).batch_body(messages)
    assert isinstance(body, JsonBody)
    size = len(body)
    with SinkProcess("postmark", "--count-only") as sink:  # its own process: not traced here
        provider = PostmarkProvider(token="t", base_url=sink.url, timeout=10, retry=retry())
        provider.send_batch(messages[:1])  # the connection is open before measuring
        tracemalloc.start()
        try:
            results = provider.send_batch(messages[1:])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert sink.received(addresses=False)["total"] == 500
    assert all(r.status == Status.QUEUED for r in results)
    assert size > 10 * 2**20  # ~14 MB joined
    assert peak < size / 4, f"{peak / 2**20:.1f} MB held to send a {size / 2**20:.1f} MB batch"
