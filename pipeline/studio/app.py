"""The studio's Flask app: index, module pages, the email frame, events, test send.

Every route reads, except ``POST /send-test/<key>`` (see ``security``). Pages are
server-rendered; ``static/studio.js`` follows ``/events`` and swaps the parts of the
page marked ``data-live`` without reloading it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from jinja2 import StrictUndefined
from markupsafe import escape

from pipeline.commands_send import prepare_job, send_test
from pipeline.errors import PipelineError, ProviderError
from pipeline.studio.catalog import Entry
from pipeline.studio.editor import editor_url
from pipeline.studio.readers import Reader, sample, samples
from pipeline.studio.schemes import as_scheme
from pipeline.studio.security import Guard
from pipeline.studio.workspace import Workspace
from subscribers.errors import InvalidInput

HERE = Path(__file__).resolve().parent
HEARTBEAT = 15.0  # seconds between keep-alive comments on /events
MEDIA_TYPES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp"})  # no SVG: it can script
GMAIL_CLIP = 102 * 1024
WIDTHS = ("desktop", "phone")  # the first is the default
THEMES = ("light", "dark", "inverted")
TABS = ("html", "text", "source")
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: http: https:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; frame-src 'self'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'; object-src 'none'"
)
# The email itself: any image or font, its own styles, never a script, a form or a frame.
EMAIL_CSP = (
    "default-src 'none'; img-src * data:; style-src * 'unsafe-inline'; font-src * data:; "
    "frame-ancestors 'self'; form-action 'none'; base-uri 'none'"
)

bp = Blueprint("studio", __name__)


def create_app(workspace: Workspace, guard: Guard | None = None) -> Flask:
    app = Flask(
        __name__,
        template_folder=str(HERE / "templates"),
        static_folder=str(HERE / "static"),
        static_url_path="/_studio",
    )
    app.jinja_env.undefined = StrictUndefined
    app.extensions["studio"] = workspace
    app.extensions["studio.guard"] = guard or Guard("127.0.0.1")
    app.register_blueprint(bp)
    app.before_request(_check_host)
    app.after_request(_headers)
    app.context_processor(_helpers)
    app.register_error_handler(404, _not_found)
    return app


def ws() -> Workspace:
    return current_app.extensions["studio"]


def guard() -> Guard:
    return current_app.extensions["studio.guard"]


def _check_host() -> Any:
    if not guard().host_allowed(request):
        return Response(
            "This studio answers to 127.0.0.1 and localhost only.\n", 400, mimetype="text/plain"
        )
    return None


def _headers(response: Response) -> Response:
    if request.endpoint == "studio.email":
        response.headers["Content-Security-Policy"] = EMAIL_CSP
    elif response.mimetype == "text/html":
        response.headers["Content-Security-Policy"] = PAGE_CSP
        response.headers["X-Frame-Options"] = "DENY"
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _not_found(_error: Exception) -> Any:
    key = request.view_args.get("key") if request.view_args else None
    message = f"No content module {key!r}: renamed or deleted?" if key else "Nothing here."
    return render_template("message.html", title="Not found", message=message), 404


def _helpers() -> dict[str, Any]:
    workspace = ws()
    root = workspace.settings.root

    def shown_path(path: str | Path) -> str:
        path = Path(path)
        return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)

    def edit_url(path: str | Path, line: int | None = None) -> str:
        if workspace.editor:
            return editor_url(workspace.editor, path, line)
        return url_for("studio.file_view", path=str(path), line=line or 1, _anchor=f"L{line or 1}")

    return {
        "ws": workspace,
        "settings": workspace.settings,
        "shown_path": shown_path,
        "edit_url": edit_url,
        "csrf": guard().token,
        "clip": GMAIL_CLIP,
    }


# ---- pages ---------------------------------------------------------------------------


@bp.get("/")
def index() -> Any:
    workspace = ws()
    try:
        sent, store_note = workspace.store.campaigns(), ""
    except PipelineError as exc:
        sent, store_note = {}, exc.message
    return render_template(
        "index.html",
        rows=workspace.overview(),
        templates=workspace.template_problems(),
        sent=sent,
        store_note=store_note,
    )


@bp.get("/m/<path:key>")
def module(key: str) -> Any:
    workspace = ws()
    entry = _entry(key)
    reader, reader_error = _reader()
    rendered = workspace.render(entry, reader)
    controls = _controls()
    scheme = "dark" if controls["theme"] == "dark" else "light"
    email_src = url_for(
        "studio.email", key=entry.key, scheme=scheme, v=workspace.version, **_reader_args()
    )
    receives = reader.would_receive(rendered.topic or "")
    return render_template(
        "module.html",
        entry=entry,
        r=rendered,
        reader=reader,
        reader_error=reader_error,
        readers=samples(workspace.settings),
        controls=controls,
        email_src=email_src,
        receives=receives,
        reader_args=_reader_args(),
    )


@bp.get("/email/<path:key>")
def email(key: str) -> Any:
    """The email alone, for the frame: light or dark ``prefers-color-scheme``."""
    reader, _ = _reader()
    rendered = ws().render(_entry(key), reader)
    if rendered.failure is not None:
        where = escape(rendered.failure.where or rendered.failure.message)
        return Response(f"<!doctype html><p>{where}: see the studio page</p>", 409)
    scheme = request.args.get("scheme", "light")
    html = as_scheme(rendered.html, scheme if scheme in ("light", "dark") else "light")
    return Response(html, mimetype="text/html")


@bp.get("/eml/<path:key>")
def eml(key: str) -> Any:
    reader, _ = _reader()
    entry = _entry(key)
    rendered = ws().render(entry, reader)
    if rendered.failure is not None:
        abort(409)
    name = f"{entry.slug}.eml"
    return Response(
        rendered.eml,
        mimetype="message/rfc822",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@bp.get("/media/<path:name>")
def media(name: str) -> Any:
    """Images under content/, so the email shows offline."""
    if Path(name).suffix.lower() not in MEDIA_TYPES:
        abort(404)
    return send_from_directory(ws().settings.content_dir, name, max_age=0)


@bp.get("/file")
def file_view() -> Any:
    """A read-only view of a content, template or settings file, for editor-less links."""
    settings = ws().settings
    path = Path(request.args.get("path", "")).resolve()
    roots = [settings.content_dir.resolve(), settings.templates_dir.resolve()]
    allowed = any(path.is_relative_to(r) for r in roots) or (
        settings.config_path is not None and path == settings.config_path.resolve()
    )
    if not allowed or not path.is_file():
        abort(404)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    line = request.args.get("line", type=int) or 0
    return render_template("file.html", path=path, lines=lines, line=line)


@bp.get("/events")
def events() -> Response:
    """Server-sent events: ``hello`` with the version, then ``change`` after each save."""
    workspace = ws()
    root = workspace.settings.root

    def stream() -> Iterator[str]:
        version = workspace.version
        yield f"retry: 500\nevent: hello\ndata: {json.dumps({'version': version})}\n\n"
        while not workspace.closed:
            new = workspace.wait(version, HEARTBEAT)
            if workspace.closed:
                return
            if new == version:
                yield ": keep-alive\n\n"
                continue
            version = new
            change = workspace.last_change
            paths = [_relative(p, root) for p in change.paths] if change else []
            yield f"event: change\ndata: {json.dumps({'version': version, 'paths': paths})}\n\n"

    return Response(
        stream(),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


# ---- the one write: a test send -------------------------------------------------------


@bp.post("/send-test/<path:key>")
def send_test_view(key: str) -> Any:
    refusal = guard().post_refusal(request)
    if refusal:
        return _sent_reply(False, refusal, 403)
    entry = _entry(key)
    reader, _ = _reader()
    address = request.form.get("to", "")
    try:
        job = prepare_job(ws().settings, entry.path.stem, reader.topic or None)
        result = send_test(job, address)
    except InvalidInput as exc:
        return _sent_reply(False, f"{address!r}: {exc}", 400)
    except PipelineError as exc:  # refused, not configured, unreachable: the provider's words
        return _sent_reply(False, str(exc), 502 if isinstance(exc, ProviderError) else 422)
    return _sent_reply(True, str(result), 200)


def _sent_reply(ok: bool, message: str, status: int) -> Any:
    if request.accept_mimetypes.best == "application/json":
        reply = json.dumps({"ok": ok, "message": message})
        return Response(reply, status, mimetype="application/json")
    key = request.view_args.get("key") if request.view_args else None
    back = url_for("studio.module", key=key, **_reader_args()) if key else ""
    return render_template("sent.html", ok=ok, message=message, back=back), status


# ---- request parsing ---------------------------------------------------------------------


def _entry(key: str) -> Entry:
    entry = ws().find(key)
    if entry is None:
        abort(404)
    return entry


def _reader() -> tuple[Reader, str]:
    """The chosen reader; a subscriber that cannot be found falls back to the sample."""
    settings = ws().settings
    key = request.args.get("reader", "sample")
    if key != "subscriber":
        return sample(settings, key), ""
    try:
        return ws().store.find(request.args.get("email", "")), ""
    except PipelineError as exc:
        return sample(settings, "sample"), str(exc)


def _reader_args() -> dict[str, str]:
    args = {"reader": request.args.get("reader", "sample")}
    if args["reader"] == "subscriber":
        args["email"] = request.args.get("email", "")
    return args


def _controls() -> dict[str, str]:
    def pick(name: str, options: tuple[str, ...]) -> str:
        value = request.args.get(name, options[0])
        return value if value in options else options[0]

    return {"w": pick("w", WIDTHS), "theme": pick("theme", THEMES), "tab": pick("tab", TABS)}


def _relative(path: str, root: Path) -> str:
    p = Path(path)
    return str(p.relative_to(root)) if p.is_relative_to(root) else str(p)
