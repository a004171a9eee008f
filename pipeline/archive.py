"""The public archive: every sent issue on the web, an index and an Atom feed.

What was sent is read through the small :class:`SentLog` protocol (the send ledger,
``subscribers.ledger.Ledger``, in practice), so this module never imports the store.
A content module is in the archive once it reached at least one reader; front matter
``archive: false`` keeps one out, and sequence steps stay out unless ``archive: true``.

:class:`Site` is the archive as a set of files (``index.html``, ``page/N/index.html``,
``SLUG/index.html`` with its images, ``latest/index.html``, ``feed.xml``), rendered on
demand: ``newsletter archive`` writes them (``pipeline.archive_build``, incremental) and
the web app serves them at ``/archive/``. No file holds anything about a reader.
"""

from __future__ import annotations

import datetime as dt
import mimetypes
import posixpath
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pipeline.archive_feed import FEED_ENTRIES, Entry, atom_feed
from pipeline.archive_links import in_archive
from pipeline.archive_render import Issue, Rendered, Renderer
from pipeline.content import load_module, module_paths, slug_for
from pipeline.errors import ContentError
from pipeline.sequences import step_name, step_paths
from pipeline.settings import Settings

RESERVED = frozenset({"latest", "page"})  # folders of the archive itself
FEED = "feed.xml"
LATEST = "latest/index.html"

__all__ = ["Issue", "Selection", "SentLog", "Site", "select_issues", "sent_issues"]


class Sent(Protocol):
    """A campaign that reached at least one reader."""

    @property
    def slug(self) -> str: ...

    @property
    def topic(self) -> str: ...

    @property
    def first_sent_at(self) -> dt.datetime: ...


class SentLog(Protocol):
    """What the archive needs of the send ledger."""

    def sent_campaigns(self) -> Sequence[Sent]: ...


@dataclass(frozen=True)
class Selection:
    """The issues of the archive, newest first, and what was left out and why."""

    issues: list[Issue]
    held_back: list[str] = field(default_factory=list)  # archive: false, or a step
    missing: list[str] = field(default_factory=list)  # sent, but the file is gone


def select_issues(settings: Settings, sent: Iterable[Sent]) -> Selection:
    """The archive's issues: sent modules (and steps) that their front matter lets in."""
    first: dict[str, dt.datetime] = {}
    for campaign in sent:
        when = campaign.first_sent_at
        first[campaign.slug] = min(first.get(campaign.slug, when), when)
    files = {slug_for(path): (path, False) for path in module_paths(settings)}
    for path in step_paths(settings):
        files[f"{path.parent.name}/{step_name(path)}"] = (path, True)
    issues, held_back, missing = [], [], []
    for slug, sent_at in first.items():
        if slug not in files:
            missing.append(slug)
            continue
        path, step = files[slug]
        module = load_module(path, settings)
        if not in_archive(module, step=step):
            held_back.append(slug)
            continue
        _check_slug(path, slug)
        issues.append(Issue(module, slug, sent_at))
    issues.sort(key=lambda i: (i.sent_at, i.slug), reverse=True)
    return Selection(issues, sorted(held_back), sorted(missing))


def sent_issues(settings: Settings, log: SentLog) -> Selection:
    """The archive's issues, from what the ledger says was sent."""
    return select_issues(settings, log.sent_campaigns())


def input_stamp(settings: Settings) -> tuple[tuple[str, int, int], ...]:
    """Name, mtime and size of every file an archive page is made from (content modules,
    their images, templates): when it is unchanged, so are the pages."""
    found = []
    for folder in (settings.content_dir, settings.templates_dir):
        for path in sorted(folder.rglob("*")) if folder.is_dir() else ():
            try:
                stat = path.stat()
            except OSError:
                continue
            found.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(found)


def _check_slug(path: Path, slug: str) -> None:
    if slug.split("/")[0] in RESERVED:
        raise ContentError(
            str(path),
            None,
            f"slug {slug!r}: the archive keeps {', '.join(f'{n}/' for n in sorted(RESERVED))} "
            "for itself",
            hint="rename the file, or set 'archive: false' in its front matter",
        )


