"""``POST /inbound/<provider>``: mailto unsubscribes, forwarded by the provider that
receives ``site.unsubscribe_email`` (``[provider] inbound``).

The request is authenticated like the event webhooks (see
``pipeline/providers/inbound.py``; the same answers: 401 unsigned or wrong, 403 stale,
replayed or not configured, 400 malformed, 413 too large). Each email then:

1. must be addressed to ``site.unsubscribe_email`` (a route that forwards more is fine);
2. must carry ``unsubscribe TOKEN`` in its subject (or body): the reader's own link
   token, as our List-Unsubscribe mailto writes it. The token, not the From header
   (anyone can forge that), says who leaves: so a stranger cannot unsubscribe a reader;
3. unsubscribes that subscriber from everything (idempotent; a retry changes nothing).

Emails that fail 1 or 2 are answered 200 (the provider must not retry them) and logged.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any

from flask import Blueprint, current_app, request
from werkzeug.exceptions import NotFound

from pipeline.providers.inbound import InboundMail, InboundParser, inbound_class
from pipeline.providers.webhook_events import Malformed, Refused, WebhookRequest, tolerance
from subscribers.events import EventLog
from subscribers.tokens import TokenError, token_matches, token_subscriber_id
from subscribers.webhooks import PARSE_ERRORS, json_errors

log = logging.getLogger(__name__)
STATE = "newsletter_inbound"
MAX_BYTES = 10 * 1024 * 1024  # an unsubscribe email is small; a reply with photos is not
_lock = threading.Lock()

bp = Blueprint("inbound", __name__, url_prefix="/inbound")
json_errors(bp)


def _parser(provider: str) -> InboundParser:
    settings = current_app.extensions["newsletter"].settings
    if not settings.inbound or provider != settings.inbound:
        raise NotFound(f"no inbound path for {provider!r} (provider.inbound is not that)")
    with _lock:
        parsers: dict[str, InboundParser] = current_app.extensions.setdefault(STATE, {})
        if provider not in parsers:
            parsers[provider] = inbound_class(provider).from_settings(settings)
        return parsers[provider]


@bp.before_request
def _limit_body() -> None:
    request.max_content_length = MAX_BYTES


@bp.post("/<provider>")
def receive(provider: str) -> Any:
    sv = current_app.extensions["newsletter"]
    parser = _parser(provider)
    incoming = WebhookRequest(
        body=request.get_data(cache=False),
        headers={name.lower(): value for name, value in request.headers.items()},
        received_at=time.time(),
    )
    try:
        parsed = parser.parse(incoming)
    except PARSE_ERRORS as exc:
        raise Malformed(f"unexpected {provider} inbound payload: {type(exc).__name__}") from exc
    if parsed.confirm_url:
        parser.confirm(parsed.confirm_url)
        log.info("%s inbound: confirmed the SNS subscription", provider)
    if parsed.replay_token:
        keep = dt.timedelta(seconds=2 * tolerance(sv.settings) + 60)
        if not EventLog(sv.store).claim_token(f"{provider}-inbound", parsed.replay_token, keep):
            raise Refused("this signature token was used before", hint="a replayed request")
    done = sum(_unsubscribe(sv, provider, mail) for mail in parsed.mails)
    if parsed.note:
        log.info("%s inbound: %s", provider, parsed.note)
    return {"received": len(parsed.mails), "unsubscribed": done}


def _unsubscribe(sv: Any, provider: str, mail: InboundMail) -> bool:
    address = sv.settings.unsubscribe_email
    if not mail.addressed_to(address):
        log.info("%s inbound: mail for %s, not %s: ignored", provider, mail.recipients, address)
        return False
    token = mail.unsubscribe_token()
    if not token:
        log.info("%s inbound: no 'unsubscribe TOKEN' in %r: ignored", provider, mail.subject)
        return False
    try:
        reader = sv.store.get(token_subscriber_id(token))
    except TokenError:
        reader = None
    if reader is None or not token_matches(sv.secret_key, token, reader.id, reader.link_key):
        log.warning("%s inbound: a token of nobody here (erased, or forged): ignored", provider)
        return False
    found = sv.store.unsubscribe(reader.id, source=f"mailto ({provider} inbound)")
    return found is not None
