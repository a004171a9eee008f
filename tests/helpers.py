"""Test support for the subscriber side (like ``flask.testing``): an in-memory provider,
isolated PostgreSQL schemas, store snapshots, the outbox, and a real ``newsletter serve``.

Used by the tests and the signup benchmark; nothing here runs in production.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import mailbox
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pipeline.message import Message, to_bytes
from pipeline.providers.base import Provider, SendResult, Status
from pipeline.settings import Settings
from subscribers import schema
from subscribers.store import Store

CONFIRM_LINK = re.compile(r"https?://\S+/confirm/[A-Za-z0-9_.\-]+")


class RecordingProvider(Provider):
    """Keeps every message in memory; ``fail_with`` makes every send fail."""

    name = "recording"
    max_batch = 100

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.fail_with: Status | None = None
        self.retryable = False  # whether a failure may be retried
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> RecordingProvider:
        return cls()

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        with self._lock:
            if self.fail_with is None:
                self.sent.extend(messages)
        status = self.fail_with or Status.SENT
        reason = "" if self.fail_with is None else "provider said no"
        return [
            SendResult(m.message_id, m.to_email, status, reason=reason, retryable=self.retryable)
            for m in messages
        ]

    def to(self, email: str) -> list[Message]:
        return [m for m in self.sent if m.to_email.lower() == email.lower()]

    def mime(self, index: int = -1) -> EmailMessage:
        return message_from_bytes(to_bytes(self.sent[index]), policy=policy.default)  # type: ignore[return-value]


class Clock:
    """A clock for ``Store(clock=...)`` that stands still until a test moves it."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += dt.timedelta(**kwargs)


def confirm_link(text: str) -> str:
    found = CONFIRM_LINK.search(text)
    if not found:
        raise AssertionError(f"no confirmation link in:\n{text}")
    return found.group(0)


def unsubscribe_url(list_unsubscribe: str) -> str:
    """The http(s) URL out of a List-Unsubscribe header."""
    for part in re.findall(r"<([^>]+)>", list_unsubscribe):
        if part.startswith(("http://", "https://")):
            return part
    raise AssertionError(f"no http(s) URL in List-Unsubscribe: {list_unsubscribe!r}")


def read_outbox(outbox_dir: Path) -> list[EmailMessage]:
    """Every message in the outbox Maildir, oldest first (by delivery time)."""
    if not all((outbox_dir / sub).is_dir() for sub in ("tmp", "new", "cur")):
        return []  # not there yet, or being made by another process right now
    box = mailbox.Maildir(outbox_dir, create=False)
    keys = sorted(box.iterkeys(), key=lambda key: (box.get_message(key).get_date(), key))
    return [
        message_from_bytes(box.get_bytes(key), policy=policy.default)  # type: ignore[misc]
        for key in keys
    ]


def wait_for_outbox(outbox_dir: Path, count: int, timeout: float = 20.0) -> list[EmailMessage]:
    """The outbox once it holds ``count`` messages (the mailer sends in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        messages = read_outbox(outbox_dir)
        if len(messages) >= count or time.monotonic() > deadline:
            return messages
        time.sleep(0.05)


def text_part(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    return part.get_content() if part is not None else ""


# ---- databases -------------------------------------------------------------------------


@contextlib.contextmanager
def pg_schema(pg_url: str) -> Iterator[str]:
    """A URL whose connections use a fresh, private PostgreSQL schema, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(pg_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    url = sa.engine.make_url(pg_url).update_query_dict({"options": f"-csearch_path={name}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
        admin.dispose()


def snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, to assert that a bad request changed nothing."""
    tables = {}
    with store.engine.connect() as conn:
        for table in schema.metadata.sorted_tables:
            if sa.inspect(conn).has_table(table.name):
                rows = conn.execute(sa.select(table)).all()
                tables[table.name] = sorted(tuple(map(str, r)) for r in rows)
    return tables


# ---- a real server -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def set_site(config: Path, **values: str) -> None:
    """Set keys of ``[site]`` in a newsletter.toml (e.g. base_url of the server under test)."""
    text = config.read_text()
    for key, value in values.items():
        line = f'{key} = "{value}"'
        text, count = re.subn(rf"(?m)^{key}\s*=.*$", line, text)
        if not count:
            text = text.replace("[site]", f"[site]\n{line}", 1)
    config.write_text(text)


def set_base_url(config: Path, base_url: str) -> None:
    set_site(config, base_url=base_url)


@contextlib.contextmanager
def running_server(
    config: Path,
    env: Mapping[str, str],
    *,
    port: int,
    workers: int = 1,
    threads: int = 8,
    log: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """``newsletter serve`` in a subprocess on 127.0.0.1:port, stopped afterwards."""
    args = [sys.executable, "-m", "pipeline", "--config", str(config), "serve"]
    args += ["--host", "127.0.0.1", "--port", str(port)]
    args += ["--workers", str(workers), "--threads", str(threads)]
    out = log.open("wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(args, env=dict(env), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, log)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log:
            out.close()  # type: ignore[union-attr]


def wait_healthy(
    base: str, proc: subprocess.Popen[bytes], log: Path | None, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            detail = log.read_text(errors="replace") if log else ""
            raise RuntimeError(f"newsletter serve exited with {proc.returncode}\n{detail}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as resp:  # noqa: S310
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"newsletter serve did not become healthy within {timeout}s")
