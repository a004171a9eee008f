"""``newsletter check``: everything that would make a content module go out wrong.

Each problem is ``path:line: error|warning: message``. Errors block a send; warnings
are worth a look (a long subject, an email getting close to Gmail's clipping size).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.check_email import email_problems, palette_problems
from pipeline.content import ContentModule, load_module
from pipeline.errors import LocatedError
from pipeline.markdown import Ref, is_remote, is_safe_link
from pipeline.problems import Problem
from pipeline.render import compile_campaign, template_env
from pipeline.sequences import is_step
from pipeline.settings import Settings

__all__ = ["Problem", "check_module", "check_paths", "check_templates"]

SUBJECT_MAX = 78
HTML_WARN = 90 * 1024
HTML_MAX = 102 * 1024  # Gmail clips above ~102 KB and hides the unsubscribe link


def check_paths(settings: Settings, paths: list[Path]) -> list[Problem]:
    """Problems in the templates and in each given content module."""
    problems = check_templates(settings)
    for path in paths:
        problems += check_module(settings, path)
    return problems


def check_templates(settings: Settings) -> list[Problem]:
    env = template_env(settings.templates_dir)
    problems = []
    for name in env.list_templates(filter_func=lambda n: n.endswith(".j2")):
        try:
            env.get_template(name)
        except LocatedError as exc:
            problems.append(Problem(exc.path, exc.line or 0, "error", exc.detail))
        except Exception as exc:  # noqa: BLE001 - jinja syntax errors of any kind
            line = getattr(exc, "lineno", 0) or 0
            path = str(settings.templates_dir / "email" / name)
            problems.append(Problem(path, line, "error", getattr(exc, "message", str(exc))))
    return problems + palette_problems(settings)


def check_module(settings: Settings, path: Path) -> list[Problem]:
    try:
        module = load_module(path, settings)
        compiled = compile_campaign(module, settings)
    except LocatedError as exc:  # ContentErrors: every front-matter problem of the file
        found = getattr(exc, "errors", None) or [exc]
        return [Problem(e.path, e.line or 0, "error", e.detail) for e in found]
    problems = _sequence(settings, module) + _front_matter(settings, module)
    problems += _body(settings, module, compiled.body.refs)
    problems += _size(module, compiled.html_size)
    return problems + email_problems(settings, compiled)


def _sequence(settings: Settings, module: ContentModule) -> list[Problem]:
    """A step needs its delay; a delay outside content/sequences/ does nothing."""
    path = str(module.path)
    in_sequence = is_step(settings, module.path)
    if in_sequence and module.delay is None:
        return [Problem(path, 1, "error", "delay: required for a sequence step (e.g. 0d, 2d)")]
    if not in_sequence and module.delay is not None:
        line = module.line_of("delay")
        return [Problem(path, line, "warning", "delay: only steps in content/sequences/ use it")]
    return []


def _front_matter(settings: Settings, module: ContentModule) -> list[Problem]:
    path = str(module.path)
    problems = []
    if len(module.subject) > SUBJECT_MAX:
        line = module.lines.get("subject", module.lines.get("title", 1))
        problems.append(
            Problem(
                path,
                line,
                "warning",
                f"subject is {len(module.subject)} characters; "
                f"keep it under {SUBJECT_MAX} so inboxes do not cut it off",
            )
        )
    if module.image and not is_remote(module.image):
        problems += _local_image(settings, path, module.lines["image"], module.image)
    return problems


def _body(settings: Settings, module: ContentModule, refs: list[Ref]) -> list[Problem]:
    path = str(module.path)
    problems = []
    for ref in refs:
        if ref.kind == "link" and not is_safe_link(ref.target):
            problems.append(
                Problem(
                    path,
                    ref.line,
                    "error",
                    f"link {ref.target!r} is not http(s) or mailto; use a full URL",
                )
            )
        if ref.kind == "image":
            if not ref.alt.strip():
                problems.append(
                    Problem(
                        path,
                        ref.line,
                        "error",
                        f"image {ref.target!r} has no alt text: ![describe it]({ref.target})",
                    )
                )
            if "://" in ref.target and not is_remote(ref.target):
                problems.append(
                    Problem(path, ref.line, "error", f"image {ref.target!r} is not an http(s) URL")
                )
            elif not is_remote(ref.target):
                problems += _local_image(settings, path, ref.line, ref.target)
    return problems


def _local_image(settings: Settings, path: str, line: int, ref: str) -> list[Problem]:
    target = (settings.content_dir / ref).resolve()
    inside = target.is_relative_to(settings.content_dir.resolve())
    if not inside or not target.is_file():
        return [Problem(path, line, "error", f"image {ref!r} not found under content/")]
    return []


def _size(module: ContentModule, size: int) -> list[Problem]:
    path = str(module.path)
    kb = size / 1024
    if size > HTML_MAX:
        return [
            Problem(
                path,
                1,
                "error",
                f"HTML is {kb:.0f} KB; Gmail clips emails over "
                "102 KB and hides the unsubscribe link. Shorten the module.",
            )
        ]
    if size > HTML_WARN:
        return [Problem(path, 1, "warning", f"HTML is {kb:.0f} KB; Gmail clips at 102 KB")]
    return []
