"""The signup forms: their wording (stored as consent), the embeddable snippet, ``next``.

Each form a person can sign up through has an id. The consent record stores the id and
the exact wording that form shows, built here from one table, so what a person saw and
what we stored cannot drift apart.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import jinja2

from pipeline.settings import Settings

FINE_PRINT = (
    "We will email you a link to confirm first. Every email has a one-click unsubscribe link."
)


@dataclass(frozen=True)
class FormSpec:
    id: str
    intro: str  # may use {site_name}

    def wording(self, settings: Settings) -> str:
        """The full text the person agreed to, as stored in the consent record."""
        topics = ", ".join(t.name for t in settings.topics.values())
        return f"{self.intro_for(settings)} (topics offered: {topics}). {FINE_PRINT}"

    def intro_for(self, settings: Settings) -> str:
        return self.intro.format(site_name=settings.site_name)


FORMS: dict[str, FormSpec] = {
    spec.id: spec
    for spec in (
        FormSpec(
            "article",
            "If you want to be notified of new content updates and program offers, "
            "fill out the form",
        ),
        FormSpec("hosted", "Get new articles and program offers from {site_name} by email"),
        FormSpec("archive", "Get the next issues of {site_name} by email"),  # archive pages
    )
}
DEFAULT_FORM = "article"


def site_origin(settings: Settings) -> str:
    """``scheme://host[:port]`` of the author's site (the only CORS and ``next`` origin)."""
    parts = urlsplit(settings.site_url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def safe_next(raw: str | None, settings: Settings) -> str | None:
    """``raw`` when it is an absolute http(s) URL on the site's own origin, else None."""
    if not raw or len(raw) > 2000 or any(ord(ch) < 33 or ch == "\\" for ch in raw):
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    return raw if origin == site_origin(settings) else None


@functools.lru_cache(maxsize=4)
def _snippet_env(web_templates: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(web_templates),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def form_context(
    settings: Settings, form_id: str, next_url: str | None = None
) -> dict[str, object]:
    """What ``_form.html`` needs, for the hosted page and the pasted snippet alike."""
    spec = FORMS[form_id]
    return {
        "form_action": f"{settings.base_url}/subscribe",
        "form_id": spec.id,
        "intro": spec.intro_for(settings),
        "fine_print": FINE_PRINT,
        "topics": list(settings.topics.values()),
        "checked_topics": list(settings.topics),
        "next_url": next_url or "",
        "values": {},
    }


def render_snippet(settings: Settings, next_url: str | None = None) -> str:
    """The HTML form to paste under an article. Works without JavaScript."""
    return render_form(settings, DEFAULT_FORM, next_url, standalone=True)


def render_form(
    settings: Settings, form_id: str, next_url: str | None = None, *, standalone: bool = False
) -> str:
    """A signup form as HTML; ``standalone`` adds its own styles (a page without ours)."""
    template = _snippet_env(settings.templates_dir / "web").get_template("_form.html")
    return template.render(form_context(settings, form_id, next_url), standalone=standalone)
