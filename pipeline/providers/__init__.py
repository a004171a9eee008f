"""Email providers: one module per provider on a small common base.

``get_provider(settings)`` picks the provider named by ``[provider] name`` (or
``NEWSLETTER_PROVIDER``) and imports its module only then, so an unused provider's
dependencies never load. A provider module holds its sender (and, later, its webhook
parser beside it).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from pipeline.errors import ConfigError
from pipeline.providers.base import Provider, SendResult, Status
from pipeline.providers.retry import Sleep
from pipeline.settings import Settings

# name -> "module:Class", imported lazily.
PROVIDERS: dict[str, str] = {
    "outbox": "pipeline.providers.outbox:OutboxProvider",
    "smtp": "pipeline.providers.smtp:SmtpProvider",
    "postmark": "pipeline.providers.postmark:PostmarkProvider",
    "sendgrid": "pipeline.providers.sendgrid:SendGridProvider",
    "mailgun": "pipeline.providers.mailgun:MailgunProvider",
    "ses": "pipeline.providers.ses:SesProvider",
    "resend": "pipeline.providers.resend:ResendProvider",
}

__all__ = [
    "PROVIDERS",
    "Provider",
    "SendResult",
    "Status",
    "check_provider",
    "get_provider",
    "load_class",
    "provider_class",
]


def load_class(target: str) -> Any:
    """The class a ``"module:Class"`` entry of PROVIDERS, WEBHOOKS or INBOUND names
    (its module imported only now)."""
    module_name, _, class_name = target.partition(":")
    return getattr(import_module(module_name), class_name)


def provider_class(name: str) -> type[Provider]:
    """The class for a provider name, or a ConfigError listing the valid names."""
    try:
        target = PROVIDERS[name]
    except KeyError:
        valid = ", ".join(PROVIDERS)
        raise ConfigError(
            f"unknown provider {name!r}",
            hint=f"set [provider] name (or NEWSLETTER_PROVIDER) to one of: {valid}",
        ) from None
    return load_class(target)


def get_provider(settings: Settings, *, sleep: Sleep | None = None) -> Provider:
    """The configured provider, ready to send; ConfigError says what is missing.

    ``sleep`` replaces ``time.sleep`` in retries (tests pass a recorder).
    """
    cls = provider_class(settings.provider)
    return cls.from_settings(settings, sleep=sleep)


def check_provider(settings: Settings) -> str:
    """Build the configured provider without sending: its settings and credentials are
    present (ConfigError names what is missing). Says what it checked, for the user."""
    with get_provider(settings) as provider:
        description = repr(provider).strip("<>")
    return f"settings and credentials present ({description}); nothing contacted"
