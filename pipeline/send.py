"""The send loop: claim a batch, personalise, hand it to the provider, record outcomes.

The ledger (``subscribers.ledger.Ledger`` in practice) is reached only through the
:class:`Ledger` protocol, so this module never imports the store. Each batch is claimed
(and committed) before the provider is called and recorded right after, so a crash at
any instant leaves at most the batch in flight held by the dead run; see
``subscribers/ledger.py``.

A lost answer (:class:`~pipeline.providers.base.OutcomeUnknown`) is never sent again
blindly. Its rows are recorded ``unknown`` and kept as one batch; then they are
*settled*, the way the provider allows (``Provider.settles_unknown``):

- ``lookup``: once the request can no longer be in flight and the provider's search has
  caught up, ask the provider which messages it accepted; record those as sent
  (``reconciled``) and send only the others (``resent``);
- ``idempotent``: send the same batch again; the provider drops the duplicate;
- ``author``: nobody can tell. The run stops and the author decides: ``resend`` or
  ``skip`` (``--resend-unknown`` / ``--skip-unknown``).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Protocol

from pipeline.errors import ProviderError, SendError
from pipeline.message import Message
from pipeline.providers.base import (
    REFUSED_STATUSES,
    OutcomeUnknown,
    Provider,
    SendResult,
    Status,
    unknown,
)
from pipeline.render import Compiled, Recipient
from pipeline.window import Window

TokenFor = Callable[[int, str], str]  # (subscriber id, link key) -> link token
Progress = Callable[[int], None]
Row = tuple[int, str, str, str]  # (subscriber id, email, name, link key)
SETTLE_TRIES = 3  # lookups or re-sends of one unknown batch in one run
# When a lost answer is settled by the author instead of by a lookup.
POLICIES = ("settle", "resend", "skip")


class Claimed(Protocol):
    claim: str
    rows: list[Row]  # (id, email, name, link_key) of those still eligible
    left: list[int]  # ids of those who left the list since the snapshot
    claimed_at: dt.datetime  # when first claimed: lookups search from there
    quiet_since: dt.datetime  # no request for it started after this


@dataclass(frozen=True)
class Batch:
    """A claimed batch as the send loop carries it (the ledger's rows are one kind)."""

    claim: str
    rows: list[Row]
    left: list[int]
    claimed_at: dt.datetime
    quiet_since: dt.datetime


class Ledger(Protocol):
    """What the send loop needs of the ledger."""

    def claim(
        self, campaign_id: int, limit: int, topic: str, holder: str | None = None
    ) -> Claimed | None: ...

    def recover(
        self, campaign_id: int, topic: str, *, holder: str, lease: dt.timedelta
    ) -> Sequence[Claimed]: ...

    def record(self, campaign_id: int, claim: str, outcomes: Sequence[Outcome]) -> None: ...

    def release(self, campaign_id: int, claim: str) -> None: ...

    def pending(self, campaign_id: int) -> int: ...

    def heartbeat(self, run_id: str) -> None: ...

    def suppress(self, email: str, reason: str, source: str) -> None: ...


@dataclass(frozen=True)
class Outcome:
    subscriber_id: int
    status: str  # sent | failed | retry | skipped | unknown
    provider_id: str = ""
    reason: str = ""
    doubt: str = ""  # how a lost answer was settled: reconciled | resent | skipped


class InDoubt(SendError):
    """The run stopped: answers were lost and this provider cannot be asked about them."""


COUNTS = ("sent", "failed", "retry", "skipped", "unknown", "suppressed", "batches")
DOUBTS = ("reconciled", "resent")


@dataclass
class Tally:
    """What one run did, for the summary at the end."""

    sent: int = 0
    failed: int = 0
    retry: int = 0
    skipped: int = 0
    unknown: int = 0  # answers lost (each settled later or left in doubt)
    suppressed: int = 0
    batches: int = 0
    reconciled: int = 0  # lost answers the provider confirmed it had accepted
    resent: int = 0  # lost answers sent again (not accepted, or idempotent, or by choice)
    reasons: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def merge(self, other: dict[str, object]) -> None:
        """Add another process's tally (from :meth:`as_dict`)."""
        with self.lock:
            for name in (*COUNTS, *DOUBTS):
                setattr(self, name, getattr(self, name) + int(other.get(name, 0)))  # type: ignore[call-overload]
            self.reasons.update(other.get("reasons", {}))  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, object]:
        names = (*COUNTS, *DOUBTS)
        return {**{n: getattr(self, n) for n in names}, "reasons": dict(self.reasons)}

    def add(self, outcomes: Sequence[Outcome], suppressed: int) -> None:
        with self.lock:
            self.batches += 1
            self.suppressed += suppressed
            for o in outcomes:
                setattr(self, o.status, getattr(self, o.status) + 1)
                if o.doubt in DOUBTS:
                    setattr(self, o.doubt, getattr(self, o.doubt) + 1)
                if o.status not in ("sent", "unknown"):
                    self.reasons[f"{o.status}: {o.reason or 'unknown'}"] += 1

    def note(self, reason: str, n: int = 1) -> None:
        with self.lock:
            self.reasons[reason] += n


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
    """Sends one campaign through one provider, batch by batch, as run ``run_id``."""

    compiled: Compiled
    campaign_id: int
    ledger: Ledger
    provider_factory: Callable[[], Provider]
    token_for: TokenFor
    batch_size: int
    limiter: RateLimiter
    run_id: str = ""
    lease: dt.timedelta = dt.timedelta(seconds=30)  # silence after which a run is dead
    patience: float = 10.0  # seconds to wait for rows other workers are mid-claiming
    unknown_policy: str = "settle"  # settle | resend | skip: what to do with lost answers
    progress: Progress = lambda n: None
    tally: Tally = field(default_factory=Tally)
    stop: threading.Event = field(default_factory=threading.Event)  # finish the batch, stop
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    window: Window = field(default_factory=lambda: Window(1))  # batches in flight at once
    requests: RateLimiter = field(default_factory=lambda: RateLimiter(0))  # provider calls/s
    doubtful: list[Batch] = field(default_factory=list)  # unknown batches to settle
    inherited: set[str] = field(default_factory=set)  # claims in doubt before this run
    _progress_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # This thread's last provider call: its seconds (the window's latency signal).
    _last_call: threading.local = field(default_factory=threading.local, repr=False)
    unsettled: str = ""  # why some lost answers could not be settled in this run

    @property
    def topic(self) -> str:
        return self.compiled.module.topic

    def run(self, *, recover: bool = True, drain: bool = True) -> Tally:
        """Take over batches of dead runs (``recover``), empty the queue (``drain``), and
        settle every lost answer before returning.

        A :class:`ProviderError` stops the run; its batch is back in the queue. A lost
        answer that only the author can settle stops it with :class:`InDoubt`.
        """
        provider = self.provider_factory()
        try:
            self._respect_limits(provider)
            if recover:
                stale = self.ledger.recover(
                    self.campaign_id, self.topic, holder=self.run_id, lease=self.lease
                )
                self.doubtful += [_batch(b) for b in stale]
                self.inherited |= {b.claim for b in stale}
                self.settle(provider, wait=False)
            if drain:
                self._drain(provider)
            self.settle(provider, wait=not self.stop.is_set())
        finally:
            provider.close()
        return self.tally

    def _respect_limits(self, provider: Provider) -> None:
        """The provider's documented limits: requests a second (Resend), the account's
        sending rate (SES GetAccount), batches in flight."""
        if provider.requests_per_second and not self.requests.rate:
            self.requests.rate = provider.requests_per_second
        account = provider.max_send_rate()
        if account and (not self.limiter.rate or self.limiter.rate > account):
            self.limiter.rate = account
            self.tally.note(f"paced to {account:g} msg/s: {provider.name}'s account limit")
        self.window.cap = min(self.window.cap, provider.max_in_flight)
        self.window.size = min(self.window.size, float(self.window.cap))

    def _drain(self, provider: Provider) -> None:
        """Empty the queue: one batch at a time, or up to the window's size in flight
        (one thread and one provider connection per lane; each batch claimed first)."""
        if self.window.cap <= 1:
            while not self.stop.is_set() and (batch := self._next_batch()):
                self._timed(provider, batch)
                self.settle(provider, wait=False)
            return
        errors: list[BaseException] = []
        lanes = [
            threading.Thread(target=self._lane, args=(errors,), name=f"lane-{n}", daemon=True)
            for n in range(self.window.cap)
        ]
        for lane in lanes:
            lane.start()
        try:
            for lane in lanes:
                while lane.is_alive():
                    lane.join(0.2)
        except BaseException:
            self.stop.set()  # Ctrl-C twice: lanes die with the process; the run is dead
            raise
        if errors:
            raise errors[0]

    def _lane(self, errors: list[BaseException]) -> None:
        provider = self.provider_factory()
        try:
            while not self.stop.is_set():
                with self.window.slot(self.stop):
                    if self.stop.is_set():
                        return
                    batch = self._next_batch()
                    if batch is None:
                        return
                    try:
                        self._timed(provider, batch)
                    except ProviderError as exc:
                        if not (refused_for_now(exc) and self.window.refused()):
                            raise
                        # Back in the queue (see _call); fewer batches in flight now.
        except BaseException as exc:  # noqa: BLE001 - handed to the run, which raises it
            errors.append(exc)
            self.stop.set()
        finally:
            provider.close()

    def _timed(self, provider: Provider, batch: Claimed) -> None:
        """Send one batch and tell the window how quick and clean the provider was: the
        provider call's own seconds, not the building and recording around it (which
        wait for this process's CPU, not for the provider)."""
        pushed_back = provider.congestion
        start = time.monotonic()
        self._last_call.seconds = None
        lost = self.deliver(provider, _batch(batch), fresh=True)
        congested = bool(lost) or provider.congestion > pushed_back
        seconds = self._last_call.seconds
        self.window.done(
            time.monotonic() - start if seconds is None else seconds, congested=congested
        )

    def _next_batch(self) -> Claimed | None:
        """The next batch, or None when nobody is left to claim.

        With several workers, a claim skips rows another worker is claiming right now
        (SKIP LOCKED): an empty claim while rows are still pending means "wait a moment",
        not "done". Gives up after ``patience`` seconds of that.
        """
        deadline = time.monotonic() + self.patience
        while True:
            batch = self.ledger.claim(
                self.campaign_id, self.batch_size, self.topic, self.run_id or None
            )
            if batch is not None or not self.ledger.pending(self.campaign_id):
                return batch
            if time.monotonic() > deadline or self.stop.wait(0.05):
                return None

    def deliver(self, provider: Provider, batch: Batch, *, fresh: bool, doubt: str = "") -> int:
        """Send ``batch.rows`` (skipping ``batch.left``) and record what became of each.

        Rows whose answer was lost are recorded ``unknown`` and queued to be settled;
        with a provider nobody can ask, that stops the run (:class:`InDoubt`).
        """
        skipped = [
            Outcome(sid, "skipped", reason="left the list before sending") for sid in batch.left
        ]
        rows = batch.rows
        messages = [self.message(r, provider.encodings, batch.claim) for r in rows]
        results = self._call(provider, batch, messages) if messages else []
        outcomes = skipped + [
            outcome(r[0], res, doubt) for r, res in zip(rows, results, strict=True)
        ]
        self.ledger.record(self.campaign_id, batch.claim, outcomes)
        suppressed = self._suppress(rows, results, provider.name)
        self.tally.add(outcomes, suppressed)
        if fresh:
            with self._progress_lock:
                self.progress(len(rows) + len(skipped))
        lost = [r for r, res in zip(rows, results, strict=True) if res.status == Status.UNKNOWN]
        if lost:
            self._lost(provider, replace(batch, rows=lost, left=[], quiet_since=self.now()))
        return len(lost)

    def _call(self, provider: Provider, batch: Batch, messages: list[Message]) -> list[SendResult]:
        """The provider call. Nothing went out: the batch goes back to the queue. The
        answer was lost, or we were interrupted mid-call: every message is unknown."""
        self.limiter.wait(len(messages))
        self.requests.wait(1)
        start = time.monotonic()
        try:
            return provider.send_batch(messages)
        except OutcomeUnknown as exc:
            return unknown(messages, exc)
        except ProviderError:
            self.ledger.release(self.campaign_id, batch.claim)
            raise
        except BaseException:  # Ctrl-C twice, or SIGTERM's default: the call may have gone
            lost = ProviderError("interrupted during the provider call")
            outcomes = [
                outcome(r[0], res)
                for r, res in zip(batch.rows, unknown(messages, lost), strict=True)
            ]
            self.ledger.record(self.campaign_id, batch.claim, outcomes)
            raise
        finally:
            self._last_call.seconds = time.monotonic() - start

    def _lost(self, provider: Provider, batch: Batch) -> None:
        self.doubtful.append(batch)
        if provider.settles_unknown == "author" and batch.claim not in self.inherited:
            self.stop.set()
            raise in_doubt(len(batch.rows), provider.name)

    def _policy(self, provider: Provider, batch: Batch) -> str:
        """How to settle ``batch``: the author's --resend/--skip-unknown applies to the
        readers in doubt when this run began; answers lost in this run are settled the
        provider's way (for SES and SMTP: the run stops and the author decides again)."""
        if self.unknown_policy != "settle" and batch.claim in self.inherited:
            return self.unknown_policy
        return provider.settles_unknown

    # -- settling lost answers -----------------------------------------------------------

    def settle(self, provider: Provider, *, wait: bool) -> None:
        """Settle the unknown batches that can be settled now (``wait``: all of them,
        sleeping until each lookup can be trusted, unless told to stop)."""
        tries: Counter[str] = Counter()
        waiting = [b for b in self.doubtful if self._policy(provider, b) == "author"]
        self.doubtful = [b for b in self.doubtful if b not in waiting]
        try:
            while self.doubtful:
                batch = self.doubtful[0]
                policy = self._policy(provider, batch)
                delay = (self._ready_at(provider, batch, policy) - self.now()).total_seconds()
                if delay > 0 and (not wait or self.stop.wait(delay)):
                    break
                self.doubtful.pop(0)
                tries[batch.claim] += 1
                if tries[batch.claim] > SETTLE_TRIES:
                    self.unsettled = f"{len(batch.rows)} answer(s) still lost after retries"
                    continue
                self._settle_one(provider, batch, policy)
        finally:
            self.doubtful += waiting  # for the author: they stay unknown in the ledger

    def _ready_at(self, provider: Provider, batch: Batch, policy: str) -> dt.datetime:
        """When a batch may be settled: a lookup waits until no request for it can still
        be in flight (the provider timeout) and the provider's search has caught up."""
        if policy != "lookup":
            return batch.quiet_since
        lag = provider.timeout + provider.lookup_lag
        return batch.quiet_since + dt.timedelta(seconds=lag)

    def _settle_one(self, provider: Provider, batch: Batch, policy: str) -> None:
        if policy == "skip":
            reason = "outcome unknown; not sent again (--skip-unknown)"
            outcomes = [
                Outcome(sid, "skipped", reason=reason, doubt="skipped") for sid, *_ in batch.rows
            ]
            outcomes += [Outcome(sid, "skipped", reason="left the list") for sid in batch.left]
            self.ledger.record(self.campaign_id, batch.claim, outcomes)
            self.tally.add(outcomes, 0)
            return
        if policy == "lookup":
            batch = self._reconcile(provider, batch)
            if batch is None:
                return
        self.deliver(provider, batch, fresh=False, doubt="resent")

    def _reconcile(self, provider: Provider, batch: Batch) -> Batch | None:
        """Record what the provider says it accepted; the rest of the batch, to re-send."""
        messages = [self.message(r, provider.encodings, batch.claim) for r in batch.rows]
        try:
            accepted = provider.lookup(messages, sent_at=batch.claimed_at)
        except ProviderError as exc:
            self.unsettled = f"could not ask {provider.name} what it accepted: {exc.message}"
            return None
        done = [
            Outcome(r[0], "sent", accepted[m.message_id], doubt="reconciled")
            for r, m in zip(batch.rows, messages, strict=True)
            if m.message_id in accepted
        ]
        done += [Outcome(sid, "skipped", reason="left the list") for sid in batch.left]
        if done:
            self.ledger.record(self.campaign_id, batch.claim, done)
            self.tally.add(done, 0)
        rest = [
            r for r, m in zip(batch.rows, messages, strict=True) if m.message_id not in accepted
        ]
        return replace(batch, rows=rest, left=[]) if rest else None

    def message(
        self, row: Row, encodings: frozenset[str] = frozenset(), batch: str = ""
    ) -> Message:
        sid, email, name, link_key = row
        recipient = Recipient(sid, email, name, self.token_for(sid, link_key))
        # A provider that reads pre-encoded bodies never needs the plain strings.
        msg = self.compiled.personalize(recipient, encodings=encodings, plain=not encodings)
        if batch:  # lets a lookup find every message of the batch (Postmark, Mailgun)
            msg.metadata["batch"] = batch
        return msg

    def _suppress(self, rows: list[Row], results: Sequence[SendResult], provider: str) -> int:
        hard = [(r, res) for r, res in zip(rows, results, strict=True) if res.suppress]
        for row, res in hard:
            self.ledger.suppress(row[1], "bounced", f"{provider}: {res.reason}"[:200])
        return len(hard)


