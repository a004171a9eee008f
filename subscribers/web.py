"""The web app: signup form, double opt-in, one-click unsubscribe, preferences.

A thin layer in the style of Flask's tutorial: ``create_app`` wires settings, the store
and the confirmation sender; each view validates its input, calls the store, renders.

CSRF, route by route:

* ``POST /subscribe`` takes no CSRF token: the form is static HTML pasted into the
  author's site (another origin), so it cannot carry one. A forged signup can only make
  us send a confirmation email (double opt-in), and rate limits, the honeypot and the
  per-address cap on confirmation emails bound that.
* ``POST /unsubscribe/<token>`` takes none by RFC 8058: mail clients post
  ``List-Unsubscribe=One-Click`` with no page in between. The signed, unguessable
  subscriber token in the URL is what an attacker lacks.
* ``POST /preferences/<token>`` changes what a person receives and can resubscribe them,
  so its form also carries a signed, expiring CSRF token bound to the subscriber.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from itsdangerous import BadSignature, URLSafeTimedSerializer
from jinja2 import StrictUndefined
from werkzeug.exceptions import HTTPException, TooManyRequests
from werkzeug.middleware.proxy_fix import ProxyFix

from pipeline.errors import ConfigError, PipelineError, ProviderError
from pipeline.guard import require_live_links
from pipeline.providers.base import Provider
from pipeline.settings import Settings, load_settings
from subscribers import archive_web, pages
from subscribers.confirmation import ConfirmationSender, Links
from subscribers.errors import Conflict, DatabaseUnavailable, InvalidInput, LinkGone, NotFound
from subscribers.forms import DEFAULT_FORM, FORMS, form_context, safe_next, site_origin
from subscribers.inbound import bp as inbound_bp
from subscribers.models import Consent, Subscriber
from subscribers.ratelimit import RateLimiter
from subscribers.store import Store
from subscribers.tokens import (
    TokenError,
    confirm_link_matches,
    read_confirm_token,
    token_matches,
    token_subscriber_id,
)
from subscribers.validation import clean_name, normalise_email, parse_topics
from subscribers.webhooks import bp as webhooks_bp
from subscribers.webinput import Body, read_body

log = logging.getLogger(__name__)
MAX_BODY = 16 * 1024
MAX_TOKEN = 400
CSRF_MAX_AGE = 24 * 3600
HONEYPOT = "website"
MEDIA_TYPES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp"})  # no SVG: it can script
MEDIA_MAX_AGE = 7 * 24 * 3600
CONFIRM_WORDING = "Opened the confirmation link sent to this address."
PREFERENCES_WORDING = "Chose these topics on the preferences page (link from our email)."
THANKS = "Almost done: check your inbox for an email with a link to confirm your subscription."

bp = Blueprint("web", __name__)


@dataclass
class Services:
    settings: Settings
    store: Store
    links: Links
    sender: ConfirmationSender
    limiter: RateLimiter
    secret_key: str
    inline: bool
    origin: str  # the site's origin: CORS, CSP form-action
    csp: str
    thanks_page: str = ""  # rendered once: the same for every signup
    clock: Callable[[], float] = time.time  # wall clock for webhook freshness checks


def create_app(
    settings: Settings | None = None,
    *,
    provider: Provider | None = None,
    confirmations: str = "inline",
    clock: Callable[[], float] | None = None,
) -> Flask:
    """The Flask app. ``provider`` replaces the configured email provider (tests);
    ``clock`` the wall clock that webhook timestamps are checked against (tests).

    ``confirmations``: ``inline`` sends each confirmation email within its signup
    request (works under any WSGI server); ``queue`` only queues it, for the mailer
    process that ``newsletter serve`` runs beside its workers (see subscribers.mailer).
    """
    if confirmations not in ("inline", "queue"):
        raise PipelineError(f"confirmations must be 'inline' or 'queue', not {confirmations!r}")
    settings = settings or load_settings()
    app = Flask(__name__, template_folder=str(settings.templates_dir / "web"), static_folder=None)
    # No SECRET_KEY: the app keeps no cookie session (tokens carry all state), and without
    # one Flask skips opening a signed session on every request.
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY, MAX_FORM_MEMORY_SIZE=MAX_BODY)
    app.jinja_env.undefined = StrictUndefined
    services = _services(settings, provider, inline=confirmations == "inline")
    if clock is not None:
        services.clock = clock
    app.extensions["newsletter"] = services
    app.context_processor(lambda: {"site_name": settings.site_name, "site_url": settings.site_url})
    _trust_proxies(app, settings)
    app.register_blueprint(bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(archive_web.bp)  # /archive/: the public archive and its feed
    app.register_blueprint(webhooks_bp)  # POST /webhooks/<provider>
    app.register_blueprint(inbound_bp)  # POST /inbound/<provider>: mailto unsubscribes
    _register_error_handlers(app)
    app.after_request(_headers)
    return app


def _services(settings: Settings, provider: Provider | None, *, inline: bool) -> Services:
    if inline and provider is None:  # this process mails confirmations: refuse unusable
        require_live_links(settings, what="the confirmation email")  # links before serving
    secret = settings.secret_key()
    store = Store.from_settings(settings)
    links = Links(settings, secret)
    return Services(
        settings=settings,
        store=store,
        links=links,
        sender=ConfirmationSender(settings, store, links, provider),
        limiter=RateLimiter.from_env(settings.env),
        secret_key=secret,
        inline=inline,
        origin=site_origin(settings),
        csp=CSP.format(sources=_form_targets(settings)),
    )


def _trust_proxies(app: Flask, settings: Settings) -> None:
    """Behind nginx & co, NEWSLETTER_TRUSTED_PROXIES=1 makes the client IP the real one."""
    count = settings.env.get("NEWSLETTER_TRUSTED_PROXIES", "0").strip() or "0"
    if not count.isdigit():
        raise ConfigError(
            f"NEWSLETTER_TRUSTED_PROXIES={count!r} must be a number",
            hint="the count of proxies in front of the app (0: none)",
        )
    if int(count):
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=int(count), x_proto=int(count))  # type: ignore[method-assign]


def services() -> Services:
    return current_app.extensions["newsletter"]


# ---- views ---------------------------------------------------------------------------


@bp.get("/healthz")
def healthz() -> Any:
    services().store.ping()
    return {"status": "ok"}


@bp.get("/media/<path:filename>")
def media(filename: str) -> Any:
    """Images of content modules (``content/images/...``): sent emails link them here."""
    sv = services()
    if Path(filename).suffix.lower() not in MEDIA_TYPES:
        raise NotFound("no such image")
    # safe_join-based: ".." and absolute paths end in 404, never outside content/.
    return send_from_directory(sv.settings.content_dir, filename, max_age=MEDIA_MAX_AGE)


@bp.get("/subscribe")
def subscribe_page() -> Any:
    sv = services()
    next_url = safe_next(request.args.get("next"), sv.settings)
    return render_template("subscribe.html", **_hosted_form(sv, "hosted", next_url))


def _hosted_form(sv: Services, form_id: str, next_url: str | None) -> dict[str, Any]:
    """The form on our own page posts back to where the page came from (the host and port
    it was served on), not to ``base_url``: a page on another port or host name than
    base_url says would otherwise post where the browser (CSP form-action) refuses."""
    context = form_context(sv.settings, form_id, next_url)
    context["form_action"] = url_for("web.subscribe")
    return context


@bp.post("/subscribe")
def subscribe() -> Any:
    sv = services()
    _rate_limit(sv)
    body = read_body(request)
    if body.get(HONEYPOT):
        return _signup_reply(body, None)  # a bot: look like success, store nothing
    try:
        form = _signup_form(body, sv.settings)
    except InvalidInput as exc:
        if body.is_json:
            raise
        return _form_error(sv, body, exc)
    _signup(sv, form)
    return _signup_reply(body, form.next_url)


@bp.get("/confirm/<token>")
def confirm(token: str) -> Any:
    sv = services()
    link = read_confirm_token(sv.secret_key, _checked(token))
    sub = sv.store.get(link.subscriber_id)
    if sub is None:
        raise _gone()
    if not confirm_link_matches(sv.secret_key, link, sub.link_key):
        raise TokenError("this confirmation link is not valid")
    consent = _consent("confirm", "confirmation link", CONFIRM_WORDING)
    sub, _changed = sv.store.confirm(
        link.subscriber_id, link.email, consent, request_id=link.request_id
    )
    return render_template("confirmed.html", **_subscriber_context(sv, sub))


@bp.get("/unsubscribe/<token>")
def unsubscribe_page(token: str) -> Any:
    sv = services()
    sub = _subscriber(sv, token)
    return render_template("unsubscribe.html", **_subscriber_context(sv, sub, token))


@bp.post("/unsubscribe/<token>")
def unsubscribe(token: str) -> Any:
    """RFC 8058 one-click: unsubscribes at once and answers 200, for mail clients and
    for the button on our own page alike (both post ``List-Unsubscribe=One-Click``)."""
    sv = services()
    subscriber_id = _subscriber(sv, token).id
    body = read_body(request, allow_json=False)
    source = "one-click" if body.get("List-Unsubscribe") == "One-Click" else "unsubscribe page"
    sub = sv.store.unsubscribe(subscriber_id, source=source)
    if sub is None:  # erased between the two steps
        raise _gone()
    return render_template("unsubscribed.html", **_subscriber_context(sv, sub, token))


@bp.get("/preferences/<token>")
def preferences_page(token: str) -> Any:
    sv = services()
    sub = _subscriber(sv, token)
    return render_template("preferences.html", saved=False, **_subscriber_context(sv, sub, token))


@bp.post("/preferences/<token>")
def preferences(token: str) -> Any:
    sv = services()
    subscriber_id = _subscriber(sv, token).id
    body = read_body(request, allow_json=False)
    _check_csrf(sv, body.get("csrf"), subscriber_id)
    chosen = body.get_list("topics")
    topics = parse_topics(chosen, sv.settings.topics, default_all=False) if chosen else []
    name = clean_name(body.get("name")) if body.get("name") is not None else None
    consent = _consent("preferences", "preferences page", PREFERENCES_WORDING)
    sub = sv.store.update_preferences(subscriber_id, topics=topics, name=name, consent=consent)
    return render_template("preferences.html", saved=True, **_subscriber_context(sv, sub, token))


# ---- signup steps --------------------------------------------------------------------


@dataclass(frozen=True)
class SignupForm:
    email: str
    name: str
    topics: list[str]
    form_id: str
    next_url: str | None


def _signup_form(body: Body, settings: Settings) -> SignupForm:
    form_id = body.get("form") or DEFAULT_FORM
    if not isinstance(form_id, str) or form_id not in FORMS:
        raise InvalidInput("form", "unknown signup form")
    return SignupForm(
        email=normalise_email(body.get("email")),
        name=clean_name(body.get("name")),
        topics=parse_topics(
            body.get_list("topics"), settings.topics, default_all=not _topics_chosen(body)
        ),
        form_id=form_id,
        next_url=None if body.is_json else safe_next(body.get("next"), settings),
    )


def _topics_chosen(body: Body) -> bool:
    """Whether the person saw the topic choices: then none ticked is an error, not "all".

    Our forms send ``topics_shown`` (unticked checkboxes send nothing at all); a JSON
    client chooses by sending the ``topics`` key.
    """
    return "topics" in body.data if body.is_json else body.get("topics_shown") is not None


def _signup(sv: Services, form: SignupForm) -> None:
    wording = FORMS[form.form_id].wording(sv.settings)
    consent = _consent("signup", form.form_id, wording)
    outcome = sv.store.signup(form.email, form.name, form.topics, consent)
    if sv.inline and outcome.send_confirmation and outcome.subscriber_id is not None:
        _send_now(sv, outcome.subscriber_id)


def _send_now(sv: Services, subscriber_id: int) -> None:
    """Inline mode: send this signup's confirmation before answering."""
    result = sv.sender.drain(ids=[subscriber_id])
    if subscriber_id in result.retrying or subscriber_id in result.failed:
        raise ProviderError(
            "the confirmation email could not be sent",
            provider=sv.settings.provider,
            reason="; ".join(result.errors),
            retryable=subscriber_id in result.retrying,
        )


