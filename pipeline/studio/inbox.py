"""How an inbox lists the email: sender, subject and the first characters of its text.

Mail clients show the text at the start of the HTML body, hidden preheader first, then
whatever visible text follows when the preheader is short ("View in your browser" ...).
Zero-width fillers that templates add to stop that are dropped, as clients do.
"""

from __future__ import annotations

import re
from email.utils import parseaddr
from html.parser import HTMLParser

PREVIEW_CHARS = 90
SKIP = frozenset({"head", "style", "script", "title", "template"})
BREAKS = frozenset({"br", "p", "div", "td", "tr", "li", "h1", "h2", "h3", "h4", "table"})
FILLERS = dict.fromkeys(map(ord, "\u034f\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
SPACE = re.compile(r"\s+")


class _BodyText(HTMLParser):
    def __init__(self, limit: int) -> None:
        super().__init__(convert_charrefs=True)
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIP:
            self.skipping += 1
        elif tag in BREAKS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIP and self.skipping:
            self.skipping -= 1
        elif tag in BREAKS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self.skipping and self.size <= self.limit * 4:
            self.parts.append(data)
            self.size += len(data)


def preview_text(html: str, limit: int = PREVIEW_CHARS) -> str:
    """The first ``limit`` characters an inbox shows after the subject."""
    parser = _BodyText(limit)
    parser.feed(html)
    text = SPACE.sub(" ", "".join(parser.parts).translate(FILLERS).replace("\xa0", " "))
    return text.strip()[:limit].rstrip()


def sender_name(from_addr: str) -> str:
    """What the From column shows: the display name, else the address."""
    name, address = parseaddr(from_addr)
    return name or address
