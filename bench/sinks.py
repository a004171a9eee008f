"""Local stand-ins for a provider, for end-to-end tests and benchmarks on 127.0.0.1.

``python -m bench.sinks smtp`` is an SMTP sink (aiosmtpd) that counts what it accepts.
``python -m bench.sinks postmark [--count-only] [--throttle-every K]`` serves Postmark's
``POST /email/batch`` (documented success shape: one item per message, in order) and
prints its port. ``GET /_received`` returns what it accepted: ``{"total": n, "to":
{address: times}}``. It runs as its own process so it never competes with the sender
for the GIL. Only ever binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SUBMITTED = "2026-11-23T12:00:00.0000000Z"


class PostmarkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real API
    server: PostmarkServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        if self.path != "/_received":
            return self._reply(404, {"ErrorCode": 404, "Message": "not found"})
        with self.server.lock:
            data = {
                "total": self.server.total,
                "requests": self.server.requests,
                "to": dict(self.server.to),
            }
        self._reply(200, data)

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != "/email/batch":
            return self._reply(404, {"ErrorCode": 404, "Message": "not found"})
        if not self.headers.get("X-Postmark-Server-Token"):
            return self._reply(
                401,
                {
                    "ErrorCode": 10,
                    "Message": "No Account or Server API tokens were supplied in the HTTP headers.",
                },
            )
        with self.server.lock:
            self.server.requests += 1
            every = self.server.throttle_every
            if every and self.server.requests % every == 0:
                return self._reply(
                    429, {"ErrorCode": 429, "Message": "Rate limit exceeded"}, {"Retry-After": "0"}
                )
        items = self._accept(body)
        self._reply(200, items)

    def _accept(self, body: bytes) -> list[dict[str, Any]]:
        if self.server.count_only:
            n = body.count(b'"MessageStream":')
            with self.server.lock:
                self.server.total += n
            return [_ok("recipient@example.com")] * n
        batch = json.loads(body)
        with self.server.lock:
            for message in batch:
                self.server.to[message["To"]] += 1
            self.server.total += len(batch)
        return [_ok(m["To"]) for m in batch]

    def _reply(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)


def _ok(to: str) -> dict[str, Any]:
    return {
        "To": to,
        "SubmittedAt": SUBMITTED,
        "MessageID": str(uuid.uuid4()),
        "ErrorCode": 0,
        "Message": "OK",
    }


class PostmarkServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *, count_only: bool = False, throttle_every: int = 0) -> None:
        super().__init__(("127.0.0.1", 0), PostmarkHandler)
        self.lock = threading.Lock()
        self.count_only = count_only
        self.throttle_every = throttle_every
        self.total = 0
        self.requests = 0
        self.to: Counter[str] = Counter()


class SinkProcess:
    """Runs a sink in a child process; ``url`` is its base URL on 127.0.0.1."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.sinks", *args],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        ports = self.proc.stdout.readline().split()
        self.url = f"http://127.0.0.1:{ports[0]}"
        self.smtp_port = int(ports[1]) if len(ports) > 1 else 0

    def received(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_received", timeout=10) as reply:  # noqa: S310
            return json.load(reply)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def __enter__(self) -> SinkProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CountingSmtpHandler:
    """aiosmtpd handler that accepts everything and counts messages and recipients."""

    def __init__(self) -> None:
        self.messages = 0
        self.to: Counter[str] = Counter()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages += 1
        for rcpt in envelope.rcpt_tos:
            self.to[rcpt] += 1
        return "250 OK"


def serve_smtp() -> None:
    """An SMTP sink on 127.0.0.1; ``/_received`` on a side HTTP port reports counts."""
    from aiosmtpd.controller import Controller

    handler = CountingSmtpHandler()
    with socket.socket() as probe:  # aiosmtpd cannot bind port 0: pick a free one
        probe.bind(("127.0.0.1", 0))
        smtp_port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=smtp_port)
    controller.start()

    class Report(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:  # noqa: N802
            raw = json.dumps({"total": handler.messages, "to": dict(handler.to)}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    report = ThreadingHTTPServer(("127.0.0.1", 0), Report)
    print(report.server_address[1], smtp_port, flush=True)
    report.serve_forever(poll_interval=0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["postmark", "smtp"])
    parser.add_argument("--count-only", action="store_true")
    parser.add_argument("--throttle-every", type=int, default=0)
    args = parser.parse_args()
    if args.kind == "smtp":
        return serve_smtp()
    server = PostmarkServer(count_only=args.count_only, throttle_every=args.throttle_every)
    print(server.server_address[1], flush=True)
    server.serve_forever(poll_interval=0.2)  # ends with the process (SIGTERM)


if __name__ == "__main__":
    main()
