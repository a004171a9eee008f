"""What the studio lists: every content module, each under a key used in its URL.

Each source is a function from settings to entries. Content modules (``content/*.md``)
are the first; sequence steps (``content/sequences/<name>/*.md``) become one more
function in ``SOURCES`` with their own group, loader and checker.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.check import Problem, check_module
from pipeline.content import ContentModule, load_module, module_paths, slug_for
from pipeline.sequences import sequence_names, step_name, step_paths
from pipeline.settings import Settings

Loader = Callable[[Path, Settings], ContentModule]
Checker = Callable[[Settings, Path], list[Problem]]
MODULES = "Content modules"


@dataclass(frozen=True)
class Entry:
    """One thing the studio can show: a file that renders to an email."""

    key: str  # in URLs: /m/<key>; a slug, or a path such as sequences/welcome/01-hello
    path: Path
    group: str = MODULES  # the heading it is listed under
    load: Loader = load_module
    check: Checker = check_module

    @property
    def slug(self) -> str:
        return slug_for(self.path)


def content_modules(settings: Settings) -> list[Entry]:
    """``content/*.md``, keyed by slug (by file name when two files share a slug)."""
    paths = module_paths(settings)
    slugs = Counter(slug_for(p) for p in paths)
    return [Entry(slug_for(p) if slugs[slug_for(p)] == 1 else p.stem, p) for p in paths]


def sequence_steps(settings: Settings) -> list[Entry]:
    """``content/sequences/<name>/*.md``, keyed ``<name>/<step>``, one group per sequence."""
    return [
        Entry(f"{name}/{step_name(p)}", p, group=f"Sequence: {name}")
        for name in sequence_names(settings)
        for p in step_paths(settings, name)
    ]


SOURCES: list[Callable[[Settings], list[Entry]]] = [content_modules, sequence_steps]


def entries(settings: Settings) -> list[Entry]:
    return [entry for source in SOURCES for entry in source(settings)]


def find_entry(settings: Settings, key: str) -> Entry | None:
    return next((e for e in entries(settings) if e.key == key), None)
