"""One entry rendered for one reader: everything a module page shows.

The email twice from one module: as sent (images at the web app's ``/media/``, the
``.eml`` exactly as ``send --test-to`` would mail it) and for the studio (images from
the studio's own ``/media/``, so it works offline). A module that does not load or
render becomes a :class:`Failure` naming the file and line, with the lines around it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from pipeline.check import Problem
from pipeline.content import ContentModule
from pipeline.errors import LocatedError, PipelineError
from pipeline.markdown import is_remote
from pipeline.message import Message, to_bytes
from pipeline.render import compile_campaign
from pipeline.settings import Settings
from pipeline.studio.catalog import Entry
from pipeline.studio.inbox import preview_text, sender_name
from pipeline.studio.readers import Reader
from pipeline.studio.schemes import has_dark_styles

log = logging.getLogger(__name__)
CONTEXT_LINES = 3


@dataclass(frozen=True)
class Failure:
    """Why an email cannot be shown: what, where, what to do, and the lines around it."""

    message: str
    path: str = ""
    line: int | None = None
    hint: str = ""
    frame: tuple[tuple[int, str], ...] = ()

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}" if self.path and self.line else self.path


@dataclass
class Rendered:
    entry: Entry
    reader: Reader
    problems: list[Problem]
    module: ContentModule | None = None
    failure: Failure | None = None
    topic: str = ""
    subject: str = ""
    sender: str = ""
    preview: str = ""
    html: str = ""  # for the studio: local images from /media/
    text: str = ""
    eml: bytes = b""
    html_size: int = 0  # bytes of the HTML as sent to this reader
    dark_styles: bool = False
    ms: float = 0.0

    @property
    def errors(self) -> int:
        return sum(p.level == "error" for p in self.problems)

    @property
    def warnings(self) -> int:
        return sum(p.level == "warning" for p in self.problems)


def studio_assets(ref: str) -> str:
    """Local images from the studio's own /media/ (offline); remote ones as they are."""
    return ref if is_remote(ref) else "/media/" + quote(ref)


def render(settings: Settings, entry: Entry, reader: Reader) -> Rendered:
    start = time.perf_counter()
    result = Rendered(entry, reader, _problems(settings, entry))
    try:
        module = entry.load(entry.path, settings)
        if reader.topic:
            module = dataclasses.replace(module, topic=reader.topic)
        _fill(result, settings, module)
    except LocatedError as exc:
        result.failure = located_failure(exc)
    except PipelineError as exc:
        result.failure = Failure(exc.message, hint=exc.hint or "")
    except Exception as exc:  # noqa: BLE001 - a bug must not take the studio down
        log.exception("rendering %s failed", entry.path)
        result.failure = Failure(
            f"unexpected error: {type(exc).__name__}: {exc}",
            path=str(entry.path),
            hint="the traceback is in the terminal running `newsletter dev`",
        )
    result.ms = (time.perf_counter() - start) * 1000
    return result


def _problems(settings: Settings, entry: Entry) -> list[Problem]:
    """``newsletter check`` for the entry; a failure to check is shown by the render."""
    try:
        return sorted(entry.check(settings, entry.path))
    except PipelineError:
        return []
    except Exception:  # noqa: BLE001 - a bug in a check must not take the studio down
        log.exception("checking %s failed", entry.path)
        return []


def _fill(result: Rendered, settings: Settings, module: ContentModule) -> None:
    recipient = result.reader.recipient(settings.secret_key())
    sent: Message = compile_campaign(module, settings).personalize(recipient)
    shown = compile_campaign(module, settings, assets=studio_assets).personalize(recipient)
    result.module = module
    result.topic = module.topic
    result.subject = sent.subject
    result.sender = sender_name(sent.from_addr)
    result.preview = preview_text(sent.html)
    result.html = shown.html
    result.text = sent.text
    result.eml = to_bytes(sent)
    result.html_size = len(sent.html.encode("utf-8"))
    result.dark_styles = has_dark_styles(sent.html)


def located_failure(exc: LocatedError) -> Failure:
    return Failure(exc.detail, exc.path, exc.line, exc.hint or "", source_frame(exc.path, exc.line))


def source_frame(path: str, line: int | None) -> tuple[tuple[int, str], ...]:
    """The lines around ``line`` of ``path`` (empty when unreadable)."""
    if not line:
        return ()
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ()
    first = max(1, line - CONTEXT_LINES)
    last = min(len(lines), line + CONTEXT_LINES)
    return tuple((n, lines[n - 1]) for n in range(first, last + 1))
