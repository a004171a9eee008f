"""Sequences: series of emails a reader gets at set times after confirming, as files.

``content/sequences/<name>/`` holds ordinary content modules whose front matter adds
``delay`` (``0d``, ``2h``, ``3d``, ``90m``, ``1w``: time after the reader confirmed) and,
optionally, ``topic`` (only readers of that topic; without it, every confirmed reader).
Steps are ordered by delay, then file name. Each step is sent as its own campaign
through the ledger, so every reader gets each step at most once, whatever happens.

A step's campaign slug is ``<sequence>/<step slug>`` and its topic is the step's topic,
or :data:`ANY_TOPIC` for every confirmed reader.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.content import (
    ContentModule,
    find_module,
    format_delay,
    load_module,
    parse_delay,
    slug_for,
)
from pipeline.errors import ContentError
from pipeline.settings import ALL_TOPICS, Settings

SEQUENCES_DIR = "sequences"
ANY_TOPIC = ALL_TOPICS  # a step without a topic: every confirmed reader
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
ORDER_PREFIX = re.compile(r"^\d+-(?=[a-z0-9])")  # 01-welcome.md is the step "welcome"
__all__ = ["ANY_TOPIC", "Sequence", "Step", "format_delay", "load_sequence", "parse_delay"]


@dataclass(frozen=True)
class Step:
    """One email of a sequence."""

    sequence: str
    module: ContentModule
    delay: dt.timedelta
    topic: str  # a topic, or ANY_TOPIC

    @property
    def name(self) -> str:
        """The step's own name: the file name without ``.md`` and an ``01-`` prefix."""
        return step_name(self.module.path)

    @property
    def slug(self) -> str:
        """The campaign slug: ``welcome/hello``."""
        return f"{self.sequence}/{self.name}"

    @property
    def path(self) -> Path:
        return self.module.path


@dataclass(frozen=True)
class Sequence:
    name: str
    path: Path
    steps: list[Step]


def step_name(path: Path) -> str:
    return ORDER_PREFIX.sub("", slug_for(path))


def sequences_dir(settings: Settings) -> Path:
    return settings.content_dir / SEQUENCES_DIR


def sequence_names(settings: Settings) -> list[str]:
    root = sequences_dir(settings)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.md")))


def step_paths(settings: Settings, name: str | None = None) -> list[Path]:
    """Every step file (of one sequence, or of all), in directory order."""
    names = [name] if name else sequence_names(settings)
    return [p for n in names for p in sorted((sequences_dir(settings) / n).glob("*.md"))]


def load_sequence(settings: Settings, name: str) -> Sequence:
    """A sequence and its steps in order; ContentError names the first bad file."""
    folder = sequences_dir(settings) / name
    if not NAME_RE.match(name):
        raise ContentError(
            str(folder), None, f"sequence name {name!r}: use lowercase letters, digits, '-'"
        )
    if not folder.is_dir():
        known = ", ".join(sequence_names(settings)) or "none"
        raise ContentError(str(folder), None, f"no sequence {name!r} (have: {known})")
    steps = [load_step(settings, path, name) for path in sorted(folder.glob("*.md"))]
    steps.sort(key=lambda s: (s.delay, s.path.name))
    return Sequence(name, folder, steps)


def load_sequences(settings: Settings) -> list[Sequence]:
    return [load_sequence(settings, name) for name in sequence_names(settings)]


def load_step(settings: Settings, path: Path, sequence: str | None = None) -> Step:
    """One step: a content module that must say its ``delay``."""
    module = load_module(path, settings)
    if module.delay is None:
        raise ContentError(
            str(path), 1, "delay: required for a sequence step (time after confirming, e.g. 0d)"
        )
    topic = module.topic if "topic" in module.lines else ANY_TOPIC
    return Step(sequence or path.parent.name, module, module.delay, topic)


def is_step(settings: Settings, path: Path) -> bool:
    return sequences_dir(settings) in path.resolve().parents


def find_step(settings: Settings, slug: str) -> Path:
    """``welcome/hello`` (or ``welcome/01-hello``) -> its file."""
    name, _, step = slug.partition("/")
    for path in step_paths(settings, name) if name in sequence_names(settings) else []:
        if step in (step_name(path), slug_for(path), path.stem):
            return path
    raise ContentError(str(sequences_dir(settings)), None, f"no sequence step {slug!r}")


def find_any(settings: Settings, slug: str) -> Path:
    """A content module (``hip-hinge``) or a sequence step (``welcome/hello``)."""
    return find_step(settings, slug) if "/" in slug else find_module(settings, slug)
