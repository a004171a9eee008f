"""Links in emails and pages, and the double opt-in email through the configured provider."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from pipeline.errors import ProviderError
from pipeline.message import Message
from pipeline.providers.base import Provider, SendResult
from pipeline.settings import Settings
from subscribers.store import Store
from subscribers.tokens import confirm_token, subscriber_token


class Links:
    """Absolute URLs of the web app for one subscriber, signed with the secret key."""

    def __init__(self, settings: Settings, secret_key: str) -> None:
        self.base = settings.base_url
        self.secret_key = secret_key

    def confirm(self, subscriber_id: int, email: str) -> str:
        return f"{self.base}/confirm/{confirm_token(self.secret_key, subscriber_id, email)}"

    def unsubscribe(self, subscriber_id: int) -> str:
        return f"{self.base}/unsubscribe/{subscriber_token(self.secret_key, subscriber_id)}"

    def preferences(self, subscriber_id: int) -> str:
        return f"{self.base}/preferences/{subscriber_token(self.secret_key, subscriber_id)}"


class ConfirmationSender:
    """Renders the confirmation email (pipeline.transactional) and sends it.

    ``provider`` given: that instance is shared (behind a lock). Otherwise each thread
    builds its own from settings on first use, since a provider may hold a connection
    (SMTP) that is not safe to share between threads.
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

    def send(self, subscriber_id: int, email: str, name: str, topics: Sequence[str]) -> None:
        """Send a fresh confirmation link; ProviderError when it could not go out."""
        message = self.build(subscriber_id, email, name, topics)
        result = self._send(message)
        if result.suppress:
            self.store.suppress(email, "bounced", source=f"confirmation: {result.reason}"[:200])
        elif not result.accepted:
            self.store.log_event(subscriber_id, "confirmation_failed", result.reason)
            raise ProviderError(
                "the confirmation email could not be sent",
                provider=self.settings.provider,
                reason=result.reason,
                retryable=result.retryable,
            )

    def build(self, subscriber_id: int, email: str, name: str, topics: Sequence[str]) -> Message:
        from pipeline.transactional import confirmation_message

        unsubscribe = self.links.unsubscribe(subscriber_id)
        message = confirmation_message(
            self.settings,
            email=email,
            name=name,
            confirm_url=self.links.confirm(subscriber_id, email),
            topics=list(topics),
            unsubscribe_url=unsubscribe,
        )
        mailto = f"<mailto:{self.settings.unsubscribe_email}?subject=unsubscribe>"
        message.headers.setdefault("List-Unsubscribe", f"<{unsubscribe}>, {mailto}")
        message.headers.setdefault("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
        return message

    def _send(self, message: Message) -> SendResult:
        if self._shared is not None:
            with self._shared_lock:
                return self._shared.send_batch([message])[0]
        provider = getattr(self._local, "provider", None)
        if provider is None:
            provider = self._local.provider = self._make_provider()
        return provider.send_batch([message])[0]

    def _make_provider(self) -> Provider:
        if self._factory is not None:
            return self._factory(self.settings)
        from pipeline.providers import get_provider

        return get_provider(self.settings)
