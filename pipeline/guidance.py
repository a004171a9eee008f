"""What to type next, in the words of the way the user runs things.

``make`` targets call ``.venv/bin/newsletter``, which is not on PATH unless the venv is
activated; hints show the command as it can be typed in this shell.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from pipeline.errors import SendError
from pipeline.settings import Settings


def command_name() -> str:
    """How to type ``newsletter`` here: the name when it is on PATH, else the path of the
    venv's script (``.venv/bin/newsletter``, relative to the current folder if inside it).
    """
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    script = argv0 if argv0.name == "newsletter" else Path(sys.executable).parent / "newsletter"
    found = shutil.which("newsletter")
    if not script.is_file() or (found and Path(found).resolve() == script.resolve()):
        return "newsletter"
    try:
        return str(script.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(script.absolute())


def under_make() -> bool:
    return bool(os.environ.get("MAKELEVEL"))


def nobody_to_send(settings: Settings, slug: str, topic: str) -> SendError:
    """The first `make send` of a fresh clone: how to add yourself, and send, in one screen."""
    nl = command_name()
    again = f"{nl} send {slug} --yes"
    if under_make():
        again = f"make send CONTENT={slug} SEND_ARGS=--yes"
    where = (
        f"mail goes to {settings.outbox_dir}/ (provider outbox: a Maildir any mail client opens)"
        if settings.provider == "outbox"
        else f"mail goes out through {settings.provider}"
    )
    steps = "\n".join(
        [
            "to try it on yourself:",
            f"    {nl} subscribers add you@example.com --confirmed --topic {topic} "
            '--consent-source "myself, testing"',
            f"    {again}",
            f"  {where}.",
            f"  Readers sign up at {settings.base_url}/subscribe while `make serve` runs;",
            "  `make demo` shows the whole journey (signup, confirm, send) in var/demo/.",
        ]
    )
    topic_name = settings.topics[topic].name if topic in settings.topics else topic
    return SendError(
        f"nobody to send to yet: no confirmed subscribers of {topic!r} ({topic_name})",
        hint=steps,
    )
