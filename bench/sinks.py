"""Local stand-ins for a provider, for end-to-end tests and benchmarks on 127.0.0.1.

``python -m bench.sinks smtp`` is an SMTP sink (aiosmtpd) that counts what it accepts;
``smtp-fast`` a minimal asyncio one (250 to everything) that never limits the client.
``python -m bench.sinks postmark|mailgun [--count-only] [--throttle-every K]
[--fault reset|504|hang --fault-every K --fault-limit N] [--search-lag S] [--latency MS]``
serves the provider's send and lookup endpoints (see :mod:`bench.http_sinks`) and
prints its port.
``GET /_received`` returns what it accepted: ``{"total": n, "to": {address: times},
...}``. It runs as its own process so it never competes with the sender for the GIL.
Only ever binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.http_sinks import FAULTS, HANDLERS, Faults, SinkServer


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

    def received(self, *, addresses: bool = True) -> dict[str, Any]:
        """What the sink accepted; ``addresses=False`` leaves out the per-address map
        (a million entries at the largest benchmark) for its summary."""
        query = "" if addresses else "?counts=1"
        with urllib.request.urlopen(f"{self.url}/_received{query}", timeout=30) as reply:  # noqa: S310
            return json.load(reply)

    def cpu_seconds(self) -> float:
        """CPU time the sink has used so far (to show it was not the bottleneck)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

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


class FastSmtp(asyncio.Protocol):
    """The least an SMTP server does: 250 to every command, 354 to DATA, then 250 at
    the end of the message. No parsing beyond line ends, so the client is measured."""

    messages = 0
    to: Counter[str] = Counter()
    lock = threading.Lock()  # the report is read from another thread

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = b""
        self.in_data = False
        self.rcpts: list[str] = []
        transport.write(b"220 127.0.0.1 fast sink ready\r\n")

    def data_received(self, data: bytes) -> None:
        # the part of a message already searched (the end mark may straddle two reads)
        seen = max(0, len(self.buffer) - 4) if self.in_data else 0
        self.buffer += data
        replies = []
        while True:
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n", seen)
                seen = 0
                if end < 0:
                    break
                self.buffer = self.buffer[end + 5 :]
                self.in_data = False
                with FastSmtp.lock:
                    FastSmtp.messages += 1
                    FastSmtp.to.update(self.rcpts)
                self.rcpts = []
                replies.append(b"250 2.0.0 queued\r\n")
                continue
            line, sep, rest = self.buffer.partition(b"\r\n")
            if not sep:
                break
            self.buffer = rest
            replies.append(self.command(line))
        if replies:
            self.transport.write(b"".join(replies))

    def command(self, line: bytes) -> bytes:
        verb = line[:4].upper()
        if verb == b"DATA":
            self.in_data = True
            return b"354 end data with <CR><LF>.<CR><LF>\r\n"
        if verb == b"RCPT":
            self.rcpts.append(line.partition(b"<")[2].partition(b">")[0].decode())
        if verb == b"EHLO":
            return b"250-127.0.0.1\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
        if verb == b"QUIT":
            self.transport.write(b"221 bye\r\n")
            self.transport.close()
            return b""
        return b"250 OK\r\n"


def serve_fast_smtp() -> None:
    """A fast SMTP sink on 127.0.0.1 (asyncio, one thread); counts on a side HTTP port."""
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(FastSmtp, "127.0.0.1", 0))
    smtp_port = server.sockets[0].getsockname()[1]

    def counts() -> dict[str, Any]:
        with FastSmtp.lock:
            return {"total": FastSmtp.messages, "to": dict(FastSmtp.to)}

    report = _report_server(counts)
    threading.Thread(target=report.serve_forever, daemon=True).start()
    print(report.server_address[1], smtp_port, flush=True)
    loop.run_forever()


def _report_server(counts: Any) -> ThreadingHTTPServer:
    class Report(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:  # noqa: N802
            raw = json.dumps(counts()).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    return ThreadingHTTPServer(("127.0.0.1", 0), Report)


def serve_smtp() -> None:
    """An SMTP sink on 127.0.0.1; ``/_received`` on a side HTTP port reports counts."""
    from aiosmtpd.controller import Controller

    handler = CountingSmtpHandler()
    with socket.socket() as probe:  # aiosmtpd cannot bind port 0: pick a free one
        probe.bind(("127.0.0.1", 0))
        smtp_port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    report = _report_server(lambda: {"total": handler.messages, "to": dict(handler.to)})
    print(report.server_address[1], smtp_port, flush=True)
    report.serve_forever(poll_interval=0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=[*HANDLERS, "smtp", "smtp-fast"])
    parser.add_argument("--count-only", action="store_true")
    parser.add_argument("--throttle-every", type=int, default=0)
    parser.add_argument("--fault", choices=FAULTS, default="")
    parser.add_argument("--fault-every", type=int, default=0)
    parser.add_argument("--fault-limit", type=int, default=0)
    parser.add_argument("--hang", type=float, default=30.0)
    parser.add_argument("--search-lag", type=float, default=0.0)
    parser.add_argument("--latency", type=float, default=0.0, help="ms before each answer")
    args = parser.parse_args()
    if args.kind == "smtp":
        return serve_smtp()
    if args.kind == "smtp-fast":
        return serve_fast_smtp()
    server = SinkServer(
        HANDLERS[args.kind],
        count_only=args.count_only,
        throttle_every=args.throttle_every,
        faults=Faults(args.fault, args.fault_every, args.fault_limit, args.hang),
        search_lag=args.search_lag,
        latency=args.latency / 1000,
    )
    print(server.server_address[1], flush=True)
    server.serve_forever(poll_interval=0.2)  # ends with the process (SIGTERM)


if __name__ == "__main__":
    main()
