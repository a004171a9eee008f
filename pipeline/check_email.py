"""``newsletter check``'s rules for the email as readers get it: contrast, headings,
images, link text and the plain-text part, measured on the rendered output.

The colours come from ``templates/email/palette.toml`` (see :mod:`pipeline.palette`).
"""

from __future__ import annotations

import re

from pipeline.content import ContentModule
from pipeline.errors import LocatedError
from pipeline.images import HEAVY
from pipeline.markdown import Body, Ref, is_remote
from pipeline.palette import contrast_problems, load_palette
from pipeline.problems import Problem
from pipeline.render import Compiled, Recipient
from pipeline.settings import Settings
from pipeline.textpart import WIDTH, long_lines

IMG_RE = re.compile(r"<img\b[^>]*>", re.I)
ATTR_RE = re.compile(r'([a-zA-Z-]+)="([^"]*)"')
H_RE = re.compile(r"<h([1-6])\b", re.I)
URL_TEXT_RE = re.compile(r"^\s*(?:https?://|www\.)\S+\s*$", re.I)
VAGUE = {"here", "click here", "this", "link", "this link", "more", "read more", "click"}
ALT_STYLE = ("font-family", "font-size", "color")
# A representative reader: a token as long as a real one, for line lengths.
SAMPLE = Recipient("check", "reader@example.com", "Sample Reader", "0.Tk0NU_cfUsORZBglIhp5MQ")


def palette_problems(settings: Settings) -> list[Problem]:
    """Every text colour of the palette against its background: light and dark mode
    are errors under AA; the forced inversion of Gmail's apps is a warning."""
    try:
        palette = load_palette(settings.templates_dir)
    except LocatedError as exc:
        return [Problem(exc.path, exc.line or 0, "error", exc.detail)]
    return [
        Problem(
            str(palette.path),
            low.line,
            "warning" if low.mode == "forced dark" else "error",
            f"contrast: {low}",
        )
        for low in contrast_problems(palette)
    ]


def email_problems(settings: Settings, compiled: Compiled) -> list[Problem]:
    """The rules a machine can check on one rendered module."""
    module = compiled.module
    sample = compiled.personalize(SAMPLE, message_id="<check@localhost>")
    found = _headings(settings, module, compiled.body, sample.html)
    found += _images(settings, module, compiled.body, sample.html)
    found += _links(module, compiled.body.refs)
    found += _text_lines(module, sample.text)
    return found


def _headings(settings: Settings, module: ContentModule, body: Body, html: str) -> list[Problem]:
    path = str(module.path)
    found = []
    h1s = sum(1 for level in H_RE.findall(html) if level == "1")
    if h1s == 0:
        template = settings.templates_dir / "email" / f"{module.kind}.mjml.j2"
        found.append(
            Problem(
                str(template),
                0,
                "error",
                "the email has no <h1>: screen readers start from it; "
                "put the title in <h1> (see _hero.mjml.j2)",
            )
        )
    previous = 1  # the title
    for level, line in body.headings:
        if level == 1:
            found.append(
                Problem(
                    path,
                    line,
                    "warning",
                    "heading level 1 in the body: the title is the email's only "
                    "heading 1, so this one is shown as level 2; use '##'",
                )
            )
        elif level > previous + 1:
            found.append(
                Problem(
                    path,
                    line,
                    "warning",
                    f"heading skips from level {previous} to {level}; "
                    f"use {'#' * (previous + 1)} so headings stay in order",
                )
            )
        previous = max(level, 2)
    return found


def _images(settings: Settings, module: ContentModule, body: Body, html: str) -> list[Problem]:
    path = str(module.path)
    lines = {ref.target: ref.line for ref in body.refs if ref.kind == "image"}
    if module.image:
        lines.setdefault(module.image, module.line_of("image"))
    found = []
    for tag in IMG_RE.findall(html):
        attrs = dict(ATTR_RE.findall(tag))
        ref = _ref_of(attrs.get("src", ""), lines)
        line = lines.get(ref, 1)
        name = ref or attrs.get("src", "")
        if not (attrs.get("width", "").isdigit() and attrs.get("height", "").isdigit()):
            hint = (
                "add image_width and image_height to the front matter"
                if ref == module.image
                else "keep a copy under content/ so its size can be read"
            )
            found.append(
                Problem(
                    path,
                    line,
                    "warning",
                    f"image {name!r} has no width and height: with images off its box "
                    f"collapses; {hint}",
                )
            )
        if not set(ALT_STYLE) <= _properties(attrs.get("style", "")):
            found.append(
                Problem(
                    path,
                    line,
                    "warning",
                    f"image {name!r} has unstyled alt text (no font-family, font-size or "
                    "color): with images off it shows in the client's default font",
                )
            )
    for ref, line in lines.items():
        found += _heavy(settings, path, line, ref)
    return found


def _properties(style: str) -> set[str]:
    """The CSS properties an inline style sets."""
    return {part.partition(":")[0].strip().lower() for part in style.split(";") if ":" in part}


def _ref_of(src: str, lines: dict[str, int]) -> str:
    """The content reference (path under content/ or URL) an <img src> came from."""
    for ref in lines:
        if src == ref or src.endswith("/" + ref):
            return ref
    return ""


def _heavy(settings: Settings, path: str, line: int, ref: str) -> list[Problem]:
    if is_remote(ref):
        return []
    file = settings.content_dir / ref
    try:
        size = file.stat().st_size
    except OSError:
        return []  # missing images are reported by the front-matter and body checks
    if size <= HEAVY:
        return []
    return [
        Problem(
            path,
            line,
            "warning",
            f"image {ref!r} is {size / 1024:.0f} KB; keep images under {HEAVY // 1024} KB "
            "(resize it or save it as JPEG) so the email opens fast on a phone",
        )
    ]


def _links(module: ContentModule, refs: list[Ref]) -> list[Problem]:
    path = str(module.path)
    found = []
    for ref in refs:
        if ref.kind != "link":
            continue
        text = ref.text.strip()
        target = ref.target.removeprefix("mailto:")
        if (
            text
            and (URL_TEXT_RE.match(text) or text == target)
            and not ref.target.startswith("mailto:")
        ):
            found.append(
                Problem(
                    path,
                    ref.line,
                    "warning",
                    f"link text is a bare URL ({_short(text)}): screen readers spell it out; "
                    "say where it goes, e.g. [the full article](...)",
                )
            )
        elif text.lower().rstrip(".!") in VAGUE:
            found.append(
                Problem(
                    path,
                    ref.line,
                    "warning",
                    f"link text {text!r} does not say where it goes when read on its own; "
                    "name the page instead",
                )
            )
    return found


def _text_lines(module: ContentModule, text: str) -> list[Problem]:
    return [
        Problem(
            str(module.path),
            1,
            "warning",
            f"text part line {number} is {len(line)} characters (keep {WIDTH} or fewer): "
            f"{_short(line.strip())}",
        )
        for number, line in long_lines(text)
    ]


def _short(text: str, limit: int = 50) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
