"""Links from a check message to its file and line in the author's editor.

``[studio] editor`` in newsletter.toml (or ``NEWSLETTER_EDITOR``) names a known editor
or gives a URL with ``{path}`` and ``{line}``; without it, ``$VISUAL`` / ``$EDITOR`` is
recognised when it is an editor with a URL scheme. Otherwise the studio links to its
own read-only view of the file at that line.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, urlsplit

from pipeline.errors import ConfigError

SCHEMES = {
    "vscode": "vscode://file/{path}:{line}",
    "vscode-insiders": "vscode-insiders://file/{path}:{line}",
    "vscodium": "vscodium://file/{path}:{line}",
    "cursor": "cursor://file/{path}:{line}",
    "windsurf": "windsurf://file/{path}:{line}",
    "zed": "zed://file/{path}:{line}",
    "sublime": "subl://open?url=file://{path}&line={line}",
    "textmate": "txmt://open?url=file://{path}&line={line}",
    "macvim": "mvim://open?url=file://{path}&line={line}",
    "pycharm": "pycharm://open?file={path}&line={line}",
    "idea": "idea://open?file={path}&line={line}",
}
# $EDITOR commands -> the editor whose URL scheme opens a file at a line.
COMMANDS = {
    "code": "vscode",
    "code-insiders": "vscode-insiders",
    "codium": "vscodium",
    "cursor": "cursor",
    "windsurf": "windsurf",
    "zed": "zed",
    "subl": "sublime",
    "sublime_text": "sublime",
    "mate": "textmate",
    "mvim": "macvim",
    "pycharm": "pycharm",
    "charm": "pycharm",
    "idea": "idea",
}
UNSAFE_SCHEMES = frozenset({"javascript", "data", "vbscript", "file", "http", "https"})


def editor_template(setting: str, env: Mapping[str, str]) -> str | None:
    """The URL template for file links, or None for the studio's own file view."""
    choice = (env.get("NEWSLETTER_EDITOR") or setting).strip()
    if choice:
        return _template(choice)
    for variable in ("VISUAL", "EDITOR"):
        try:
            words = shlex.split(env.get(variable, ""))
        except ValueError:
            continue
        command = Path(words[0]).name if words else ""
        if command in COMMANDS:
            return SCHEMES[COMMANDS[command]]
    return None


def _template(choice: str) -> str:
    if choice in SCHEMES:
        return SCHEMES[choice]
    scheme = urlsplit(choice).scheme.lower()
    if "{path}" not in choice or not scheme or scheme in UNSAFE_SCHEMES:
        raise ConfigError(
            f"[studio] editor {choice!r} is neither a known editor nor an editor URL",
            hint=f"use one of {', '.join(SCHEMES)}, or a URL such as "
            "'myeditor://open?file={path}&line={line}' (NEWSLETTER_EDITOR overrides it)",
        )
    return choice


def editor_url(template: str, path: str | Path, line: int | None) -> str:
    """``template`` filled for one file and line (the path percent-encoded)."""
    absolute = quote(str(Path(path).resolve()), safe="/:\\")
    return template.replace("{path}", absolute).replace("{line}", str(line or 1))
