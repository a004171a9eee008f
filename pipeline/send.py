"""The send loop: claim a batch, personalise, hand it to the provider, record outcomes.

The ledger (``subscribers.ledger.Ledger`` in practice) is reached only through the
:class:`Ledger` protocol, so this module never imports the store. Each batch is claimed
(and committed) before the provider is called and recorded right after, so a crash at
any instant leaves at most that one batch in flight; see ``subscribers/ledger.py``.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pipeline.errors import ProviderError, SendError
from pipeline.message import Message
from pipeline.providers.base import Provider, SendResult
from pipeline.render import Compiled, Recipient

TokenFor = Callable[[int, str], str]  # (subscriber id, link key) -> link token
Progress = Callable[[int], None]


class Claimed(Protocol):
    claim: str
    rows: list[tuple[int, str, str, str]]  # (id, email, name, link_key) of those still eligible
    left: list[int]  # ids of those who left the list since the snapshot


class Ledger(Protocol):
    """What the send loop needs of the ledger."""

    def claim(self, campaign_id: int, limit: int, topic: str) -> Claimed | None: ...

    def recover(
        self, campaign_id: int, topic: str, *, older_than: dt.timedelta
    ) -> Sequence[Claimed]: ...

    def record(self, campaign_id: int, claim: str, outcomes: Sequence[Outcome]) -> None: ...

    def release(self, campaign_id: int, claim: str) -> None: ...

    def pending(self, campaign_id: int) -> int: ...

    def suppress(self, email: str, reason: str, source: str) -> None: ...


@dataclass(frozen=True)
class Outcome:
    subscriber_id: int
    status: str  # sent | failed | retry | skipped
    provider_id: str = ""
    reason: str = ""


@dataclass
class Tally:
    """What one run did, for the summary at the end."""

    sent: int = 0
    failed: int = 0
    retry: int = 0
    skipped: int = 0
    suppressed: int = 0
    batches: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def merge(self, other: dict[str, object]) -> None:
        """Add another process's tally (from :meth:`as_dict`)."""
        with self.lock:
            for name in ("sent", "failed", "retry", "skipped", "suppressed", "batches"):
                setattr(self, name, getattr(self, name) + int(other.get(name, 0)))  # type: ignore[call-overload]
            self.reasons.update(other.get("reasons", {}))  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, object]:
        names = ("sent", "failed", "retry", "skipped", "suppressed", "batches")
        return {**{n: getattr(self, n) for n in names}, "reasons": dict(self.reasons)}

    def add(self, outcomes: Sequence[Outcome], suppressed: int) -> None:
        with self.lock:
            self.batches += 1
            self.suppressed += suppressed
            for o in outcomes:
                setattr(self, o.status, getattr(self, o.status) + 1)
                if o.status != "sent":
                    self.reasons[f"{o.status}: {o.reason or 'unknown'}"] += 1


class RateLimiter:
    """Paces messages to ``rate`` per second across threads (0 = unlimited)."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.next_free = clock()
        self.lock = threading.Lock()

    def wait(self, n: int) -> None:
        if self.rate <= 0:
            return
        with self.lock:
            now = self.clock()
            start = max(now, self.next_free)
            self.next_free = start + n / self.rate
        if start > now:
            self.sleep(start - now)


@dataclass
class Sender:
    """Sends one campaign through one provider, batch by batch."""

    compiled: Compiled
    campaign_id: int
    ledger: Ledger
    provider_factory: Callable[[], Provider]
    token_for: TokenFor
    batch_size: int
    limiter: RateLimiter
    lease: dt.timedelta = dt.timedelta(0)  # in-flight batches older than this are retaken
    patience: float = 10.0  # seconds to wait for rows other workers are mid-claiming
    progress: Progress = lambda n: None
    tally: Tally = field(default_factory=Tally)

    @property
    def topic(self) -> str:
        return self.compiled.module.topic

    def run(self, *, recover: bool = True, drain: bool = True) -> Tally:
        """Retake batches left in flight (``recover``), then empty the queue (``drain``).

        A :class:`ProviderError` stops the run; its batch is back in the queue.
        """
        provider = self.provider_factory()
        try:
            if recover:
                stale = self.ledger.recover(self.campaign_id, self.topic, older_than=self.lease)
                for batch in stale:
                    self.send(provider, batch)
            while drain and (batch := self._next_batch()):
                self.send(provider, batch)
        finally:
            provider.close()
        return self.tally

    def _next_batch(self) -> Claimed | None:
        """The next batch, or None when nobody is left to claim.

        With several workers, a claim skips rows another worker is claiming right now
        (SKIP LOCKED): an empty claim while rows are still pending means "wait a moment",
        not "done". Gives up after ``patience`` seconds of that.
        """
        deadline = time.monotonic() + self.patience
        while True:
            batch = self.ledger.claim(self.campaign_id, self.batch_size, self.topic)
            if batch is not None or not self.ledger.pending(self.campaign_id):
                return batch
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def send(self, provider: Provider, batch: Claimed) -> None:
        """One claimed batch: skip leavers, send the rest, record every outcome."""
        skipped = [
            Outcome(sid, "skipped", reason="left the list before sending") for sid in batch.left
        ]
        rows = batch.rows
        messages = [self.message(r, provider.encodings) for r in rows]
        results: list[SendResult] = []
        if messages:
            self.limiter.wait(len(messages))
            try:
                results = provider.send_batch(messages)
            except ProviderError:
                self.ledger.release(self.campaign_id, batch.claim)
                raise
        outcomes = skipped + [outcome(r[0], res) for r, res in zip(rows, results, strict=True)]
        self.ledger.record(self.campaign_id, batch.claim, outcomes)
        suppressed = self._suppress(rows, results, provider.name)
        self.tally.add(outcomes, suppressed)
        self.progress(len(rows) + len(skipped))

    def message(
        self, row: tuple[int, str, str, str], encodings: frozenset[str] = frozenset()
    ) -> Message:
        sid, email, name, link_key = row
        recipient = Recipient(sid, email, name, self.token_for(sid, link_key))
        return self.compiled.personalize(recipient, encodings=encodings)

    def _suppress(
        self, rows: list[tuple[int, str, str, str]], results: Sequence[SendResult], provider: str
    ) -> int:
        hard = [(r, res) for r, res in zip(rows, results, strict=True) if res.suppress]
        for row, res in hard:
            self.ledger.suppress(row[1], "bounced", f"{provider}: {res.reason}"[:200])
        return len(hard)


def outcome(subscriber_id: int, result: SendResult) -> Outcome:
    if result.accepted:
        return Outcome(subscriber_id, "sent", result.provider_id)
    status = "retry" if result.retryable else "failed"
    return Outcome(subscriber_id, status, result.provider_id, result.reason or result.status)


def abort_message(exc: ProviderError, resume: str) -> SendError:
    """The provider refused a whole batch: say what to fix and how to resume."""
    return SendError(
        f"sending stopped: {exc.message}",
        hint=f"{exc.hint + '; ' if exc.hint else ''}then resume with: {resume}",
    )
