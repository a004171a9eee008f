"""``/archive/``: the public archive served by the web app, always up to date.

The same files ``newsletter archive`` writes (``pipeline.archive.Site``), rendered from
the ledger and the content as requests come, so an issue's page is there the moment
its first copy is sent. A site is kept until the sent campaigns or a file under
content/ or templates/ change.
"""

from __future__ import annotations

import threading
from typing import Any

from flask import Blueprint, Response, current_app, redirect, send_file

from pipeline.archive import Site, input_stamp, select_issues
from subscribers.errors import NotFound
from subscribers.forms import render_form
from subscribers.ledger import Ledger

bp = Blueprint("archive", __name__)
MAX_AGE = 300  # seconds a browser or proxy may keep an archive page
IMAGE_MAX_AGE = 7 * 24 * 3600


class SiteCache:
    """The last site built, and what it was built from."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.key: object = None
        self.site: Site | None = None

    def get(self, sv: Any) -> Site:
        settings = sv.settings
        sent = Ledger(sv.store).sent_campaigns()
        key = (tuple((c.slug, c.first_sent_at) for c in sent), input_stamp(settings))
        with self.lock:
            if self.site is None or key != self.key:
                selection = select_issues(settings, sent)
                self.site = Site(settings, selection, render_form(settings, "archive"))
                self.key = key
            return self.site


def _site() -> Site:
    sv = current_app.extensions["newsletter"]
    cache = current_app.extensions.setdefault("newsletter_archive", SiteCache())
    return cache.get(sv)


@bp.get("/archive")
def root() -> Any:
    return redirect("/archive/", code=308)


@bp.get("/archive/", defaults={"path": ""})
@bp.get("/archive/<path:path>")
def archive(path: str) -> Any:
    site = _site()
    if path.rstrip("/") == "latest":
        newest = site.latest_issue
        return redirect(f"/archive/{newest.slug}/" if newest else "/archive/", code=302)
    found = site.file(path)
    if found is None:
        raise NotFound("no such page in the archive", hint="see /archive/ for every issue")
    if path and "." not in path.rsplit("/", 1)[-1] and not path.endswith("/"):
        return redirect(f"/archive/{path}/", code=308)  # relative links need the slash
    if found.source is not None:
        return send_file(found.source, mimetype=found.media_type, max_age=IMAGE_MAX_AGE)
    response = Response(found.text, content_type=found.media_type)
    response.headers["Cache-Control"] = f"public, max-age={MAX_AGE}"
    return response