def _signup_reply(body: Body, next_url: str | None) -> Any:
    """The same answer for a new, pending, subscribed or suppressed address."""
    if body.is_json:
        return {"status": "pending", "message": THANKS}, 202
    if next_url:
        return redirect(next_url, code=303)
    sv = services()
    if not sv.thanks_page:
        sv.thanks_page = render_template("thanks.html", message=THANKS)
    return sv.thanks_page


def _form_error(sv: Services, body: Body, exc: InvalidInput) -> Any:
    """Show the hosted form again with the message and what the person typed."""
    given = body.get("form")
    form_id = given if isinstance(given, str) and given in FORMS else DEFAULT_FORM
    context = _hosted_form(sv, form_id, safe_next(body.get("next"), sv.settings))
    chosen = [t for t in body.get_list("topics") if t in sv.settings.topics]
    context["values"] = {"email": body.get("email") or "", "name": body.get("name") or ""}
    context["checked_topics"] = chosen if _topics_chosen(body) else list(sv.settings.topics)
    return render_template("subscribe.html", error=exc, **context), 400


def _rate_limit(sv: Services) -> None:
    wait = sv.limiter.hit(request.remote_addr or "unknown")
    if wait:
        exc = TooManyRequests("too many signups from your network; try again in a minute")
        exc.retry_after = int(wait) + 1  # type: ignore[attr-defined]
        raise exc


