"""Test helper: the parts of a rendered email that rules are about, parsed with the
standard library's HTMLParser (images, links, headings, the root element, the preheader)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

CAPTURE = {"a", "h1", "h2", "h3", "h4", "h5", "h6", "title"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""


@dataclass
class Parsed:
    elements: list[Element] = field(default_factory=list)
    preheader: str = ""

    def all(self, tag: str) -> list[Element]:
        return [e for e in self.elements if e.tag == tag]

    def headings(self) -> list[Element]:
        return [e for e in self.elements if e.tag in {"h1", "h2", "h3", "h4", "h5", "h6"}]


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out = Parsed()
        self.open: list[Element] = []
        self.depth = 0  # inside the hidden preheader <div>, counted in open divs
        self.preheader_done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.out.elements.append(element)
        style = element.attrs.get("style", "").replace(" ", "")
        if tag == "div":
            if self.depth:
                self.depth += 1
            elif not self.preheader_done and "display:none" in style:
                self.depth = 1
        if tag in CAPTURE:
            self.open.append(element)

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self.depth:
            self.depth -= 1
            if not self.depth:
                self.preheader_done = True
        for index in range(len(self.open) - 1, -1, -1):
            if self.open[index].tag == tag:
                del self.open[index:]
                break

    def handle_data(self, data: str) -> None:
        for element in self.open:
            element.text += data
        if self.depth:
            self.out.preheader += data


def parse(html: str) -> Parsed:
    parser = _Parser()
    parser.feed(html)
    parser.close()
    for element in parser.out.elements:
        element.text = " ".join(element.text.split())
    return parser.out