# A refusal asking for a longer wait than this stops the run (resume after the wait).
REFUSED_WAIT_LIMIT = 60.0


def refused_for_now(exc: ProviderError) -> bool:
    """Whether the provider refused a call through all its retries without taking it
    (HTTP 429 or 503, asking for a short wait at most): too many requests at once,
    which fewer batches in flight can mend; anything else stops the run."""
    return (
        exc.retryable
        and not isinstance(exc, OutcomeUnknown)
        and exc.status in REFUSED_STATUSES
        and (exc.retry_after or 0.0) <= REFUSED_WAIT_LIMIT
    )


def _batch(claimed: Claimed) -> Batch:
    return Batch(
        claimed.claim,
        list(claimed.rows),
        list(claimed.left),
        claimed.claimed_at,
        claimed.quiet_since,
    )


def in_doubt(n: int, provider: str) -> InDoubt:
    return InDoubt(
        f"{n} reader(s) in doubt: {provider} may have accepted their messages but its "
        "answer was lost, and it offers no way to ask what it accepted",
        hint="check the provider's activity log, then run the same send again with "
        "--resend-unknown (send them again: some may get it twice) or --skip-unknown "
        "(count them as done: some may never get it)",
    )


@contextmanager
def heartbeat(ledger: Ledger, run_id: str, every: float) -> Iterator[None]:
    """Tell the ledger every ``every`` seconds that this run lives (a daemon thread)."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(every):
            try:
                ledger.heartbeat(run_id)
            except Exception:  # noqa: BLE001 - a missed beat is retried at the next one
                continue

    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=2)


def outcome(subscriber_id: int, result: SendResult, doubt: str = "") -> Outcome:
    if result.accepted:
        return Outcome(subscriber_id, "sent", result.provider_id, doubt=doubt)
    if result.status == Status.UNKNOWN:
        return Outcome(subscriber_id, "unknown", reason=result.reason)
    status = "retry" if result.retryable else "failed"
    return Outcome(
        subscriber_id, status, result.provider_id, result.reason or result.status, doubt=doubt
    )


def abort_message(exc: ProviderError, resume: str) -> SendError:
    """The provider refused a whole batch: say what to fix and how to resume."""
    return SendError(
        f"sending stopped: {exc.message}",
        hint=f"{exc.hint + '; ' if exc.hint else ''}then resume with: {resume}",
    )