def _consent(kind: str, source: str, wording: str = "") -> Consent:
    return Consent(
        kind=kind,
        source=source,
        wording=wording,
        ip=request.remote_addr,
        user_agent=request.headers.get("User-Agent", "")[:500] or None,
    )


# ---- tokens, pages -------------------------------------------------------------------


def _checked(token: str) -> str:
    if len(token) > MAX_TOKEN:
        raise TokenError("this link is not valid")
    return token


def _subscriber(sv: Services, token: str) -> Subscriber:
    """The one person a subscriber link belongs to.

    Its id and signature must match a row *and* that row's link key: an erased
    reader's link names an id that is gone (ids are never reused) and answers 410
    "no longer valid"; a link signed for another key (forged, or an id reused before
    link keys existed) is a 400. Either way nothing changes.
    """
    token = _checked(token)
    sub = sv.store.get(token_subscriber_id(token))
    if sub is None:
        raise _gone()
    if not token_matches(sv.secret_key, token, sub.id, sub.link_key):
        raise TokenError("this link is not valid", hint="use the link from your latest email")
    return sub


def _gone() -> LinkGone:
    return LinkGone(
        "this link is no longer valid",
        hint="we hold nothing for it any more; to subscribe again, use the signup form",
    )


def _subscriber_context(sv: Services, sub: Any, token: str | None = None) -> dict[str, Any]:
    context = {
        "subscriber": sub,
        "topics": list(sv.settings.topics.values()),
        "preferences_url": sv.links.preferences(sub.id, sub.link_key),
        "unsubscribe_url": sv.links.unsubscribe(sub.id, sub.link_key),
        "site_url": sv.settings.site_url,
    }
    if token is not None:
        context["csrf"] = _csrf_serializer(sv).dumps(sub.id)
    return context


