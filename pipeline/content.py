"""Content modules: Markdown files with YAML front matter in ``content/``.

Each front-matter field has one small processor (Pelican's METADATA_PROCESSORS);
a bad value raises :class:`ContentError` naming the file and the line of the field,
e.g. ``content/x.md:3: date: expected YYYY-MM-DD``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from pipeline.errors import ContentError
from pipeline.settings import Settings

KINDS = ("update", "offer")
DEFAULT_TOPIC = {"update": "updates", "offer": "offers"}
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
DATE_PREFIX_RE = re.compile(r"^\d{4}-\d{2}-\d{2}-")
REQUIRED = ("title", "date", "kind")
DELAY_RE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# libyaml's parser when PyYAML has it: the same nodes and marks, 14x faster (the archive
# loads every sent module on each build).
COMPOSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_delay(value: object) -> dt.timedelta:
    """``3d`` -> 3 days. Minutes, hours, days or weeks; a whole number."""
    match = DELAY_RE.match(str(value))
    if not match or isinstance(value, bool):
        raise ValueError(f"expected a whole number and a unit (m, h, d, w), e.g. 3d; got {value!r}")
    amount, unit = match.groups()
    return dt.timedelta(**{UNITS[unit]: int(amount)})


def format_delay(delay: dt.timedelta) -> str:
    minutes = int(delay.total_seconds() // 60)
    for unit, size in (("w", 7 * 24 * 60), ("d", 24 * 60), ("h", 60)):
        if minutes and minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


@dataclass
class ContentModule:
    """One validated content module."""

    path: Path
    slug: str
    title: str
    date: dt.date
    kind: str
    topic: str
    subject: str
    preheader: str
    body: str
    body_line: int  # 1-based line in the file where the Markdown body starts
    url: str = ""
    image: str = ""
    image_alt: str = ""
    image_width: int = 0  # px, for a remote image (local ones are measured from the file)
    image_height: int = 0
    cta_text: str = ""
    cta_url: str = ""
    price: str = ""
    delay: dt.timedelta | None = None  # sequence steps: time after the reader confirmed
    archive: bool | None = None  # in the public archive once sent; None: the default
    lines: dict[str, int] = field(default_factory=dict)  # field -> line in the file

    def line_of(self, name: str) -> int:
        return self.lines.get(name, 1)


def _text(value: Any) -> str:
    if isinstance(value, (dict, list)) or value is None:
        raise ValueError("expected text")
    text = str(value).strip()
    if not text:
        raise ValueError("must not be empty")
    if any(ch in text for ch in "\r\n"):
        raise ValueError("must be on one line")
    return text


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ValueError("expected YYYY-MM-DD") from None


def _kind(value: Any) -> str:
    kind = _text(value)
    if kind not in KINDS:
        raise ValueError(f"expected one of {', '.join(KINDS)}, got {kind!r}")
    return kind


def _web_url(value: Any) -> str:
    url = _text(value)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http(s) URL, got {url!r}")
    return url


def _image(value: Any) -> str:
    ref = _text(value)
    if "://" in ref:
        return _web_url(ref)
    if ref.startswith("/") or ".." in Path(ref).parts:
        raise ValueError("expected a URL or a path under content/")
    return ref


def _pixels(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 10_000:
        raise ValueError(f"expected a whole number of pixels, got {value!r}")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


# field -> processor. The table is the whole front-matter schema.
PROCESSORS: dict[str, Callable[[Any], Any]] = {
    "title": _text,
    "date": _date,
    "kind": _kind,
    "topic": _text,
    "subject": _text,
    "preheader": _text,
    "url": _web_url,
    "image": _image,
    "image_alt": _text,
    "image_width": _pixels,
    "image_height": _pixels,
    "cta_text": _text,
    "cta_url": _web_url,
    "price": _text,
    "delay": parse_delay,
    "archive": _flag,  # false keeps a module out of the public archive; true lets a step in
}


def slug_for(path: Path) -> str:
    """``content/2026-11-23-hip-hinge.md`` -> ``hip-hinge``."""
    return DATE_PREFIX_RE.sub("", path.stem)


def split_front_matter(path: Path, source: str) -> tuple[str, str, int]:
    """Return (yaml text, body, body start line). The file must open with ``---``."""
    lines = source.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise ContentError(str(path), 1, "front matter: the file must start with a '---' line")
    for index, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            return "".join(lines[1:index]), "".join(lines[index + 1 :]), index + 2
    raise ContentError(str(path), 1, "front matter: no closing '---' line")


def parse_front_matter(path: Path, text: str) -> tuple[dict[str, Any], dict[str, int]]:
    """YAML mapping with the 1-based file line of each key."""
    try:
        node = yaml.compose(text, Loader=COMPOSER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise ContentError(str(path), line, f"front matter: invalid YAML: {problem}") from exc
    if node is None:
        return {}, {}
    if not isinstance(node, yaml.MappingNode):
        raise ContentError(str(path), 2, "front matter: expected 'key: value' lines")
    loader = yaml.SafeLoader("")
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = str(key_node.value)
        line = key_node.start_mark.line + 2
        if key in values:
            raise ContentError(str(path), line, f"{key}: given twice")
        try:
            values[key] = loader.construct_object(value_node, deep=True)
        except yaml.YAMLError as exc:
            raise ContentError(str(path), line, f"{key}: {exc}") from exc
        except ValueError:  # e.g. an impossible date: let the field's processor judge it
            values[key] = str(value_node.value)
        lines[key] = line
    return values, lines


def load_module(path: Path, settings: Settings) -> ContentModule:
    """Read and validate one content module."""
    try:
        source = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ContentError(str(path), None, "not UTF-8 text") from exc
    except OSError as exc:
        raise ContentError(str(path), None, f"cannot read: {exc.strerror}") from exc
    head, body, body_line = split_front_matter(path, source)
    raw, lines = parse_front_matter(path, head)
    values = _process(path, raw, lines)
    _require(path, values, lines, settings)
    kind = values["kind"]
    slug = slug_for(path)
    if not SLUG_RE.match(slug):
        raise ContentError(
            str(path), None, f"file name gives slug {slug!r}; use lowercase letters, digits, '-'"
        )
    if not body.strip():
        raise ContentError(str(path), body_line, "body: the Markdown body is empty")
    return ContentModule(
        path=path,
        slug=slug,
        title=values["title"],
        date=values["date"],
        kind=kind,
        topic=values.get("topic", DEFAULT_TOPIC[kind]),
        subject=values.get("subject", values["title"]),
        preheader=values.get("preheader") or first_sentence(body),
        body=body,
        body_line=body_line,
        url=values.get("url", ""),
        image=values.get("image", ""),
        image_alt=values.get("image_alt", ""),
        image_width=values.get("image_width", 0),
        image_height=values.get("image_height", 0),
        cta_text=values.get("cta_text", ""),
        cta_url=values.get("cta_url", ""),
        price=values.get("price", ""),
        delay=values.get("delay"),
        archive=values.get("archive"),
        lines=lines,
    )


def _process(path: Path, raw: dict[str, Any], lines: dict[str, int]) -> dict[str, Any]:
    values = {}
    for key, value in raw.items():
        processor = PROCESSORS.get(key)
        if processor is None:
            known = ", ".join(PROCESSORS)
            raise ContentError(str(path), lines[key], f"unknown field {key!r} (known: {known})")
        try:
            values[key] = processor(value)
        except ValueError as exc:
            raise ContentError(str(path), lines[key], f"{key}: {exc}") from None
    return values


def _require(path: Path, values: dict[str, Any], lines: dict[str, int], settings: Settings) -> None:
    for key in REQUIRED:
        if key not in values:
            raise ContentError(str(path), 1, f"{key}: required field is missing")
    topic = values.get("topic", DEFAULT_TOPIC[values["kind"]])
    if topic not in settings.topics:
        line = lines.get("topic", lines["kind"])
        known = ", ".join(settings.topics)
        raise ContentError(str(path), line, f"topic: unknown topic {topic!r} (known: {known})")
    if values.get("image") and not values.get("image_alt"):
        raise ContentError(
            str(path), lines["image"], "image_alt: required when image is set (describe the image)"
        )
    for key, other in (("image_width", "image_height"), ("image_height", "image_width")):
        if key in values and other not in values:
            raise ContentError(str(path), lines[key], f"{other}: required when {key} is set")
    if "image_width" in values and not values.get("image"):
        raise ContentError(
            str(path),
            lines["image_width"],
            "image_width: only used with image; add image or remove it",
        )
    if values["kind"] == "offer":
        for key in ("cta_text", "cta_url"):
            if key not in values:
                raise ContentError(
                    str(path), lines["kind"], f"{key}: an offer needs a call to action"
                )
    if bool(values.get("cta_text")) != bool(values.get("cta_url")):
        key = "cta_url" if values.get("cta_text") else "cta_text"
        other = "cta_text" if key == "cta_url" else "cta_url"
        raise ContentError(str(path), lines[other], f"{key}: required when {other} is set")


def first_sentence(body: str) -> str:
    """A plain first sentence of the body, for the default preheader."""
    for line in body.splitlines():
        text = line.strip()
        if not text or text.startswith(("#", "!", "-", "*", ">", "|", "```")) or text[0].isdigit():
            continue
        text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
        text = re.sub(r"[*_`]", "", text)
        match = re.match(r"(.+?[.!?])(\s|$)", text)
        return (match.group(1) if match else text)[:150]
    return ""


def module_paths(settings: Settings) -> list[Path]:
    return sorted(settings.content_dir.glob("*.md"))


def find_module(settings: Settings, slug: str) -> Path:
    """The file for a slug, or an error listing what exists."""
    for path in module_paths(settings):
        if slug_for(path) == slug or path.stem == slug:
            return path
    known = ", ".join(slug_for(p) for p in module_paths(settings)) or "none"
    raise ContentError(
        str(settings.content_dir), None, f"no content module {slug!r} (have: {known})"
    )


def load_all(settings: Settings, slugs: Iterable[str] = ()) -> list[ContentModule]:
    paths = [find_module(settings, s) for s in slugs] or module_paths(settings)
    return [load_module(p, settings) for p in paths]


def newest(settings: Settings) -> ContentModule:
    """The most recent module by front-matter date (then file name)."""
    paths = module_paths(settings)
    if not paths:
        raise ContentError(
            str(settings.content_dir), None, "no content modules", hint="add content/SLUG.md"
        )
    modules = [load_module(p, settings) for p in paths]
    return max(modules, key=lambda m: (m.date, m.path.name))
