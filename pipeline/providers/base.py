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

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from pipeline.message import Message
from pipeline.settings import Settings


class Status(StrEnum):
    """Normalised send status per recipient (after django-anymail)."""

    QUEUED = "queued"  # accepted by the provider for delivery
    SENT = "sent"  # handed to the next hop (SMTP, outbox)
    REJECTED = "rejected"  # provider refuses this recipient (suppressed, inactive)
    FAILED = "failed"  # provider could not send this one
    INVALID = "invalid"  # the address or message is invalid
    UNKNOWN = "unknown"


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

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings) -> Provider:
        """Build the provider, raising ConfigError that names any missing secret."""

    @abstractmethod
    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        """Send up to ``max_batch`` messages; one result per message, same order."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> Provider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
