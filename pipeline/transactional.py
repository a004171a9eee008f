"""One-off emails to one person (the double opt-in confirmation), through the same
Jinja2 + MJML templates as campaigns, rendered directly with the real values."""

from __future__ import annotations

from types import SimpleNamespace

from pipeline.message import Message, list_unsubscribe, make_message_id
from pipeline.render import compile_email, render_template, static_headers, style_context
from pipeline.settings import Settings
from pipeline.textpart import wrap_text


def confirmation_message(
    settings: Settings,
    *,
    email: str,
    name: str,
    confirm_url: str,
    topics: list[str],
    unsubscribe_url: str = "",
    unsubscribe_token: str = "",
) -> Message:
    """The double opt-in email. ``topics`` are topic keys; shown by display name.

    ``name`` is whatever was typed into a public form: the templates escape it (HTML
    autoescape for .mjml.j2). ``unsubscribe_token`` goes into the mailto subject of
    List-Unsubscribe, as in campaigns, so a mailed request names its reader.
    """
    first = name.split()[0] if name.strip() else "there"
    preheader = "One click to confirm, and you're on the list."
    context = {
        **style_context(settings, preheader),
        "subject": f"Confirm your subscription to {settings.site_name}",
        "preheader": preheader,
        "site_name": settings.site_name,
        "site_url": settings.site_url,
        "postal_address": settings.postal_address,
        "reason": (
            f"You are receiving this email because this address was entered in the signup "
            f"form of {settings.site_name}."
        ),
        "topics": [settings.topics[t].name if t in settings.topics else t for t in topics],
        "confirm_url": confirm_url,
        "p": SimpleNamespace(first_name=first, unsubscribe_url=unsubscribe_url),
    }
    source = render_template(settings, "confirm.mjml.j2", context)
    html = compile_email(settings, source, "confirm.mjml.j2")
    text = wrap_text(render_template(settings, "confirm.txt.j2", context))
    headers: dict[str, str] = {}
    if unsubscribe_url:
        headers = static_headers(settings, "confirm", "confirm")
        headers["List-Unsubscribe"] = list_unsubscribe(
            unsubscribe_url, settings.unsubscribe_email, unsubscribe_token
        )
    return Message(
        to_email=email,
        to_name=name,
        from_addr=settings.from_addr,
        subject=context["subject"],
        html=html,
        text=text,
        message_id=make_message_id(settings.site_domain),
        reply_to=settings.reply_to,
        headers=headers,
        tag="confirm",
        metadata={"kind": "confirm"},
    )
