"""Links in emails and pages, and the double opt-in emails through the configured provider."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pipeline.errors import PipelineError, ProviderError
from pipeline.guard import require_live_links
from pipeline.message import Message
from pipeline.providers.base import Provider, SendResult
from pipeline.settings import Settings
from subscribers.models import PendingConfirmation
from subscribers.store import Store
from subscribers.tokens import confirm_token, subscriber_token

MAX_BATCH = 100  # confirmations per provider call (fewer when the provider takes fewer)


class Links:
    """Absolute URLs of the web app for one subscriber, signed with the secret key and
    bound to the subscriber's link key (see subscribers.tokens)."""

    def __init__(self, settings: Settings, secret_key: str) -> None:
        self.base = settings.base_url
        self.secret_key = secret_key

    def confirm(
        self, subscriber_id: int, email: str, link_key: str, request_id: int | None = None
    ) -> str:
        token = confirm_token(self.secret_key, subscriber_id, email, link_key, request_id)
        return f"{self.base}/confirm/{token}"

    def token(self, subscriber_id: int, link_key: str) -> str:
        """The subscriber's long-lived link token (unsubscribe, preferences, mailto)."""
        return subscriber_token(self.secret_key, subscriber_id, link_key)

    def unsubscribe(self, subscriber_id: int, link_key: str) -> str:
        return f"{self.base}/unsubscribe/{self.token(subscriber_id, link_key)}"

    def preferences(self, subscriber_id: int, link_key: str) -> str:
        return f"{self.base}/preferences/{self.token(subscriber_id, link_key)}"


@dataclass
class DrainResult:
    """What one :meth:`ConfirmationSender.drain` did."""

    claimed: int = 0
    sent: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)  # given up
    suppressed: list[int] = field(default_factory=list)  # the provider says: never again
    errors: list[str] = field(default_factory=list)


class ConfirmationSender:
    """Renders confirmation emails (pipeline.transactional) and sends them.

    :meth:`drain` sends what the store's confirmation queue holds, in provider-sized
    batches; :meth:`send` mails one directly (the CLI). ``provider`` given: that
    instance is shared (behind a lock). Otherwise each thread builds its own from
    settings on first use, since a provider may hold a connection (SMTP) that is not
    safe to share between threads.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        links: Links,
        provider: Provider | None = None,
        factory: Callable[[Settings], Provider] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.links = links
        self._shared = provider
        self._shared_lock = threading.Lock()
        self._factory = factory
        self._local = threading.local()

    def drain(self, *, ids: Sequence[int] | None = None, limit: int = MAX_BATCH) -> DrainResult:
        """Claim due confirmations (only ``ids`` when given), send them, record the outcome.

        Failures are retried later with backoff by the store; nothing here raises for a
        provider problem, it is reported in the result.
        """
        limit = max(1, min(limit, self._provider().max_batch))
        claim, items = self.store.claim_confirmations(limit=limit, ids=ids)
        result = DrainResult(claimed=len(items))
        if not items:
            return result
        try:
            messages = [self.build(item) for item in items]
            outcomes = self._send(messages)
        except PipelineError as exc:  # the whole batch: provider down, template broken
            result.errors.append(str(exc))
            for item in items:
                self._failed(result, claim, item.subscriber_id, str(exc), retry=True)
            return result
        for item, outcome in zip(items, outcomes, strict=True):
            self._record(result, claim, item, outcome)
        self.store.confirmations_sent(claim, result.sent)
        return result

    def _record(
        self, result: DrainResult, claim: str, item: PendingConfirmation, outcome: SendResult
    ) -> None:
        if outcome.accepted:
            result.sent.append(item.subscriber_id)
            return
        result.errors.append(outcome.reason)
        if outcome.suppress:
            self.store.suppress(item.email, "bounced", source=f"confirmation: {outcome.reason}")
            self.store.confirmation_failed(claim, item.subscriber_id, outcome.reason, retry=False)
            result.suppressed.append(item.subscriber_id)
            return
        self._failed(result, claim, item.subscriber_id, outcome.reason, retry=outcome.retryable)

    def _failed(
        self, result: DrainResult, claim: str, sid: int, error: str, *, retry: bool
    ) -> None:
        if self.store.confirmation_failed(claim, sid, error, retry=retry):
            result.retrying.append(sid)
        else:
            result.failed.append(sid)

    def send(self, item: PendingConfirmation) -> None:
        """Send one confirmation link now; ProviderError when it could not go out."""
        outcome = self._send([self.build(item)])[0]
        if outcome.suppress:
            reason = f"confirmation: {outcome.reason}"[:200]
            self.store.suppress(item.email, "bounced", source=reason)
        elif not outcome.accepted:
            self.store.log_event(item.subscriber_id, "confirmation_failed", outcome.reason)
            raise ProviderError(
                "the confirmation email could not be sent",
                provider=self.settings.provider,
                reason=outcome.reason,
                retryable=outcome.retryable,
            )

    def build(self, item: PendingConfirmation) -> Message:
        """The confirmation email for one queued signup (or one request to apply)."""
        from pipeline.transactional import confirmation_message

        sid, key = item.subscriber_id, item.link_key
        return confirmation_message(
            self.settings,
            email=item.email,
            name=item.name,
            confirm_url=self.links.confirm(sid, item.email, key, item.request_id),
            topics=list(item.topics),
            unsubscribe_url=self.links.unsubscribe(sid, key),
            unsubscribe_token=self.links.token(sid, key),
        )

    def check_links(self) -> None:
        """Refuse (UnsafeLinks, exit 2) to mail confirmation links readers cannot open.

        Only for the configured provider: one handed in (tests, benchmarks) is trusted.
        Called where sending starts (``serve``, the web app in inline mode, the CLI), before
        anything is written, and again whenever a provider is built.
        """
        if self._shared is None and self._factory is None:
            require_live_links(self.settings, what="the confirmation email")

    def _send(self, messages: Sequence[Message]) -> list[SendResult]:
        if self._shared is not None:
            with self._shared_lock:
                return self._shared.send_batch(messages)
        return self._provider().send_batch(messages)

    def _provider(self) -> Provider:
        if self._shared is not None:
            return self._shared
        provider = getattr(self._local, "provider", None)
        if provider is None:
            provider = self._local.provider = self._make_provider()
        return provider

    def _make_provider(self) -> Provider:
        if self._factory is not None:
            return self._factory(self.settings)
        self.check_links()
        from pipeline.providers import get_provider

        return get_provider(self.settings)

    def close(self) -> None:
        provider = getattr(self._local, "provider", None)
        if provider is not None:
            provider.close()