def _csrf_serializer(sv: Services) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(sv.secret_key, salt="preferences-csrf")


def _check_csrf(sv: Services, value: Any, subscriber_id: int) -> None:
    try:
        ok = _csrf_serializer(sv).loads(str(value or ""), max_age=CSRF_MAX_AGE) == subscriber_id
    except BadSignature:
        ok = False
    if not ok:
        raise InvalidInput(
            "csrf", "this form has expired or did not come from our page", hint="reload the page"
        )


# ---- headers, CORS -------------------------------------------------------------------

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data: https:; "
    "form-action 'self' {sources}; frame-ancestors 'none'; base-uri 'none'"
)


def _form_targets(settings: Settings) -> str:
    """Where our forms may post or redirect to: this app (``'self'``, and base_url's origin
    in case the page was reached by another name) and the author's site (``next``)."""
    base = urlsplit(settings.base_url)
    origins = [f"{base.scheme}://{base.netloc}".lower(), site_origin(settings)]
    return " ".join(dict.fromkeys(o for o in origins if o != "://"))


def _headers(response: Response) -> Response:
    sv = services()
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")  # tokens live in our URLs
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Content-Security-Policy", sv.csp)
    if request.path != "/healthz" and request.method != "OPTIONS":
        response.headers.setdefault("Cache-Control", "no-store")
    if request.path == "/subscribe":
        _cors(response, sv.origin)
    return response


