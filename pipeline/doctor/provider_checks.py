"""The provider: chosen, its credentials present (``--online``: accepted by its API), and
the secrets of its webhooks (bounces, complaints) and of the inbound mailto path."""

from __future__ import annotations

from pipeline.doctor import Doctor, Finding, error, ok, warning
from pipeline.errors import ConfigError
from pipeline.providers import check_provider, get_provider
from pipeline.providers.webhook_events import NotConfigured, webhook_class


def check(doctor: Doctor) -> list[Finding]:
    s = doctor.settings
    if s.provider == "outbox":
        return [
            warning(
                "provider",
                f"outbox writes every message to {s.outbox_dir}/ and mails nobody: set "
                "[provider] name (or NEWSLETTER_PROVIDER) and its key to go live",
            ),
            inbound(doctor),
        ]
    findings = [ok("provider", s.provider), credentials(doctor)]
    return [*findings, webhooks(doctor), inbound(doctor)]


def credentials(doctor: Doctor) -> Finding:
    s = doctor.settings
    try:
        check_provider(s)
    except ConfigError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        return error("credentials", f"{exc.message}{hint}")
    if not doctor.online:
        return ok(
            "credentials",
            f"present for {s.provider} (not tried: --online asks {s.provider} to accept them)",
        )
    from pipeline.doctor.online import verify

    with get_provider(s) as provider:
        return verify(provider, s)


def webhooks(doctor: Doctor) -> Finding:
    s = doctor.settings
    cls = webhook_class(s.provider)
    if cls is None:
        return warning(
            "webhooks",
            f"{s.provider} reports no bounces or complaints to us: read the bounce mailbox and "
            "remove bad addresses (newsletter subscribers remove), or use an email API",
        )
    try:
        cls.from_settings(s)
    except NotConfigured as exc:
        return error(
            "webhooks",
            f"bounces and complaints are not recorded: {exc.message}; {exc.hint} and point "
            f"{s.provider} at {s.base_url}/webhooks/{s.provider}",
        )
    return ok("webhooks", f"secret set; {s.provider} posts to {s.base_url}/webhooks/{s.provider}")


def inbound(doctor: Doctor) -> Finding:
    s = doctor.settings
    if not s.inbound:
        return ok(
            "inbound",
            "List-Unsubscribe offers the https one-click link only (no provider.inbound for "
            "mailto unsubscribes); Gmail and Yahoo need nothing more",
        )
    from pipeline.providers.inbound import inbound_class

    try:
        inbound_class(s.inbound).from_settings(s)
    except NotConfigured as exc:
        return error(
            "inbound",
            f"mailto unsubscribes to {s.unsubscribe_email} are advertised but refused: "
            f"{exc.message}; {exc.hint}",
        )
    return ok(
        "inbound",
        f"mail to {s.unsubscribe_email} reaches {s.base_url}/inbound/{s.inbound} "
        f"(route it there at {s.inbound})",
    )
