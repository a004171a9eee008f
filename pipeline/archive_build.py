"""``newsletter archive``: write the archive to a folder, rewriting only what changed.

A manifest in the folder (``.newsletter-archive.json``) keeps the hash and size of every
file written, and for every issue a fingerprint of what its page is made of: its file,
when it was sent, its neighbours (the links between pages), its images, and the
templates, palette, settings and signup form. An issue whose fingerprint is unchanged
and whose page is intact is not rendered again; a file whose bytes are unchanged is not
written again (a static host's sync uploads only what changed); files the archive no
longer has are removed. Only files the archive wrote itself are ever removed: anything
else in the folder stays. Every write goes to a temporary file renamed into place, so a
reader of the folder never sees half a page.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import posixpath
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.archive import FEED, LATEST, Selection, Site
from pipeline.archive_feed import FEED_ENTRIES
from pipeline.archive_render import Issue
from pipeline.errors import PipelineError
from pipeline.settings import Settings

MANIFEST = ".newsletter-archive.json"
MANIFEST_VERSION = 1
Progress = Callable[[int], None]


class ArchiveError(PipelineError):
    """The archive cannot be written where asked."""


@dataclass
class Report:
    """What one build did, for the summary at the end."""

    out: Path
    issues: int = 0
    rendered: int = 0  # issues rendered (the others were unchanged)
    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    seconds: float = 0.0


def build(
    settings: Settings,
    selection: Selection,
    out: Path,
    *,
    form_html: str,
    progress: Progress | None = None,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> Report:
    """Write the archive of ``selection`` into ``out``; returns what changed."""
    started = time.perf_counter()
    old = _load_manifest(out)
    site = Site(settings, selection, form_html, now=now)
    writer = Writer(out, old.get("files", {}))
    report = Report(out, issues=len(site.issues))
    cached: dict[str, dict[str, Any]] = old.get("issues", {})
    issues: dict[str, dict[str, Any]] = {}
    try:
        for n, issue in enumerate(site.issues):
            in_feed = n < FEED_ENTRIES  # the feed carries the article of these
            found = _issue(site, writer, issue, cached.get(issue.slug), report, in_feed)
            issues[issue.slug] = found
            if progress:
                progress(1)
        for path, html in site.index_pages().items():
            writer.text(path, html.encode())
        writer.text(LATEST, site.latest_page().encode())
        writer.text(FEED, site.feed(lambda issue: issues[issue.slug]["content"]))
        report.removed = writer.remove_stale()
    except BaseException:
        # Remember every file this folder may now hold, so the next build (which
        # renders everything again) can tell them from someone else's.
        files = {**writer.old, **writer.files}
        _save_manifest(out, {"version": MANIFEST_VERSION, "files": files, "issues": {}})
        raise
    _save_manifest(out, {"version": MANIFEST_VERSION, "files": writer.files, "issues": issues})
    report.written, report.unchanged = writer.written, writer.unchanged
    report.seconds = time.perf_counter() - started
    return report


def _issue(
    site: Site,
    writer: Writer,
    issue: Issue,
    cached: dict[str, Any] | None,
    report: Report,
    in_feed: bool,
) -> dict[str, Any]:
    """Write one issue's page and images, rendering it only when something changed.
    Returns what the manifest keeps of it (its article only while it is in the feed)."""
    settings = site.settings
    newer, older = site.neighbours(issue)
    if not _usable(cached) or (in_feed and "content" not in cached):  # type: ignore[operator]
        cached = None
    images = list(cached["images"]) if cached else []
    fingerprint = _fingerprint(site.renderer.key, settings, issue, newer, older, images)
    if cached and cached["fingerprint"] == fingerprint and writer.keep(issue.page):
        for ref in images:
            image = site.image(issue, ref)
            writer.copy(image.path, image.source)  # type: ignore[arg-type]
        return cached if in_feed else _without_content(cached)
    rendered = site.rendered(issue)
    report.rendered += 1
    writer.text(issue.page, rendered.html.encode())
    for ref in rendered.images:
        image = site.image(issue, ref)
        writer.copy(image.path, image.source)  # type: ignore[arg-type]
    images = list(rendered.images)
    record = {
        "fingerprint": _fingerprint(site.renderer.key, settings, issue, newer, older, images),
        "images": images,
        "content": rendered.content,
    }
    return record if in_feed else _without_content(record)


def _without_content(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "content"}


def _usable(cached: object) -> bool:
    return (
        isinstance(cached, dict)
        and isinstance(cached.get("fingerprint"), str)
        and isinstance(cached.get("content", ""), str)
        and isinstance(cached.get("images"), list)
        and all(isinstance(ref, str) and _safe(ref) for ref in cached["images"])
    )


def _fingerprint(
    key: str,
    settings: Settings,
    issue: Issue,
    newer: Issue | None,
    older: Issue | None,
    images: list[str],
) -> str:
    digest = hashlib.sha256(key.encode())
    digest.update(issue.module.path.read_bytes())
    digest.update(f"\0{issue.slug}\0{issue.sent_at.isoformat()}".encode())
    for other in (newer, older):
        digest.update((f"\0{other.slug}\0{other.module.title}" if other else "\0-").encode())
    for ref in images:
        digest.update(f"\0{ref}:{_stat(settings.content_dir / ref)}".encode())
    return digest.hexdigest()


def _stat(path: Path) -> str:
    try:
        stat = path.stat()
    except OSError:
        return "missing"
    return f"{stat.st_size}:{stat.st_mtime_ns}"


class Writer:
    """Writes files into the archive folder, skipping those already as they should be."""

    def __init__(self, out: Path, old: dict[str, dict[str, Any]]) -> None:
        self.out = out
        self.old = old
        self.files: dict[str, dict[str, Any]] = {}
        self.written: list[str] = []
        self.unchanged = 0
        self.folders: set[Path] = set()  # made already

    def _intact(self, path: str, record: dict[str, Any] | None) -> bool:
        if record is None:
            return False
        try:
            return (self.out / path).stat().st_size == record["size"]
        except OSError:
            return False

    def keep(self, path: str) -> bool:
        """Keep ``path`` as the last build wrote it, if it is still there intact."""
        record = self.old.get(path)
        if not self._intact(path, record):
            return False
        self.files[path] = record  # type: ignore[assignment]
        self.unchanged += 1
        return True

    def text(self, path: str, data: bytes) -> None:
        record = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        old = self.old.get(path)
        self.files[path] = record
        if old and old.get("sha256") == record["sha256"] and self._intact(path, old):
            self.unchanged += 1
            return
        self._put(path, lambda tmp: tmp.write_bytes(data))

    def copy(self, path: str, source: Path) -> None:
        if path in self.files:  # the same image used twice
            return
        stat = source.stat()
        record = {"source": f"{stat.st_size}:{stat.st_mtime_ns}", "size": stat.st_size}
        old = self.old.get(path)
        self.files[path] = record
        if old and old.get("source") == record["source"] and self._intact(path, old):
            self.unchanged += 1
            return
        self._put(path, lambda tmp: shutil.copyfile(source, tmp))

    def _put(self, path: str, write: Callable[[Path], object]) -> None:
        target = self.out / path
        if target.parent not in self.folders:
            target.parent.mkdir(parents=True, exist_ok=True)
            self.folders.add(target.parent)
        _replace(target, write)
        self.written.append(path)

    def remove_stale(self) -> list[str]:
        """Remove the files of the last build this one did not make (and their empty
        folders); nothing else."""
        removed = []
        for path in sorted(set(self.old) - set(self.files)):
            if not _safe(path):
                continue
            target = self.out / path
            target.unlink(missing_ok=True)
            removed.append(path)
            _prune(target.parent, self.out)
        return removed


def _safe(path: str) -> bool:
    """A manifest path that stays inside the folder."""
    clean = posixpath.normpath(path)
    return clean == path and not clean.startswith(("/", "..")) and "\\" not in path


def _prune(folder: Path, root: Path) -> None:
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()  # only when empty
        except OSError:
            return
        folder = folder.parent


def _replace(target: Path, write: Callable[[Path], object]) -> None:
    """Write ``target`` through a temporary file beside it (its folder exists)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _load_manifest(out: Path) -> dict[str, Any]:
    """The last build's manifest; refuses a folder that holds something else."""
    if out.exists() and not out.is_dir():
        raise ArchiveError(f"{out} is a file, not a folder", hint="choose a folder with --out")
    path = out / MANIFEST
    if not path.exists():
        if out.exists() and any(out.iterdir()):
            raise ArchiveError(
                f"{out} is not empty and holds no archive made by `newsletter archive`",
                hint="choose a new or empty folder with --out (nothing was written)",
            )
        return {}
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # unreadable: render everything again, remove nothing
    if not isinstance(found, dict) or found.get("version") != MANIFEST_VERSION:
        return {}
    return found


def _save_manifest(out: Path, manifest: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False).encode()
    with contextlib.suppress(OSError):
        if (out / MANIFEST).read_bytes() == data:
            return  # nothing changed: leave the folder exactly as it was
    _replace(out / MANIFEST, lambda tmp: tmp.write_bytes(data))
