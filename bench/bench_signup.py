"""Signups per second through the real web app under gunicorn, with latency and loss.

`newsletter serve` (2 workers x threads, the default SQLite store and outbox provider)
runs on 127.0.0.1 in a throwaway project; this process is the client: a few threads,
each on one keep-alive connection, send a bounded number of form signups (and stop
early after MAX_SECONDS). Afterwards the store is counted: every 200 must be a row.
The confirmation emails are sent by serve's low-priority mailer process from the
queue; the bench waits (at most DRAIN_SECONDS) until every signup has its email in the
outbox and reports how long that took. Nothing is sent anywhere but 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

from bench import Row
from pipeline.settings import load_settings
from subscribers.store import Store
from tests.helpers import free_port, running_server, set_base_url

REPO = Path(__file__).resolve().parent.parent
REQUESTS = 6000
CLIENT_THREADS = 8
WORKERS = 2
SERVER_THREADS = 4
MAX_SECONDS = 30.0
DRAIN_SECONDS = 90.0


def run() -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench-signup-") as tmp:
        project = _project(Path(tmp))
        port = free_port()
        config = project / "newsletter.toml"
        set_base_url(config, f"http://127.0.0.1:{port}")
        env = {
            "PATH": os.environ.get("PATH", ""),
            "NEWSLETTER_SECRET_KEY": "bench",
            "NEWSLETTER_SIGNUP_RATE_LIMIT": "0",  # one client IP sends everything
        }
        log = project / "serve.log"
        settings = load_settings(config, env=env)
        with (
            running_server(
                config, env, port=port, workers=WORKERS, threads=SERVER_THREADS, log=log
            ),
            Store.from_settings(settings) as store,
        ):
            _load(port, "warmup", 200)
            _drain(store, time.monotonic() + DRAIN_SECONDS)
            result = _load(port, "r", REQUESTS)
            queued = store.queued_confirmations()
            drained = _drain(store, time.monotonic() + DRAIN_SECONDS)
            stored = store.count() - 200
        mailed = _mailed(settings.outbox_dir) - 200
    return _rows(result, stored) + _mail_rows(result, queued, drained, mailed)


def _project(root: Path) -> Path:
    for name in ("content", "templates"):
        shutil.copytree(REPO / name, root / name)
    shutil.copy(REPO / "newsletter.toml", root / "newsletter.toml")
    return root


class _Result:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.elapsed = 0.0
        self.lock = threading.Lock()

    def add(self, latencies: list[float], statuses: list[int]) -> None:
        with self.lock:
            self.latencies += latencies
            for status in statuses:
                self.statuses[status] = self.statuses.get(status, 0) + 1

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)


def _load(port: int, prefix: str, total: int) -> _Result:
    result = _Result()
    deadline = time.monotonic() + MAX_SECONDS
    per_thread = total // CLIENT_THREADS
    start_gate = threading.Barrier(CLIENT_THREADS + 1)

    def client(n: int) -> None:
        conn = _Client(port)
        latencies, statuses = [], []
        start_gate.wait()
        for i in range(per_thread):
            if time.monotonic() > deadline:
                break
            began = time.perf_counter()
            statuses.append(conn.signup(f"{prefix}{n}-{i}@example.com", f"Reader {i}"))
            latencies.append((time.perf_counter() - began) * 1000)
        conn.close()
        result.add(latencies, statuses)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENT_THREADS)]
    for t in threads:
        t.start()
    start_gate.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    result.elapsed = time.perf_counter() - began
    return result


class _Client:
    """A minimal HTTP/1.1 keep-alive client: http.client parses every reply's headers
    with email.parser, CPU the server under test would otherwise not get."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.host = f"127.0.0.1:{port}"
        self.buffer = b""

    def signup(self, email: str, name: str) -> int:
        body = urllib.parse.urlencode({"email": email, "name": name, "form": "article"})
        head = (
            f"POST /subscribe HTTP/1.1\r\nHost: {self.host}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.sock.sendall((head + body).encode())
        return self._response()

    def _response(self) -> int:
        while b"\r\n\r\n" not in self.buffer:
            self._recv()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in lines
            if line.lower().startswith(b"content-length:")
        )
        while len(self.buffer) < length:
            self._recv()
        self.buffer = self.buffer[length:]
        return int(lines[0].split()[1])

    def _recv(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def _drain(store: Store, deadline: float) -> float:
    """Seconds until the confirmation queue is empty (stops waiting at ``deadline``)."""
    began = time.monotonic()
    while store.queued_confirmations() and time.monotonic() < deadline:
        time.sleep(0.1)
    return time.monotonic() - began


def _mailed(outbox: Path) -> int:
    return sum(1 for sub in ("new", "cur") for _ in (outbox / sub).iterdir())


def _mail_rows(result: _Result, queued: int, drained: float, mailed: int) -> list[Row]:
    return [
        Row("signup", "confirmations queued at end of load", queued, "emails", "",
            "sent by the mailer process (nice 19) from spare CPU"),
        Row("signup", "queue drained after the load", drained, "s", "",
            "outbox: MIME + Maildir write ~4 ms/email"),
        Row("signup", "signups without a confirmation email", result.ok - mailed, "emails",
            "<= 0"),
    ]  # fmt: skip


def _rows(result: _Result, stored: int) -> list[Row]:
    lat = sorted(result.latencies)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    note = f"{len(lat)} POST /subscribe, {WORKERS} workers x {SERVER_THREADS} threads, SQLite"
    errors = sum(n for status, n in result.statuses.items() if status != 200)
    return [
        Row("signup", "signups/s", result.ok / result.elapsed, "req/s", ">= 500", note),
        Row(
            "signup",
            "latency p50",
            statistics.median(lat),
            "ms",
            "",
            "signup stored + email queued",
        ),
        Row("signup", "latency p99", p99, "ms", ""),
        Row("signup", "lost signups (200 without a row)", result.ok - stored, "rows", "<= 0"),
        Row("signup", "non-200 answers", errors, "req", "<= 0", str(result.statuses)),
    ]
