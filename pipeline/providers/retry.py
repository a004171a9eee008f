"""Failure handling for every provider, in one place.

A provider call raises :class:`TryAgain` for a transient failure (connection error,
HTTP 429 or 5xx, SMTP 4xx). :func:`call_with_retry` sleeps with exponential backoff
and full jitter, honouring the server's own wait (``Retry-After`` in seconds or as an
HTTP date, ``X-RateLimit-Reset`` in epoch seconds), and raises
``ProviderError(retryable=True)`` once the retries are used up. The sleep and random
functions are injectable so tests never really sleep.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TypeVar

from pipeline.errors import ProviderError
from pipeline.settings import Settings

log = logging.getLogger("pipeline.providers")

T = TypeVar("T")
Sleep = Callable[[float], None]


class TryAgain(Exception):
    """A transient failure: the same call may succeed later."""

    def __init__(
        self, reason: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait: ``max_retries`` retries after the first try.

    The n-th wait is uniform in ``[0, min(cap, base * 2**n)]`` (full jitter), unless the
    server named its own wait. A server wait longer than ``max_wait`` is not slept
    through: the error is raised at once with ``retry_after`` set, for the caller to
    schedule.
    """

    max_retries: int = 5
    base: float = 0.5
    cap: float = 30.0
    max_wait: float = 120.0
    sleep: Sleep = field(default=time.sleep, repr=False)
    random: Callable[[], float] = field(default=random.random, repr=False)

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for retry number ``attempt`` (0-based)."""
        return self.random() * min(self.cap, self.base * 2**attempt)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return max(0.0, retry_after)
        return self.backoff(attempt)


def retry_policy(settings: Settings, sleep: Sleep | None = None) -> RetryPolicy:
    """The policy from ``[provider] max_retries``, with an injectable sleep."""
    retries = int(settings.provider_options.get("max_retries", 5))
    return RetryPolicy(max_retries=max(0, retries), sleep=sleep or time.sleep)


def call_with_retry(fn: Callable[[], T], policy: RetryPolicy, *, provider: str) -> T:
    """Call ``fn`` until it stops raising :class:`TryAgain` or the retries run out."""
    attempt = 0
    while True:
        try:
            return fn()
        except TryAgain as exc:
            if attempt >= policy.max_retries or _wait_too_long(exc, policy):
                raise _exhausted(exc, provider, attempt) from exc
            wait = policy.delay(attempt, exc.retry_after)
            log.warning(
                "%s: %s; retry %d/%d in %.1fs",
                provider,
                exc.reason,
                attempt + 1,
                policy.max_retries,
                wait,
            )
            policy.sleep(wait)
            attempt += 1


def _wait_too_long(exc: TryAgain, policy: RetryPolicy) -> bool:
    return exc.retry_after is not None and exc.retry_after > policy.max_wait


def _exhausted(exc: TryAgain, provider: str, attempt: int) -> ProviderError:
    if exc.retry_after is not None and exc.retry_after > 0:
        hint = f"the provider asked to wait {exc.retry_after:.0f}s; resume the send after that"
    else:
        hint = "the provider or the network is having trouble; resume the send later"
    tries = "1 try" if attempt == 0 else f"{attempt + 1} tries"
    return ProviderError(
        f"gave up after {tries}",
        provider=provider,
        status=exc.status,
        reason=exc.reason,
        retryable=True,
        retry_after=exc.retry_after,
        hint=hint,
    )


def retry_after_seconds(
    headers: Mapping[str, str], *, now: Callable[[], float] = time.time
) -> float | None:
    """The wait a reply asks for, in seconds, or None.

    Reads ``Retry-After`` (delta seconds or an HTTP date; Resend sends it lowercase,
    which a case-insensitive mapping such as ``requests``' handles) and then
    ``X-RateLimit-Reset`` (SendGrid: epoch seconds when the limit resets).
    """
    value = _header(headers, "Retry-After")
    if value:
        parsed = _parse_retry_after(value, now)
        if parsed is not None:
            return parsed
    reset = _header(headers, "X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - now())
        except ValueError:
            return None
    return None


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name) or headers.get(name.lower())
    return (value or "").strip()


def _parse_retry_after(value: str, now: Callable[[], float]) -> float | None:
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now())
