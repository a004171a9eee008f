"""Pages for what the emails link to: their images, and "view in your browser".

``/media/<path>`` serves images under ``content/`` (local images in a sent email point
here). ``/view/<slug>`` shows a content module as its email, with the personal links
turned into links to the signup page, once it has been sent to someone (a draft is
never public).
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from flask import Blueprint, abort, current_app, send_from_directory

from pipeline.content import find_module, load_module
from pipeline.errors import PipelineError
from pipeline.render import compile_campaign
from subscribers.ledger import Ledger

bp = Blueprint("pages", __name__)
IMAGE_TYPES = {".png", ".jpg", ".jpeg", ".gif", ".webp"}


def _services() -> Any:
    return current_app.extensions["newsletter"]


@bp.get("/media/<path:name>")
def media(name: str) -> Any:
    if PurePosixPath(name).suffix.lower() not in IMAGE_TYPES:
        abort(404)
    content = _services().settings.content_dir
    return send_from_directory(content, name, max_age=7 * 24 * 3600)  # safe_join inside


@bp.get("/view/<slug>")
def view(slug: str) -> Any:
    sv = _services()
    settings = sv.settings
    try:
        module = load_module(find_module(settings, slug), settings)
    except PipelineError:
        abort(404)
    if Ledger(sv.store).campaign(module.slug, module.topic) is None:
        abort(404)  # not sent yet: drafts stay private
    compiled = compile_campaign(module, settings)
    signup = f"{settings.base_url}/subscribe"
    html = compiled.html_template.fill(
        {
            "first_name": "there",
            "name": "",
            "email": "",
            "unsubscribe_url": signup,
            "preferences_url": signup,
            "view_online_url": f"{settings.base_url}/view/{module.slug}",
        }
    )
    return html, 200, {"Content-Type": "text/html; charset=utf-8"}
