"""The archive's pages: each sent issue as a web page, the index, and ``latest/``.

An issue page is the web version of its email: the same Markdown, rendered for the web
(``pipeline.markdown``'s tree through :class:`WebWriter`) into ``templates/archive/``,
in the email's own colours (``templates/email/palette.toml``, light and dark). It holds
nothing personal: no greeting by name, no unsubscribe or preference link, no tracking;
a signup form sits where the email has its unsubscribe footer.

Links between pages are relative (``../hip-hinge/index.html``), so the folder works
from any host or straight from the disk; only the canonical and Open Graph tags and the
feed use the absolute ``[site] archive_url``.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from pipeline.archive_feed import rfc3339
from pipeline.content import ContentModule
from pipeline.errors import TemplateError
from pipeline.images import Size
from pipeline.markdown import MjmlWriter, Node, is_remote, parse
from pipeline.palette import load_palette
from pipeline.render import image_sizer
from pipeline.settings import PACKAGE_ROOT, Settings

PER_PAGE = 50  # issues on one index page
IMAGE_TYPES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp"})  # no SVG: it can script
TEMPLATES = (
    "base.html.j2",
    "_article.html.j2",
    "issue.html.j2",
    "index.html.j2",
    "latest.html.j2",
    "style.css.j2",
)
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August")
MONTHS += ("September", "October", "November", "December")
# Bump when the output of an unchanged issue changes, so an incremental build redoes it.
RENDER_VERSION = "1"


@dataclass(frozen=True)
class Issue:
    """A sent content module as the archive shows it."""

    module: ContentModule
    slug: str  # its campaign slug and folder: "hip-hinge", or "welcome/hello" for a step
    sent_at: dt.datetime  # when the first copy went out

    @property
    def page(self) -> str:
        """Its page, relative to the archive's root."""
        return f"{self.slug}/index.html"

    @property
    def root(self) -> str:
        """The way back to the archive's root from its page (``../``)."""
        return "../" * (self.slug.count("/") + 1)


@dataclass(frozen=True)
class Rendered:
    """One issue, rendered."""

    html: str  # the page
    content: str  # the article for the feed: the same, with absolute links
    images: tuple[str, ...]  # local images, as paths under content/ (copied beside the page)


class WebWriter(MjmlWriter):
    """Markdown blocks as plain HTML for a web page, as the email has them inside its
    MJML (headings from <h2>: the title is the page's one <h1>; images with their size)."""

    def blocks(self, nodes: list[Node]) -> str:
        return "".join(self.block(node) for node in nodes)


def archive_env(templates_dir: Path) -> jinja2.Environment:
    """``templates/archive`` of the project, falling back to the package's own files
    (a project whose templates predate the archive still builds one)."""
    return _env(templates_dir / "archive")


@functools.lru_cache(maxsize=8)
def _env(folder: Path) -> jinja2.Environment:
    loader = jinja2.ChoiceLoader(
        [
            jinja2.FileSystemLoader(folder),
            jinja2.FileSystemLoader(PACKAGE_ROOT / "templates" / "archive"),
        ]
    )
    env = jinja2.Environment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",)),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["long_date"] = long_date
    env.filters["rfc3339"] = rfc3339
    return env


def long_date(when: dt.datetime | dt.date) -> str:
    """``23 November 2026`` whatever the locale."""
    return f"{when.day} {MONTHS[when.month - 1]} {when.year}"


def local_image(settings: Settings, ref: str) -> str | None:
    """``ref`` as a clean path under content/ when it names an image file there."""
    if is_remote(ref) or "://" in ref or ref.startswith(("/", "\\")):
        return None
    clean = posixpath.normpath(ref.replace("\\", "/"))
    if clean.startswith("..") or Path(clean).suffix.lower() not in IMAGE_TYPES:
        return None
    path = settings.content_dir / clean
    return clean if path.is_file() else None