def _cors(response: Response, allowed: str) -> None:
    """CORS for the site's own origin; Flask answers the OPTIONS preflight itself."""
    response.vary.add("Origin")
    origin = request.headers.get("Origin", "")
    if origin.lower() != allowed:
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = "POST"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Max-Age"] = "86400"


# ---- errors: friendly pages, JSON for JSON clients, never a trace ---------------------

ERROR_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (TokenError, 400),
    (InvalidInput, 400),
    (NotFound, 404),
    (LinkGone, 410),
    (Conflict, 409),
    (DatabaseUnavailable, 503),
    (ProviderError, 503),
)
SERVER_MESSAGES = {
    500: "Something went wrong on our side. Please try again later.",
    503: "We could not complete this just now. Please try again in a few minutes.",
}
TITLES = {
    400: "That did not work",
    404: "Not found",
    405: "Method not allowed",
    409: "This link is no longer valid",
    410: "This link is no longer valid",
    413: "Too much data",
    415: "Unsupported form",
    429: "Slow down",
    500: "Server error",
    503: "Temporarily unavailable",
}


def _register_error_handlers(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(PipelineError, _pipeline_error)
    app.register_error_handler(Exception, _unexpected_error)


def _http_error(exc: HTTPException) -> Any:
    status = exc.code or 500
    if status >= 500:
        return _error(status, SERVER_MESSAGES.get(status, SERVER_MESSAGES[500]))
    headers = {}
    if status == 405 and getattr(exc, "valid_methods", None):
        headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
    if getattr(exc, "retry_after", None):
        headers["Retry-After"] = str(exc.retry_after)  # type: ignore[attr-defined]
    return _error(status, exc.description or TITLES.get(status, "Error"), headers=headers)


def _pipeline_error(exc: PipelineError) -> Any:
    status = next((code for cls, code in ERROR_STATUS if isinstance(exc, cls)), 500)
    if status >= 500:
        log.error("%s %s failed: %s", request.method, request.path, exc, exc_info=exc)
        return _error(status, SERVER_MESSAGES.get(status, SERVER_MESSAGES[500]))
    return _error(status, exc.message, hint=exc.hint, field=getattr(exc, "field", None))


def _unexpected_error(exc: Exception) -> Any:
    log.error("%s %s failed", request.method, request.path, exc_info=exc)
    return _error(500, SERVER_MESSAGES[500])


def _wants_json() -> bool:
    if request.is_json:
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def _error(
    status: int,
    message: str,
    *,
    hint: str | None = None,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    if _wants_json():
        payload = {"status": status, "message": message, "hint": hint, "field": field}
        return {"error": {k: v for k, v in payload.items() if v is not None}}, status, headers
    title = TITLES.get(status, "Error")
    try:
        html = render_template("error.html", status=status, title=title, message=message, hint=hint)
    except Exception:  # noqa: BLE001 - the error page itself must never fail
        log.exception("error page failed to render")
        return Response(f"{status} {title}\n{message}\n", status, headers, "text/plain")
    return html, status, headers
