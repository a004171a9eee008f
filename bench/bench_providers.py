"""Providers: messages/s to build each provider's requests and hand batches to a local server.

Every JSON provider client sends the seed campaign, personalised for N readers, to a
real HTTP server on 127.0.0.1 (its own process, keep-alive, answering each provider's
documented success shape); SMTP sends to a real aiosmtpd sink, also in its own
process. The figure is wall time on the client side, one thread: payload building,
JSON encoding, HTTP and reply parsing. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

from bench import Row
from pipeline.message import Message
from pipeline.providers import get_provider
from pipeline.providers.base import Provider
from pipeline.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
TARGET = ">= 10000"
# provider -> messages sent in the timed run (one-message-per-call providers get fewer)
COUNTS = {"postmark": 20_000, "sendgrid": 20_000, "mailgun": 20_000, "resend": 20_000, "ses": 3_000}
SMTP_COUNT = 2_000
SECRETS = {
    "POSTMARK_SERVER_TOKEN": "bench-token",
    "SENDGRID_API_KEY": "bench-key",
    "MAILGUN_API_KEY": "bench-key",
    "RESEND_API_KEY": "bench-key",
    "AWS_ACCESS_KEY_ID": "AKIABENCH",
    "AWS_SECRET_ACCESS_KEY": "bench/secret",
}


def run() -> list[Row]:
    settings = _settings()
    messages = _messages(settings, max(*COUNTS.values(), SMTP_COUNT))
    size = sum(len(m.html) + len(m.text) for m in messages[:100]) // 100
    rows = []
    with api_server() as base_url:
        for name, count in COUNTS.items():
            rows.append(_bench_http(settings, base_url, name, messages[:count], size))
    with smtp_sink() as port:
        rows.append(_bench_smtp(settings, port, messages[:SMTP_COUNT], size))
    return rows


# -- the measured clients ------------------------------------------------------------------


def _bench_http(
    settings: Settings, base_url: str, name: str, messages: list[Message], size: int
) -> Row:
    options = {
        **settings.provider_options,
        "api_base_url": base_url,
        "mailgun_domain": "mg.bench.test",
    }
    configured = replace(settings, provider=name, provider_options=options, env=SECRETS)
    with get_provider(configured) as provider:
        rate, cpu = _timed(provider, messages)
    batch = provider.max_batch
    target = "" if name == "ses" else TARGET
    note = f"{batch}/request, {size // 1024} KB/msg, client CPU {cpu:.0%}"
    if name == "ses":
        note = f"one SendEmail per message (SigV4), {size // 1024} KB/msg"
    return Row("providers", f"{name} build + send", rate, "msg/s", target, note)


def _bench_smtp(settings: Settings, port: int, messages: list[Message], size: int) -> Row:
    configured = replace(settings, provider="smtp", env={"SMTP_URL": f"smtp://{HOST}:{port}"})
    with get_provider(configured) as provider:
        rate, _ = _timed(provider, messages)
    note = f"aiosmtpd sink, one connection, {provider.max_batch}/batch, {size // 1024} KB/msg"
    return Row("providers", "smtp build + send", rate, "msg/s", "", note)


def _timed(provider: Provider, messages: list[Message]) -> tuple[float, float]:
    """Messages/s over all batches (after one warm-up batch), and the client's CPU share."""
    batches = [
        messages[i : i + provider.max_batch] for i in range(0, len(messages), provider.max_batch)
    ]
    _check(provider.send_batch(batches[0]))  # warm: connection open, code paths loaded
    start, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        _check(provider.send_batch(batch))
    wall = time.perf_counter() - start
    return len(messages) / wall, (time.process_time() - cpu) / wall


def _check(results: Sequence[Any]) -> None:
    if not all(r.accepted for r in results):
        raise RuntimeError(
            f"bench server refused: {[r.reason for r in results if not r.accepted][:3]}"
        )


def _settings() -> Settings:
    root = Path(tempfile.mkdtemp(prefix="bench-providers-"))
    return load_settings(
        REPO / "newsletter.toml", root=root, env={"NEWSLETTER_SECRET_KEY": "bench"}
    )


def _messages(settings: Settings, count: int) -> list[Message]:
    """The seed campaign personalised for ``count`` readers, as `make send` builds them."""
    from pipeline.content import find_module, load_module
    from pipeline.render import Recipient, compile_campaign

    compiled = compile_campaign(load_module(find_module(settings, "hip-hinge"), settings), settings)
    return [
        compiled.personalize(Recipient(i, f"reader{i}@example.com", f"Reader {i}", f"tok{i:08d}"))
        for i in range(count)
    ]


# -- a local API that answers like the providers -------------------------------------------


# Fully parsing 10 MB of JSON per batch would make this stand-in, not the client, the
# bottleneck. A quote inside a JSON string is always escaped (\"), so these unescaped
# keys can only be the items' own fields: one per message.
POSTMARK_TO = re.compile(rb'"To":"((?:[^"\\]|\\.)*)"')
RESEND_ITEM = b'"from":'


class ApiHandler(BaseHTTPRequestHandler):
    """Each provider's documented success reply, from the request path."""

    protocol_version = "HTTP/1.1"  # keep-alive, like the real APIs
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not (self.headers.get("Authorization") or self.headers.get("X-Postmark-Server-Token")):
            return self._reply(401, b'{"message":"no credentials"}')
        path = self.path
        if path == "/email/batch":
            items = [_postmark_item(to.decode()) for to in POSTMARK_TO.findall(body)]
            return self._reply(200, orjson.dumps(items))
        if path == "/emails/batch":
            ids = [{"id": str(uuid.uuid4())} for _ in range(body.count(RESEND_ITEM))]
            return self._reply(200, orjson.dumps({"data": ids}))
        if path == "/v3/mail/send":
            return self._reply(202, b"", {"X-Message-Id": uuid.uuid4().hex[:22]})
        if path == "/v2/email/outbound-emails":
            return self._reply(200, orjson.dumps({"MessageId": f"0100-{uuid.uuid4()}"}))
        if path.startswith("/v3/") and path.endswith("/messages"):
            queued = {"id": f"<{uuid.uuid4().hex}@mg.bench.test>", "message": "Queued. Thank you."}
            return self._reply(200, orjson.dumps(queued))
        return self._reply(404, b'{"message":"not found"}')

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        if body:
            self.send_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _postmark_item(to: str) -> dict[str, Any]:
    return {
        "To": to,
        "SubmittedAt": "2026-11-23T12:00:00.0000000-05:00",
        "MessageID": str(uuid.uuid4()),
        "ErrorCode": 0,
        "Message": "OK",
    }


def _serve_api() -> None:
    server = ThreadingHTTPServer((HOST, 0), ApiHandler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


class SmtpSink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        return "250 2.0.0 Ok: queued"


def _serve_smtp() -> None:
    from aiosmtpd.controller import Controller

    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    controller = Controller(SmtpSink(), hostname=HOST, port=port)
    controller.start()
    print(port, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    controller.stop()


@contextmanager
def _server(kind: str) -> Iterator[int]:
    """Run ``python -m bench.bench_providers KIND`` (its own process); yields its port."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_providers", kind],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield int(process.stdout.readline())
    finally:
        process.terminate()
        process.communicate(timeout=10)


@contextmanager
def api_server() -> Iterator[str]:
    with _server("api") as port:
        yield f"http://{HOST}:{port}"


@contextmanager
def smtp_sink() -> Iterator[int]:
    with _server("smtp") as port:
        yield port


if __name__ == "__main__":
    {"api": _serve_api, "smtp": _serve_smtp}[sys.argv[1]]()
