"""Provider webhooks: ``POST /webhooks/<provider>`` for postmark, sendgrid, mailgun, ses, resend.

A thin layer: read the raw body (``[provider] webhook_max_bytes`` at most, else 413),
let the provider's parser (``pipeline/providers/<name>_events.py``) authenticate and
parse it, refuse a replayed Mailgun token, confirm an SNS subscription, and hand each
event to :class:`subscribers.events.Feedback`. Answers are JSON for the provider:

* 200 ``{"received": n, "recorded": k}``: handled (a retry of a handled event: k = 0);
* 400 malformed, 401 missing or wrong signature/credentials, 403 stale, replayed, not
  allowed or not configured (the log names the variable to set), 404 unknown provider,
  413 too large, 503 the database or the provider's certificate is unreachable (retry).

A refused request changes nothing in the store. Errors never show a trace.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, current_app, request
from werkzeug.exceptions import HTTPException, NotFound

from pipeline.message_ids import MessageIds
from pipeline.providers.webhook_events import (
    WEBHOOKS,
    Malformed,
    Parsed,
    Refused,
    WebhookError,
    WebhookParser,
    WebhookRequest,
    tolerance,
    webhook_class,
)
from pipeline.settings import Settings
from subscribers.events import Feedback
from subscribers.store import Store

log = logging.getLogger(__name__)
STATE = "newsletter_webhooks"
DEFAULT_MAX_BYTES = 1_048_576
PARSE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError)
_state_lock = threading.Lock()

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


@dataclass
class WebhookState:
    """Per app: the parsers (an SNS certificate cache lives in one) and the feedback."""

    settings: Settings
    feedback: Feedback
    parsers: dict[str, WebhookParser] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def for_app(cls, services: Any) -> WebhookState:
        settings: Settings = services.settings
        store: Store = services.store
        limit = int(settings.provider_options.get("soft_bounce_limit", 3))
        ids = MessageIds(settings.secret_key(), settings.site_domain)
        feedback = Feedback(store, message_ids=ids, soft_bounce_limit=limit)
        return cls(settings, feedback)

    def parser(self, name: str) -> WebhookParser:
        with self.lock:
            if name in self.parsers:
                return self.parsers[name]
        cls = webhook_class(name)
        if cls is None:
            raise NotFound(f"no webhook for {name!r}; we take {', '.join(WEBHOOKS)}")
        parser = cls.from_settings(self.settings)  # NotConfigured names the variable
        with self.lock:
            return self.parsers.setdefault(name, parser)


def state() -> WebhookState:
    app = current_app
    found = app.extensions.get(STATE)
    if found is None:
        with _state_lock:
            found = app.extensions.get(STATE) or WebhookState.for_app(app.extensions["newsletter"])
            app.extensions[STATE] = found
    return found


@bp.before_request
def _limit_body() -> None:
    settings: Settings = current_app.extensions["newsletter"].settings
    limit = settings.provider_options.get("webhook_max_bytes", DEFAULT_MAX_BYTES)
    request.max_content_length = int(limit)


@bp.post("/<provider>")
def receive(provider: str) -> Any:
    hooks = state()
    parser = hooks.parser(provider)
    parsed = _parse(parser, _webhook_request())
    if parsed.confirm_url:
        parser.confirm(parsed.confirm_url)
        log.info("%s webhook: confirmed the SNS subscription", provider)
    recorded = _handle(hooks, provider, parsed)
    if parsed.note:
        log.info("%s webhook: %s", provider, parsed.note)
    return {"received": len(parsed.events), "recorded": recorded}


def _webhook_request() -> WebhookRequest:
    body = request.get_data(cache=False)  # 413 past max_content_length
    headers = {name.lower(): value for name, value in request.headers.items()}
    clock = current_app.extensions["newsletter"].clock
    return WebhookRequest(body=body, headers=headers, received_at=clock())


def _parse(parser: WebhookParser, webhook_request: WebhookRequest) -> Parsed:
    try:
        return parser.parse(webhook_request)
    except PARSE_ERRORS as exc:  # a payload of an unexpected shape: the sender's fault
        raise Malformed(f"unexpected {parser.name} payload: {type(exc).__name__}") from exc


def _handle(hooks: WebhookState, provider: str, parsed: Parsed) -> int:
    """Apply the events; a replayed token changes nothing, a failure frees the token."""
    events_log = hooks.feedback.log
    token = parsed.replay_token
    keep = dt.timedelta(seconds=2 * tolerance(hooks.settings) + 60)
    if token and not events_log.claim_token(provider, token, keep):
        raise Refused("this signature token was used before", hint="a replayed request")
    try:
        return sum(hooks.feedback.apply(event) for event in parsed.events)
    except BaseException:
        if token:
            events_log.release_token(provider, token)
        raise


# ---- errors: JSON for the provider, a log line for us, never a trace -----------------


def json_errors(blueprint: Blueprint) -> None:
    """Answer a blueprint's errors as these webhooks do (the inbound path shares them)."""
    blueprint.register_error_handler(WebhookError, _webhook_error)
    blueprint.register_error_handler(HTTPException, _http_error)


def _webhook_error(exc: WebhookError) -> Any:
    level = logging.INFO if exc.status == 400 else logging.WARNING
    log.log(level, "webhook %s refused (%s from %s): %s", request.path, exc.status,
            request.remote_addr, exc)  # fmt: skip
    headers = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="newsletter webhooks"'
    return {"error": {"status": exc.status, "message": exc.message}}, exc.status, headers


def _http_error(exc: HTTPException) -> Any:
    status = exc.code or 400
    log.info("webhook %s refused (%s): %s", request.path, status, exc.description)
    return {"error": {"status": status, "message": exc.description or exc.name}}, status


json_errors(bp)
