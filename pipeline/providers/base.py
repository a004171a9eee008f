"""The one interface every email provider implements.

A provider takes a batch of fully personalised :class:`Message` objects (at most
``max_batch``) and returns one :class:`SendResult` per message, in the same order.
A failure of the whole request that retrying cannot fix (bad credentials, account
suspended, malformed payload) raises :class:`ProviderError` with ``retryable=False``;
throttling, 5xx and connection errors are retried inside the provider (see
``pipeline.providers.retry``) and raise ``ProviderError(retryable=True)`` only when
retries are exhausted.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from pipeline.errors import ProviderError
from pipeline.message import Message
from pipeline.settings import Settings

# HTTP 429 and 503 say "not now" before any work is done; other 5xx may come from a
# gateway that gave up waiting while the provider went on (502, 504) or from a failure
# half way.
REFUSED_STATUSES = frozenset({429, 503})


class OutcomeUnknown(ProviderError):
    """The request went out whole but its answer was lost: the provider may have
    accepted it (a reset or close after the body was sent, a read timeout, a gateway
    5xx). Never retried blindly: the batch is marked unknown in the ledger and settled
    by asking the provider (:meth:`Provider.lookup`) or by the author.
    """


class Status(StrEnum):
    """Normalised send status per recipient (after django-anymail)."""

    QUEUED = "queued"  # accepted by the provider for delivery
    SENT = "sent"  # handed to the next hop (SMTP, outbox)
    REJECTED = "rejected"  # provider refuses this recipient (suppressed, inactive)
    FAILED = "failed"  # provider could not send this one
    INVALID = "invalid"  # the address or message is invalid
    UNKNOWN = "unknown"  # the answer was lost: it may have been accepted


ACCEPTED = frozenset({Status.QUEUED, Status.SENT})


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the provider said about one message of a batch."""

    message_id: str  # our Message-ID, the ledger's key
    email: str
    status: Status
    provider_id: str = ""  # the provider's own id for the message (or the batch)
    reason: str = ""  # the provider's words when not accepted
    retryable: bool = False  # trying again later can help
    suppress: bool = False  # hard-bounce-like: stop mailing this address

    @property
    def accepted(self) -> bool:
        return self.status in ACCEPTED


class Provider(ABC):
    """Base class: one subclass per module in ``pipeline/providers/``."""

    name: ClassVar[str]
    max_batch: ClassVar[int] = 1
    # True when a retried request cannot deliver twice (Resend's Idempotency-Key).
    idempotent: ClassVar[bool] = False
    # Pre-encoded bodies this provider reads from Message ("json": html_json/text_json,
    # "mime": html_qp/text_qp for pipeline.message.to_bytes); the renderer makes only these.
    encodings: ClassVar[frozenset[str]] = frozenset()
    # Seconds to wait after a request before a lookup of it can be trusted: the request
    # may still be in flight (the timeout) and the provider's search lags behind.
    timeout: float = 0.0
    lookup_lag: float = 0.0
    # How many batches one sending process may keep in flight with this provider, and
    # how many requests a second it documents (0: no limit it documents).
    max_in_flight: ClassVar[int] = 8
    requests_per_second: float = 0.0
    # Incremented each time the provider pushed back (429/503 retried, a lost answer):
    # the send window shrinks on it.
    congestion: int = 0

    @classmethod
    @abstractmethod
    def from_settings(
        cls, settings: Settings, *, sleep: Callable[[float], None] | None = None
    ) -> Provider:
        """Build the provider, raising ConfigError that names any missing secret.

        ``sleep`` replaces ``time.sleep`` between retries (tests pass a recorder).
        """

    @abstractmethod
    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        """Send up to ``max_batch`` messages; one result per message, same order."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def max_send_rate(self) -> float | None:
        """Messages a second the account may send, when the provider says (SES)."""
        return None

    @property
    def can_lookup(self) -> bool:
        """Whether :meth:`lookup` can tell what this provider accepted."""
        return False

    def lookup(self, messages: Sequence[Message], *, sent_at: dt.datetime) -> dict[str, str]:
        """Which of ``messages`` (sent in one request at about ``sent_at``) the provider
        accepted: ``{message_id: provider_id}``. Raises ProviderError when it cannot ask."""
        raise NotImplementedError(f"{self.name} has no way to look a message up")

    @property
    def settles_unknown(self) -> str:
        """How a lost answer is settled: ``lookup`` (ask the provider), ``idempotent``
        (send again: the provider deduplicates) or ``author`` (nobody can tell)."""
        if self.idempotent:
            return "idempotent"
        return "lookup" if self.can_lookup else "author"

    def check_batch(self, messages: Sequence[Message]) -> None:
        """Refuse a batch above ``max_batch`` (a bug in the caller, not in the data)."""
        if len(messages) > self.max_batch:
            raise ValueError(
                f"{self.name}: a batch holds at most {self.max_batch} messages, got {len(messages)}"
            )

    def __repr__(self) -> str:
        # Never shows credentials: subclasses add only non-secret details.
        return f"<{type(self).__name__} {self.name}>"

    def __enter__(self) -> Provider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def not_sent(messages: Sequence[Message], error: ProviderError) -> list[SendResult]:
    """Results for messages a batch-level failure stopped before they were sent.

    Used only after other messages of the same batch were accepted: raising then
    would hide those acceptances from the caller, who might send them twice.
    """
    reason = f"not sent: {error.message}"
    return [
        SendResult(m.message_id, m.to_email, Status.FAILED, reason=reason, retryable=True)
        for m in messages
    ]


def send_in_parts(
    parts: Sequence[Sequence[Message]],
    send_part: Callable[[Sequence[Message]], list[SendResult]],
) -> list[SendResult]:
    """Send a batch that takes several calls, one result per message, same order.

    A :class:`ProviderError` before anything was accepted propagates (nothing was
    sent, the caller may retry the whole batch); after that, the rest of the batch
    is reported as ``failed``/retryable instead, so no acceptance is lost. A part
    whose answer was lost (:class:`OutcomeUnknown`) is reported ``unknown`` and the
    parts after it ``failed``/retryable: only that part is in doubt.
    """
    results: list[SendResult] = []
    for index, part in enumerate(parts):
        try:
            results.extend(send_part(part))
        except ProviderError as exc:
            lost = isinstance(exc, OutcomeUnknown)
            if not lost and not any(r.accepted or r.status == Status.UNKNOWN for r in results):
                raise
            rest = parts[index:]
            if lost:  # only this part is in doubt; the later ones never left
                results.extend(unknown(rest[0], exc))
                rest = rest[1:]
            for later in rest:
                results.extend(not_sent(later, exc))
            break
    return results


def unknown(messages: Sequence[Message], error: ProviderError) -> list[SendResult]:
    """Results for messages whose request went out but whose answer was lost."""
    reason = f"answer lost: {error.reason or error.message}"
    return [SendResult(m.message_id, m.to_email, Status.UNKNOWN, reason=reason) for m in messages]


def in_order(messages: Sequence[Message], results: Sequence[SendResult]) -> list[SendResult]:
    """``results`` put back in the order of ``messages`` (matched by Message-ID)."""
    by_id = {r.message_id: r for r in results}
    return [by_id[m.message_id] for m in messages]