@dataclass(frozen=True)
class File:
    """One file of the archive: text to write, or an image to copy."""

    path: str  # relative to the archive's root, with '/'
    text: bytes | None = None
    source: Path | None = None

    @property
    def media_type(self) -> str:
        if self.path.endswith(".xml"):
            return "application/atom+xml; charset=utf-8"
        if self.path.endswith(".html"):
            return "text/html; charset=utf-8"
        return mimetypes.guess_type(self.path)[0] or "application/octet-stream"


class Site:
    """The archive as files, each rendered on first use."""

    def __init__(
        self,
        settings: Settings,
        selection: Selection,
        form_html: str,
        *,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.settings = settings
        self.issues = selection.issues
        self.selection = selection
        self.renderer = Renderer(settings, form_html)
        self.now = now
        self.position = {issue.slug: n for n, issue in enumerate(self.issues)}
        self.cache: dict[str, Rendered] = {}

    @property
    def latest_issue(self) -> Issue | None:
        return self.issues[0] if self.issues else None

    def neighbours(self, issue: Issue) -> tuple[Issue | None, Issue | None]:
        """(newer, older) than ``issue``."""
        n = self.position[issue.slug]
        newer = self.issues[n - 1] if n > 0 else None
        older = self.issues[n + 1] if n + 1 < len(self.issues) else None
        return newer, older

    def rendered(self, issue: Issue) -> Rendered:
        found = self.cache.get(issue.slug)
        if found is None:
            found = self.cache[issue.slug] = self.renderer.issue(issue, *self.neighbours(issue))
        return found

    def index_pages(self) -> dict[str, str]:
        return self.renderer.index_pages(self.issues)

    def latest_page(self) -> str:
        return self.renderer.latest(self.latest_issue)

    def feed(self, content: Callable[[Issue], str] | None = None) -> bytes:
        """``feed.xml``; ``content`` gives an issue's article (default: render it)."""
        article = content or (lambda issue: self.rendered(issue).content)
        entries = [self.entry(issue, article(issue)) for issue in self.issues[:FEED_ENTRIES]]
        return atom_feed(self.settings, entries, empty_updated=self.now())

    def entry(self, issue: Issue, content: str) -> Entry:
        module = issue.module
        topic = self.settings.topics.get(module.topic)
        return Entry(
            slug=issue.slug,
            title=module.title,
            url=self.renderer.url(issue),
            published=issue.sent_at,
            summary=module.preheader,
            content=content,
            topic=module.topic,
            topic_name=topic.name if topic else module.topic,
        )

    def image(self, issue: Issue, ref: str) -> File:
        return File(f"{issue.slug}/{ref}", source=self.settings.content_dir / ref)

    # ---- one file by its path (the web app) -------------------------------------------

    def file(self, path: str) -> File | None:
        """The file at ``path`` (relative, '/'-separated; a folder means its index.html),
        or None."""
        path = posixpath.normpath(path.strip("/")) if path.strip("/") else ""
        if path.startswith(".."):
            return None
        if path in ("", "."):
            path = "index.html"
        elif not posixpath.splitext(path)[1]:
            path = f"{path}/index.html"
        if path == FEED:
            return File(path, self.feed())
        if path == LATEST:
            return File(path, self.latest_page().encode())
        if path.startswith("page/") or path == "index.html":
            return self._index_file(path)
        return self._issue_file(path)

    def _index_file(self, path: str) -> File | None:
        pages = self.index_pages()
        return File(path, pages[path].encode()) if path in pages else None

    def _issue_file(self, path: str) -> File | None:
        for issue in self.issues:
            if path == issue.page:
                return File(path, self.rendered(issue).html.encode())
            prefix = f"{issue.slug}/"
            if path.startswith(prefix) and path[len(prefix) :] in self.rendered(issue).images:
                return self.image(issue, path[len(prefix) :])
        return None
