"""Local stand-ins for a provider, for end-to-end tests and benchmarks on 127.0.0.1.

``python -m bench.sinks smtp`` is an SMTP sink (aiosmtpd) that counts what it accepts.
``python -m bench.sinks postmark|mailgun [--count-only] [--throttle-every K]
[--fault reset|504|hang --fault-every K --fault-limit N] [--search-lag S]`` serves the
provider's send and lookup endpoints (see :mod:`bench.http_sinks`) and prints its port.
``GET /_received`` returns what it accepted: ``{"total": n, "to": {address: times},
...}``. It runs as its own process so it never competes with the sender for the GIL.
Only ever binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
    parser.add_argument("kind", choices=[*HANDLERS, "smtp"])
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
