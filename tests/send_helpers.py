"""Helpers for send tests: a store full of confirmed readers and recording providers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pipeline.message import Message
from pipeline.providers.base import Provider, SendResult, Status
from pipeline.settings import Settings
from subscribers.models import Consent, NewSubscriber
from subscribers.store import Store

CONSENT = Consent(kind="import", source="test fixture", wording="test readers")


def fill(store: Store, n: int, topics: tuple[str, ...] = ("updates",), start: int = 0) -> list[int]:
    """Add ``n`` confirmed readers; returns their ids."""
    rows = [
        NewSubscriber(f"reader{i}@example.com", f"Reader {i}", topics, line=i)
        for i in range(start, start + n)
    ]
    ids: list[int] = []
    for chunk in range(0, len(rows), 1000):
        results = store.add_many(rows[chunk : chunk + 1000], confirmed=True, consent=CONSENT)
        ids += [r.subscriber_id for r in results if r.subscriber_id is not None]
    return ids


class Crash(BaseException):
    """Stands in for kill -9: not an Exception, so nothing on the way catches it."""


class Recorder(Provider):
    """Accepts every message and remembers who got what; can fail on cue."""

    name = "recorder"
    max_batch = 10

    def __init__(self, inbox: list[Message] | None = None, *, lookup: bool = False) -> None:
        self.inbox: list[Message] = [] if inbox is None else inbox
        self.lookups: list[list[str]] = []  # Message-IDs asked about, per lookup
        self._can_lookup = lookup
        self.calls = 0
        self.crash_before_call: int | None = None  # crash on the Nth call, nothing sent
        self.crash_after_accept: int | None = None  # crash on the Nth call, all delivered
        self.crash_during: int | None = None  # crash on the Nth call, half delivered
        self.reject: dict[str, SendResult] = {}  # email -> result to return

    @classmethod
    def from_settings(cls, settings: Settings) -> Recorder:
        return cls()

    @property
    def can_lookup(self) -> bool:
        return self._can_lookup

    def lookup(self, messages: Sequence[Message], *, sent_at: object) -> dict[str, str]:
        """What a provider with a message search answers: the ones it holds."""
        self.lookups.append([m.message_id for m in messages])
        held = {m.message_id for m in self.inbox}
        return {m.message_id: f"id-{m.to_email}" for m in messages if m.message_id in held}

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        self.calls += 1
        if self.calls == self.crash_before_call:
            raise Crash("before the call")
        results = []
        if self.calls == self.crash_during:
            self.inbox.extend(messages[: len(messages) // 2])
            raise Crash("during the call")
        for msg in messages:
            if msg.to_email in self.reject:
                results.append(self.reject[msg.to_email])
                continue
            self.inbox.append(msg)
            results.append(
                SendResult(msg.message_id, msg.to_email, Status.QUEUED, f"id-{msg.to_email}")
            )
        if self.calls == self.crash_after_accept:
            raise Crash("after the provider accepted")
        return results


def received(inbox: Sequence[Message]) -> list[str]:
    return sorted(m.to_email for m in inbox)


def store_for(tmp_path: Path, settings: Settings) -> Store:
    return Store(f"sqlite:///{tmp_path / 'send.db'}", topics=list(settings.topics))


NEWSLETTER = [sys.executable, "-m", "pipeline"]


def sink_project(
    project: Path,
    sink_url: str,
    db_url: str,
    provider: str = "postmark",
    timeout: float = 5,
    lookup_lag: float = 0.2,
    **provider_options: object,
) -> dict[str, str]:
    """Point the project at the sink and the database; return the environment to run in.

    A lost answer is looked up ``timeout + lookup_lag`` seconds after its request."""
    cfg = project / "newsletter.toml"
    options = {"mailgun_domain": "mg.example.com"} if provider == "mailgun" else {}
    options.update(provider_options)
    extra = "".join(f"{k} = {_toml(v)}\n" for k, v in options.items())
    cfg.write_text(
        cfg.read_text().replace(
            'name = "outbox"',
            f'name = "{provider}"\napi_base_url = "{sink_url}"\nmax_retries = 3\n'
            f"timeout = {timeout}\nlookup_lag = {lookup_lag}\n{extra}",
        )
    )
    return {
        "PATH": os.environ["PATH"],
        "NEWSLETTER_CONFIG": str(cfg),
        "NEWSLETTER_DATABASE_URL": db_url,
        "NEWSLETTER_SECRET_KEY": "process-test",
        "NEWSLETTER_BASE_URL": "https://news.hingestrength.example.com",  # pipeline.guard
        "POSTMARK_SERVER_TOKEN": "server-token",
        "MAILGUN_API_KEY": "key-test",
        "SENDGRID_API_KEY": "SG.test",
    }


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"' if isinstance(value, str) else str(value)


def run_send(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``newsletter send hip-hinge --yes ARGS`` to the end."""
    return subprocess.run(
        [*NEWSLETTER, "send", "hip-hinge", "--yes", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def readers(n: int) -> list[str]:
    """The To fields a sink sees for ``fill(store, n)``."""
    return sorted(f"Reader {i} <reader{i}@example.com>" for i in range(n))


def start_send(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*NEWSLETTER, "send", "hip-hinge", "--yes", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(predicate, timeout: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)
