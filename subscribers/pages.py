"""``/view/<slug>``: the web version of an email, where "View in your browser" goes.

It shows a content module as its email, with the personal links turned into links to
the signup page, once it has been sent to someone (a draft is never public). Images
are served by ``/media/`` in ``subscribers.web``. The link itself comes from
:func:`pipeline.render.web_version_url`.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app

from pipeline.content import find_module, load_module
from pipeline.errors import PipelineError
from pipeline.render import compile_campaign
from pipeline.sequences import find_step, load_step
from subscribers.ledger import Ledger

bp = Blueprint("pages", __name__)


def _services() -> Any:
    return current_app.extensions["newsletter"]


@bp.get("/view/<path:slug>")
def view(slug: str) -> Any:
    """A module (``/view/hip-hinge``) or a sequence step (``/view/welcome/hello``)."""
    sv = _services()
    settings = sv.settings
    try:
        if "/" in slug:
            step = load_step(settings, find_step(settings, slug))
            module, campaign, topic = step.module, step.slug, step.topic
        else:
            module = load_module(find_module(settings, slug), settings)
            campaign, topic = module.slug, module.topic
    except PipelineError:
        abort(404)
    if Ledger(sv.store).campaign(campaign, topic) is None:
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
        }
    )
    return html, 200, {"Content-Type": "text/html; charset=utf-8"}
