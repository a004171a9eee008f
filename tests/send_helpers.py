"""Helpers for send tests: a store full of confirmed readers and recording providers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipeline.message import Message
from pipeline.providers.base import Provider, SendResult, Status
from pipeline.settings import Settings
from subscribers.store import Consent, NewSubscriber, Store

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