class Renderer:
    """Renders the archive's pages for one set of settings, templates and signup form."""

    def __init__(self, settings: Settings, form_html: str) -> None:
        self.settings = settings
        self.form = Markup(form_html)
        self.env = archive_env(settings.templates_dir)
        palette = load_palette(settings.templates_dir)
        self.css = Markup("")
        self.css = Markup(self._render("style.css.j2", color=palette.light, dark=palette.dark))
        self.key = self._key(form_html, palette.path)

    def _key(self, form_html: str, palette: Path) -> str:
        """What every page depends on besides its own issue: settings, templates, form."""
        s = self.settings
        digest = hashlib.sha256(RENDER_VERSION.encode())
        topics = sorted((t.key, t.name) for t in s.topics.values())
        for part in (s.site_name, s.site_url, s.archive_url, s.site_domain, repr(topics)):
            digest.update(part.encode() + b"\0")
        digest.update(form_html.encode() + b"\0")
        digest.update(palette.read_bytes())
        for name in TEMPLATES:
            source, _, _ = self.env.loader.get_source(self.env, name)  # type: ignore[union-attr]
            digest.update(source.encode() + b"\0")
        return digest.hexdigest()

    def _render(self, name: str, **context: Any) -> str:
        s = self.settings
        base = {"site_name": s.site_name, "site_url": s.site_url, "css": self.css}
        try:
            return self.env.get_template(name).render(**base, **context)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(exc.filename or name, exc.lineno, exc.message or "syntax") from exc
        except jinja2.UndefinedError as exc:
            raise TemplateError(name, None, exc.message or "undefined value") from exc

    # ---- one issue -------------------------------------------------------------------

    def url(self, issue: Issue) -> str:
        """The issue page's public address (canonical, Open Graph, feed)."""
        return f"{self.settings.archive_url}/{issue.slug}/"

    def issue(self, issue: Issue, newer: Issue | None, older: Issue | None) -> Rendered:
        """The page of ``issue`` (``newer``/``older``: its neighbours, for the links
        between pages) and its article for the feed."""
        module = issue.module
        tree, _refs = parse(module.body, module.body_line)
        sizes = image_sizer(self.settings)
        images: list[str] = []
        on_page = self._assets(images, prefix="")
        in_feed = self._assets([], prefix=self.url(issue))
        common = self._issue_context(issue)
        article = self._render(
            "_article.html.j2",
            **common,
            body=Markup(WebWriter(on_page, sizes).blocks(tree.children)),
            image=on_page(module.image) if module.image else "",
        )
        hero = in_feed(module.image) if module.image else ""
        content = self._render(
            "_article.html.j2",
            **{**common, "feed": True},
            body=Markup(WebWriter(in_feed, sizes).blocks(tree.children)),
            image=hero,
        )
        html = self._render(
            "issue.html.j2",
            **common,
            root=issue.root,
            article=Markup(article),
            og_image=hero if is_remote(hero) else "",
            newer=self._link(issue, newer),
            older=self._link(issue, older),
            form=self.form,
        )
        return Rendered(html, content.strip(), tuple(dict.fromkeys(images)))

    def _issue_context(self, issue: Issue) -> dict[str, Any]:
        module = issue.module
        topic = self.settings.topics.get(module.topic)
        hero = self._hero_size(module)
        return {
            "image_width": hero.width if hero else 0,
            "image_height": hero.height if hero else 0,
            "issue": issue,
            "title": module.title,
            "preheader": module.preheader,
            "topic": topic.name if topic else "",
            "kind": module.kind,
            "sent_at": issue.sent_at,
            "url": module.url,
            "image_alt": module.image_alt,
            "cta_text": module.cta_text,
            "cta_url": module.cta_url,
            "price": module.price,
            "canonical": self.url(issue),
            "feed": False,
        }

    def _hero_size(self, module: ContentModule) -> Size | None:
        """The hero's own size (a web page shows it as wide as its column allows; the
        email's is capped at its 552 px column)."""
        if not module.image:
            return None
        if module.image_width:
            return Size(module.image_width, module.image_height)
        return image_sizer(self.settings)(module.image)

    def _link(self, here: Issue, there: Issue | None) -> dict[str, str] | None:
        if there is None:
            return None
        return {"href": f"{here.root}{there.page}", "title": there.module.title}

    def _assets(self, found: list[str], *, prefix: str) -> Callable[[str], str]:
        """Image refs -> their place beside the page (``prefix`` makes it absolute);
        every local image met is added to ``found``."""

        def resolve(ref: str) -> str:
            clean = local_image(self.settings, ref)
            if clean is None:
                return ref
            found.append(clean)
            return f"{prefix}{clean}"

        return resolve

    # ---- lists ----------------------------------------------------------------------

    def index_pages(self, issues: list[Issue]) -> dict[str, str]:
        """``index.html`` and ``page/N/index.html``: newest first, PER_PAGE a page."""
        chunks = [issues[i : i + PER_PAGE] for i in range(0, len(issues), PER_PAGE)] or [[]]
        pages = {}
        for number, chunk in enumerate(chunks, start=1):
            root = "" if number == 1 else "../../"
            pages[index_path(number)] = self._render(
                "index.html.j2",
                root=root,
                issues=[self._summary(issue, root) for issue in chunk],
                number=number,
                count=len(chunks),
                total=len(issues),
                newer=_page_href(number - 1, root) if number > 1 else None,
                older=_page_href(number + 1, root) if number < len(chunks) else None,
                canonical=f"{self.settings.archive_url}/"
                + ("" if number == 1 else f"page/{number}/"),
                form=self.form,
            )
        return pages

    def _summary(self, issue: Issue, root: str) -> dict[str, Any]:
        return {**self._issue_context(issue), "href": f"{root}{issue.page}"}

    def latest(self, issue: Issue | None) -> str:
        """``latest/index.html``: sends the browser on to the newest issue (a plain meta
        refresh, which any static host serves)."""
        return self._render(
            "latest.html.j2",
            root="../",
            target=f"../{issue.page}" if issue else "../index.html",
            title=issue.module.title if issue else "",
            canonical=self.url(issue) if issue else f"{self.settings.archive_url}/",
        )


def index_path(number: int) -> str:
    return "index.html" if number == 1 else f"page/{number}/index.html"


def _page_href(number: int, root: str) -> str:
    return f"{root}{index_path(number)}"
