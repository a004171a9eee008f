"""Content modules: Markdown files with YAML front matter in ``content/``.

Each front-matter field has one small processor (Pelican's METADATA_PROCESSORS);
a bad value is a :class:`ContentError` naming the file and the line of the field,
e.g. ``content/x.md:3: date: expected YYYY-MM-DD``. Every problem of the front matter
is collected (:class:`ContentErrors`), so ``newsletter check`` shows them all at once.

``draft: true`` keeps a module out of "the newest" and out of ``newsletter send``;
``check`` and ``preview`` still work on it.
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

from pipeline.errors import ContentError, SendError
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
    draft: bool = False  # draft: true - not "the newest", never sent
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


class ContentErrors(ContentError):
    """Several problems in one file; ``errors`` holds each, in line order.

    Reads as the first one (``path:line: message``) plus how many more there are.
    """

    def __init__(self, errors: list[ContentError]) -> None:
        self.errors = sorted(errors, key=lambda e: e.line or 0)
        first = self.errors[0]
        more = len(self.errors) - 1
        detail = f"{first.detail} (and {more} more: run newsletter check)" if more else first.detail
        super().__init__(first.path, first.line, detail, hint=first.hint)


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
    "draft": _flag,
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


def _parse_front_matter(
    path: Path, text: str
) -> tuple[dict[str, Any], dict[str, int], list[ContentError]]:
    """Values, their lines, and the problems of individual keys (a key given twice)."""
    try:
        node = yaml.compose(text, Loader=COMPOSER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise ContentError(str(path), line, f"front matter: invalid YAML: {problem}") from exc
    if node is None:
        return {}, {}, []
    if not isinstance(node, yaml.MappingNode):
        raise ContentError(str(path), 2, "front matter: expected 'key: value' lines")
    loader = yaml.SafeLoader("")
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    errors: list[ContentError] = []
    for key_node, value_node in node.value:
        key = str(key_node.value)
        line = key_node.start_mark.line + 2
        if key in values:
            errors.append(ContentError(str(path), line, f"{key}: given twice"))
            continue
        try:
            values[key] = loader.construct_object(value_node, deep=True)
        except yaml.YAMLError as exc:
            errors.append(ContentError(str(path), line, f"{key}: {exc}"))
            continue
        except ValueError:  # e.g. an impossible date: let the field's processor judge it
            values[key] = str(value_node.value)
        lines[key] = line
    return values, lines, errors


def load_module(path: Path, settings: Settings) -> ContentModule:
    """Read and validate one content module; every front-matter problem at once."""
    try:
        source = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ContentError(str(path), None, "not UTF-8 text") from exc
    except OSError as exc:
        raise ContentError(str(path), None, f"cannot read: {exc.strerror}") from exc
    head, body, body_line = split_front_matter(path, source)
    raw, lines, errors = _parse_front_matter(path, head)
    values, problems = _process(path, raw, lines)
    errors += problems + _require(path, values, lines, settings)
    slug = slug_for(path)
    if not SLUG_RE.match(slug):
        errors.append(
            ContentError(
                str(path),
                None,
                f"file name gives slug {slug!r}; use lowercase letters, digits, '-'",
            )
        )
    if not body.strip():
        errors.append(ContentError(str(path), body_line, "body: the Markdown body is empty"))
    if errors:
        raise ContentErrors(errors)
    kind = values["kind"]
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
        draft=values.get("draft", False),
        archive=values.get("archive"),
        lines=lines,
    )


def _process(
    path: Path, raw: dict[str, Any], lines: dict[str, int]
) -> tuple[dict[str, Any], list[ContentError]]:
    values, errors = {}, []
    for key, value in raw.items():
        processor = PROCESSORS.get(key)
        if processor is None:
            known = ", ".join(PROCESSORS)
            errors.append(
                ContentError(str(path), lines[key], f"unknown field {key!r} (known: {known})")
            )
            continue
        try:
            values[key] = processor(value)
        except ValueError as exc:
            errors.append(ContentError(str(path), lines[key], f"{key}: {exc}"))
    return values, errors


def _require(
    path: Path, values: dict[str, Any], lines: dict[str, int], settings: Settings
) -> list[ContentError]:
    """Missing and inconsistent fields (a field that failed its processor counts as given)."""
    where = str(path)
    errors = [
        ContentError(where, 1, f"{key}: required field is missing")
        for key in REQUIRED
        if key not in values and key not in lines
    ]
    kind = values.get("kind")
    topic = values.get("topic", DEFAULT_TOPIC.get(kind or ""))
    if topic is not None and topic not in settings.topics:
        line = lines.get("topic", lines.get("kind", 1))
        known = ", ".join(settings.topics)
        errors.append(ContentError(where, line, f"topic: unknown topic {topic!r} (known: {known})"))
    if values.get("image") and not values.get("image_alt") and "image_alt" not in lines:
        errors.append(
            ContentError(
                where, lines["image"], "image_alt: required when image is set (describe the image)"
            )
        )
    for key, other in (("image_width", "image_height"), ("image_height", "image_width")):
        if key in values and other not in values and other not in lines:
            errors.append(ContentError(where, lines[key], f"{other}: required when {key} is set"))
    if "image_width" in values and not values.get("image") and "image" not in lines:
        errors.append(
            ContentError(
                where,
                lines["image_width"],
                "image_width: only used with image; add image or remove it",
            )
        )
    if kind == "offer":
        for key in ("cta_text", "cta_url"):
            if key not in values and key not in lines:
                errors.append(
                    ContentError(where, lines["kind"], f"{key}: an offer needs a call to action")
                )
    if bool(values.get("cta_text")) != bool(values.get("cta_url")):
        key = "cta_url" if values.get("cta_text") else "cta_text"
        other = "cta_text" if key == "cta_url" else "cta_url"
        if key not in lines:
            errors.append(ContentError(where, lines[other], f"{key}: required when {other} is set"))
    return errors


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


@dataclass(frozen=True)
class Newest:
    """The newest module ready to send, and the files passed over on the way."""

    module: ContentModule
    drafts: list[Path]
    broken: list[Path]  # older files with errors (``newsletter check`` lists them)


def pick_newest(settings: Settings) -> Newest:
    """The most recent module by front-matter date (then file name), drafts left out.

    A file with errors is passed over when it is a draft or clearly older than the
    newest good module (its date read leniently); otherwise its error stands, since it
    may well be the one the author means to send.
    """
    paths = module_paths(settings)
    if not paths:
        raise ContentError(
            str(settings.content_dir), None, "no content modules", hint="add content/SLUG.md"
        )
    good: list[ContentModule] = []
    drafts: list[Path] = []
    failed: list[tuple[Path, ContentError]] = []
    for path in paths:
        try:
            module = load_module(path, settings)
        except ContentError as exc:
            failed.append((path, exc))
            continue
        if module.draft:
            drafts.append(path)
        else:
            good.append(module)
    best = max(good, key=lambda m: (m.date, m.path.name)) if good else None
    broken = []
    for path, error in failed:
        draft, date = peek(path)
        if draft:
            drafts.append(path)
        elif (
            best is not None
            and date is not None
            and (date, path.name) < (best.date, best.path.name)
        ):
            broken.append(path)
        else:
            raise error
    if best is None:
        raise ContentError(
            str(settings.content_dir),
            None,
            f"no content module is ready to send: {len(drafts)} draft(s)",
            hint="remove `draft: true` from the module to send (preview works on drafts: "
            "newsletter preview SLUG)",
        )
    return Newest(best, drafts, broken)


def newest(settings: Settings) -> ContentModule:
    """The most recent module that is not a draft (see :func:`pick_newest`)."""
    return pick_newest(settings).module


def peek(path: Path) -> tuple[bool, dt.date | None]:
    """``(draft, date)`` of a file that may not load: front matter read leniently, the
    date from the field or else the file name's ``YYYY-MM-DD-`` prefix."""
    try:
        head = split_front_matter(path, path.read_text(encoding="utf-8", errors="replace"))[0]
    except ContentError:
        head = ""
    found = dict(re.findall(r"(?m)^(draft|date)\s*:\s*(\S+)", head))
    draft = found.get("draft", "").strip("'\"").lower() in ("true", "yes", "on")
    for raw in (found.get("date", "").strip("'\""), path.name[:10]):
        try:
            return draft, dt.date.fromisoformat(raw)
        except ValueError:
            continue
    return draft, None


def refuse_draft(module: ContentModule) -> None:
    """A draft is never mailed to the list (``send --test-to`` to yourself is fine)."""
    if module.draft:
        raise SendError(
            f"{module.path} is a draft (draft: true): not sent",
            hint=f"remove the draft line to send it; to see it first: newsletter preview "
            f"{module.slug}, or newsletter send {module.slug} --test-to YOU@example.com",
        )
