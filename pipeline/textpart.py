"""The plain-text part's layout: lines of at most 78 characters, URLs never broken.

RFC 5322 asks for lines of at most 78 characters; plain-text readers (and quoting in
replies) depend on it. A URL is one word: it moves to a line of its own rather than
being split, so it still works when clicked or copied.
"""

from __future__ import annotations

import re

WIDTH = 78
URL_RE = re.compile(r"(?:https?://|mailto:)\S+")
WHITESPACE_RE = re.compile(r"[\t\n\x0b\x0c\r ]+")  # not the no-break space
# What a wrapped line repeats (quote marks) and how far it hangs (list markers).
PREFIX_RE = re.compile(r"((?:> ?)*)( *)((?:[-*] |\d+\. )?)")


def wrap_text(text: str, width: int = WIDTH) -> str:
    """Every line over ``width`` wrapped at spaces, keeping its quote marks and list hang.

    Code (lines indented by four spaces) and single words longer than the width (a long
    URL) are left whole: breaking them would change what they say.
    """
    lines = text.split("\n")
    if all(len(line) <= width for line in lines):
        return text
    out: list[str] = []
    for line in lines:
        out += _wrap_line(line, width) if len(line) > width else [line]
    return "\n".join(out)


def _wrap_line(line: str, width: int) -> list[str]:
    found = PREFIX_RE.match(line)
    assert found is not None  # the pattern matches the empty string
    quote, indent, marker = found.groups()
    if len(indent) >= 4 and not marker:
        return [line]  # code block
    first = quote + indent + marker
    hang = quote + indent + " " * len(marker)
    return fill(line[len(first) :], width, first, hang) or [line]


def fill(text: str, width: int = WIDTH, first: str = "", rest: str = "") -> list[str]:
    """Words of ``text`` on lines of at most ``width`` (greedy), the first line starting
    with ``first`` and the others with ``rest``. A word longer than a line (a URL) gets
    a line of its own, unbroken; words split only at ASCII whitespace, so a no-break
    space holds. textwrap.wrap with break_long_words=False, at a fifth of the cost."""
    words = [word for word in WHITESPACE_RE.split(text) if word]
    if not words:
        return []
    lines = []
    line = first + words[0]
    for word in words[1:]:
        if len(line) + 1 + len(word) <= width:
            line = f"{line} {word}"
        else:
            lines.append(line)
            line = rest + word
    lines.append(line)
    return lines


def underline(title: str, char: str = "=", width: int = WIDTH) -> str:
    """A heading on lines of at most ``width``, underlined as long as its longest line."""
    lines = fill(title, width) or [""]
    return "\n".join(lines) + "\n" + char * max(len(line) for line in lines)


def long_lines(text: str, width: int = WIDTH) -> list[tuple[int, str]]:
    """(1-based line number, line) of each line over ``width`` that is not a lone URL."""
    return [
        (number, line)
        for number, line in enumerate(text.split("\n"), start=1)
        if len(line) > width and not URL_RE.fullmatch(line.strip().strip("()<>.,;:"))
    ]
