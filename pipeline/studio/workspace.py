"""The studio's state: settings, a version every change bumps, and a render cache.

The watcher calls :meth:`Workspace.changed` with the saved paths; that reloads
``newsletter.toml`` when it is among them (keeping the last good settings while it is
broken), bumps the version, empties the cache and wakes every event stream. Pages
render through the cache, so the page and its email frame share one render.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pipeline.check import Problem, check_templates
from pipeline.content import DATE_PREFIX_RE
from pipeline.errors import PipelineError
from pipeline.settings import Settings, load_settings
from pipeline.studio import catalog
from pipeline.studio.catalog import Entry
from pipeline.studio.editor import editor_template
from pipeline.studio.readers import Reader, StoreReader, sample
from pipeline.studio.rendering import Failure, Rendered, render

CACHE_SIZE = 64
T = TypeVar("T")


@dataclass(frozen=True)
class Change:
    version: int
    paths: tuple[str, ...]
    at: dt.datetime


class Workspace:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.editor = editor_template(settings.editor, settings.env)
        self.config_failure: Failure | None = None
        self.store = StoreReader(settings)
        self.version = 1
        self.last_change: Change | None = None
        self.closed = False
        self._cond = threading.Condition()
        self._cache: OrderedDict[tuple[object, ...], object] = OrderedDict()
        self._cache_lock = threading.Lock()

    # ---- what is watched, and what a change does -----------------------------------

    def watched_dirs(self) -> list[Path]:
        return [p for p in (self.settings.content_dir, self.settings.templates_dir) if p.is_dir()]

    def changed(self, paths: Iterable[Path | str]) -> int:
        """Note a batch of saved files; returns the new version."""
        names = tuple(sorted(str(p) for p in paths))
        config = self.settings.config_path
        if config is not None and str(config.resolve()) in {str(Path(n).resolve()) for n in names}:
            self._reload_settings()
        with self._cond:
            self.version += 1
            self.last_change = Change(self.version, names, dt.datetime.now())
            with self._cache_lock:
                self._cache.clear()
            self._cond.notify_all()
            return self.version

    def _reload_settings(self) -> None:
        old = self.settings
        try:
            new = load_settings(old.config_path, env=old.env)
            editor = editor_template(new.editor, new.env)
        except PipelineError as exc:
            path = str(old.config_path)
            self.config_failure = Failure(exc.message, path=path, hint=exc.hint or "")
            return
        self.settings, self.editor, self.config_failure = new, editor, None
        if new.database_url != old.database_url:
            self.store.close()
            self.store = StoreReader(new)

    def wait(self, seen: int, timeout: float) -> int:
        """Block until the version differs from ``seen`` (or timeout, or close)."""
        with self._cond:
            self._cond.wait_for(lambda: self.version != seen or self.closed, timeout)
            return self.version

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        self.store.close()

    # ---- reading, through the cache ------------------------------------------------

    def entries(self) -> list[Entry]:
        return self._cached(("entries",), lambda: catalog.entries(self.settings))

    def find(self, key: str) -> Entry | None:
        return next((e for e in self.entries() if e.key == key), None)

    def render(self, entry: Entry, reader: Reader) -> Rendered:
        return self._cached(("render", entry, reader), lambda: render(self.settings, entry, reader))

    def template_problems(self) -> list[Problem]:
        return self._cached(("templates",), lambda: check_templates(self.settings))

    def overview(self) -> list[Rendered]:
        """Every entry for the default sample reader, newest first."""
        reader = sample(self.settings, "sample")
        rows = [self.render(e, reader) for e in self.entries()]
        return sorted(rows, key=_date_and_name, reverse=True)

    def _cached(self, key: tuple[object, ...], make: Callable[[], T]) -> T:
        version = self.version
        full = (version, *key)
        with self._cache_lock:
            if full in self._cache:
                self._cache.move_to_end(full)
                return self._cache[full]  # type: ignore[return-value]
        value = make()
        with self._cache_lock:
            if version == self.version:
                self._cache[full] = value
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return value


def _date_and_name(row: Rendered) -> tuple[str, str]:
    if row.module is not None:
        date = row.module.date.isoformat()
    else:  # a module that does not load: the date in its file name, if any
        match = DATE_PREFIX_RE.match(row.entry.path.name)
        date = match.group(0)[:10] if match else ""
    return (date, row.entry.path.name)
