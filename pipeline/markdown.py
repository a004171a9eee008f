"""Markdown body -> MJML fragment and plain text, from one parse.

Parsing is pulldown-cmark (Rust, through ``pyromark``): its event stream, with byte
ranges for line numbers, is folded into a small tree that two writers walk. Raw HTML
in Markdown is escaped, never passed through; links keep only http(s) and mailto
targets; every link and image is reported with its line for ``newsletter check``.
"""

from __future__ import annotations

import bisect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import urlsplit

import pyromark

from pipeline.images import Size
from pipeline.textpart import fill, underline

SAFE_SCHEMES = ("http", "https", "mailto")
WRAP = 72
OPTIONS = pyromark.Options.ENABLE_STRIKETHROUGH


@dataclass(frozen=True)
class Ref:
    """A link or image in the body, with its 1-based line in the file."""

    kind: str  # "link" | "image"
    target: str
    line: int
    alt: str = ""  # an image's alt text
    text: str = ""  # a link's text


@dataclass
class Body:
    mjml: str
    text: str
    refs: list[Ref] = field(default_factory=list)
    headings: list[tuple[int, int]] = field(default_factory=list)  # (level, line) in order


@dataclass(slots=True)
class Node:
    kind: str  # Paragraph, Heading, List, Item, BlockQuote, CodeBlock, Rule, Text, ...
    attrs: dict[str, Any] = field(default_factory=dict)
    children: list[Node] = field(default_factory=list)
    text: str = ""
    line: int = 0


def is_safe_link(href: str) -> bool:
    return urlsplit(href).scheme.lower() in SAFE_SCHEMES


def is_remote(src: str) -> bool:
    return urlsplit(src).scheme.lower() in ("http", "https")


def render_body(
    source: str,
    *,
    first_line: int = 1,
    asset_url: Callable[[str], str] = lambda s: s,
    image_size: Callable[[str], Size | None] = lambda s: None,
) -> Body:
    """Render a Markdown body. ``first_line`` is the file line where the body starts;
    ``image_size`` gives an image's pixel size (None when unknown) for its width/height."""
    root, refs = parse(source, first_line)
    writer = MjmlWriter(asset_url, image_size)
    headings = [(int(n.attrs["level"][1]), n.line) for n in _headings(root)]
    return Body(writer.blocks(root.children), to_text(root), refs, headings)


def _headings(node: Node) -> list[Node]:
    """The headings under ``node``, in order (they sit at the top or in quotes and lists)."""
    found = []
    for child in node.children:
        if child.kind == "Heading":
            found.append(child)
        elif child.kind in ("BlockQuote", "List", "Item"):
            found += _headings(child)
    return found


# --- parsing: events -> tree -------------------------------------------------------------


def _newlines(data: bytes) -> list[int]:
    """Byte offsets of every line break (bytes.find: ~20x faster than a Python loop)."""
    found = []
    index = data.find(b"\n")
    while index >= 0:
        found.append(index)
        index = data.find(b"\n", index + 1)
    return found


def _tag(value: Any) -> tuple[str, dict[str, Any]]:
    """pyromark tags are 'Name' or {'Name': detail}: split into (name, attrs)."""
    if isinstance(value, str):
        return value, {}
    name, detail = next(iter(value.items()))
    if isinstance(detail, dict):
        return name, detail
    return name, {"value": detail}


def parse(source: str, first_line: int = 1) -> tuple[Node, list[Ref]]:
    """The body as a tree, plus every link and image with its file line."""
    data = source.encode("utf-8")
    newlines = _newlines(data)
    root = Node("Root")
    stack = [root]
    refs: list[Ref] = []
    open_refs: list[int] = []  # indexes in refs of the links and images not closed yet
    for event, span in pyromark.events_with_range(source, options=OPTIONS, merge_text=True):
        line = first_line + bisect.bisect_right(newlines, span["start"] - 1)
        if isinstance(event, str):  # SoftBreak, HardBreak, Rule
            stack[-1].children.append(Node(event, line=line))
            continue
        kind, value = next(iter(event.items()))
        if kind == "Start":
            name, attrs = _tag(value)
            node = Node(name, attrs, line=line)
            stack[-1].children.append(node)
            stack.append(node)
            if name in ("Link", "Image"):
                open_refs.append(len(refs))
                refs.append(Ref(name.lower(), attrs.get("dest_url", ""), line))
        elif kind == "End":
            node = stack.pop()
            if node.kind in ("Image", "Link"):
                index = open_refs.pop()
                ref = refs[index]
                if node.kind == "Image":
                    refs[index] = Ref("image", ref.target, ref.line, alt=plain(node))
                else:
                    refs[index] = Ref("link", ref.target, ref.line, text=plain(node))
        else:  # Text, Code, Html, InlineHtml, ...
            stack[-1].children.append(Node(kind, text=value, line=line))
    return root, refs


def plain(node: Node) -> str:
    """Text content of an inline subtree (for alt text and headings)."""
    if node.kind in ("Text", "Code", "Html", "InlineHtml"):
        return node.text
    if node.kind in ("SoftBreak", "HardBreak"):
        return " "
    return "".join(plain(child) for child in node.children)


# --- MJML ----------------------------------------------------------------------------------

INLINE_TAGS = {"Emphasis": "em", "Strong": "strong", "Strikethrough": "del"}
BLOCK_TAGS = {"Paragraph": "p", "BlockQuote": "blockquote", "Item": "li"}


class MjmlWriter:
    """Top-level blocks become mj-text runs; lone images mj-image; rules mj-divider."""

    def __init__(
        self,
        asset_url: Callable[[str], str],
        image_size: Callable[[str], Size | None] = lambda s: None,
    ) -> None:
        self.asset_url = asset_url
        self.image_size = image_size

    def blocks(self, nodes: list[Node]) -> str:
        out: list[str] = []
        run: list[str] = []
        for node in nodes:
            image = _lone_image(node)
            if image is None and node.kind != "Rule":
                run.append(self.block(node))
                continue
            out.append(_mj_text(run))
            run = []
            out.append(self.mj_image(image) if image else '<mj-divider css-class="rule" />')
        out.append(_mj_text(run))
        return "\n".join(part for part in out if part)

    def block(self, node: Node) -> str:
        kind = node.kind
        if kind == "Heading":
            # The email's title is its one <h1>: a '#' heading in the body becomes <h2>.
            level = max(2, int(node.attrs["level"][1]))
            return f"<h{level}>{self.inline(node.children)}</h{level}>\n"
        if kind == "List":
            start = node.attrs.get("value")
            if start is None:
                return f"<ul>\n{self.items(node)}</ul>\n"
            attr = f' start="{start}"' if start != 1 else ""
            return f"<ol{attr}>\n{self.items(node)}</ol>\n"
        if kind == "CodeBlock":
            return f"<pre><code>{escape(plain(node))}</code></pre>\n"
        if kind == "HtmlBlock":
            return f"<p>{escape(plain(node).strip())}</p>\n"
        if kind == "Rule":
            return "<hr>\n"
        tag = BLOCK_TAGS.get(kind, "div")
        return f"<{tag}>{self.inside(node)}</{tag}>\n"

    def items(self, node: Node) -> str:
        return "".join(f"<li>{self.inside(item)}</li>\n" for item in node.children)

    def inside(self, node: Node) -> str:
        """Children of a container: blocks, or inline content of a tight list item."""
        if node.children and _is_inline(node.children[0]):
            inline = [c for c in node.children if _is_inline(c)]
            rest = [c for c in node.children if not _is_inline(c)]
            return self.inline(inline) + "".join(self.block(c) for c in rest)
        return "".join(self.block(child) for child in node.children)

    def inline(self, nodes: list[Node]) -> str:
        return "".join(self.span(node) for node in nodes)

    def span(self, node: Node) -> str:
        kind = node.kind
        if kind in ("Text", "InlineHtml", "Html"):
            return escape(node.text, quote=False)
        if kind == "Code":
            return f"<code>{escape(node.text, quote=False)}</code>"
        if kind == "SoftBreak":
            return "\n"
        if kind == "HardBreak":
            return "<br>\n"
        if kind in INLINE_TAGS:
            tag = INLINE_TAGS[kind]
            return f"<{tag}>{self.inline(node.children)}</{tag}>"
        if kind == "Link":
            return self.link(node)
        if kind == "Image":
            return self.image(node)
        return self.inline(node.children)

    def link(self, node: Node) -> str:
        href = node.attrs.get("dest_url", "")
        label = self.inline(node.children)
        if not is_safe_link(href):
            return label
        title = node.attrs.get("title")
        title_attr = f' title="{escape(title)}"' if title else ""
        return f'<a href="{escape(href)}"{title_attr}>{label}</a>'

    def image(self, node: Node) -> str:
        src = node.attrs.get("dest_url", "")
        alt = escape(plain(node))
        if "://" in src and not is_remote(src):
            return alt
        size = self.image_size(src)
        dims = f' width="{size.fit().width}" height="{size.fit().height}"' if size else ""
        return f'<img src="{escape(self.asset_url(src))}" alt="{alt}"{dims} class="inline-image">'

    def mj_image(self, node: Node) -> str:
        src = node.attrs.get("dest_url", "")
        if "://" in src and not is_remote(src):
            return ""
        title = node.attrs.get("title")
        title_attr = f' title="{escape(title)}"' if title else ""
        size = self.image_size(src)
        dims = f' width="{size.fit().width}px" height="{size.fit().height}px"' if size else ""
        return (
            f'<mj-image src="{escape(self.asset_url(src))}" alt="{escape(plain(node))}"'
            f'{title_attr}{dims} css-class="nl-image" fluid-on-mobile="true" />'
        )


def _is_inline(node: Node) -> bool:
    return node.kind not in ("Paragraph", "Heading", "List", "BlockQuote", "CodeBlock", "Rule")


def _lone_image(node: Node) -> Node | None:
    """The image of a paragraph holding only one image, else None."""
    if node.kind != "Paragraph":
        return None
    children = [c for c in node.children if not (c.kind == "Text" and not c.text.strip())]
    if len(children) == 1 and children[0].kind == "Image":
        return children[0]
    return None


def _mj_text(run: list[str]) -> str:
    return f'<mj-text css-class="body">\n{"".join(run)}</mj-text>' if run else ""


# --- plain text ----------------------------------------------------------------------------


def to_text(root: Node) -> str:
    """Readable plain text: underlined headings, indented lists, 'text (url)' links."""
    blocks = [_text_block(node, "") for node in root.children]
    return "\n\n".join(b for b in blocks if b).rstrip() + "\n"


def _text_block(node: Node, indent: str) -> str:
    kind = node.kind
    if kind == "Heading":
        title = _text_inline(node.children).strip()
        level = node.attrs["level"][1]
        if level in "12":
            return underline(title, "=" if level == "1" else "-")
        return f"{'#' * int(level)} {title}"
    if kind == "List":
        return _text_list(node, indent)
    if kind == "BlockQuote":
        inner = "\n\n".join(_text_block(c, "") for c in node.children)
        return "\n".join(f"> {line}".rstrip() for line in inner.split("\n"))
    if kind == "CodeBlock":
        return textwrap.indent(plain(node).rstrip("\n"), "    ")
    if kind == "Rule":
        return "-" * 24
    return _wrap(_text_inline(node.children).strip("\n"), indent, indent)


def _text_list(node: Node, indent: str) -> str:
    number = node.attrs.get("value")
    lines = []
    for item in node.children:
        marker = "- " if number is None else f"{number}. "
        if number is not None:
            number += 1
        lines.append(_text_item(item, indent, marker))
    return "\n".join(lines)


def _text_item(item: Node, indent: str, marker: str) -> str:
    inner = indent + " " * len(marker)
    parts = []
    inline = [c for c in item.children if _is_inline(c)]
    if inline:
        parts.append(_wrap(_text_inline(inline), indent + marker, inner))
    for child in item.children:
        if _is_inline(child):
            continue
        first = not parts
        text = (
            _text_block(child, inner)
            if child.kind != "Paragraph"
            else _wrap(_text_inline(child.children), indent + marker if first else inner, inner)
        )
        parts.append(text)
    return "\n".join(parts)


def _wrap(text: str, first: str, rest: str) -> str:
    lines: list[str] = []
    width = max(WRAP, len(rest) + 20)
    for n, para in enumerate(text.split("\n")):
        lines += fill(para, width, first if n == 0 else rest, rest) or [rest.rstrip()]
    return "\n".join(lines)


def _text_inline(nodes: list[Node]) -> str:
    out = []
    for node in nodes:
        kind = node.kind
        if kind in ("Text", "Code", "InlineHtml", "Html"):
            out.append(node.text)
        elif kind == "SoftBreak":
            out.append(" ")
        elif kind == "HardBreak":
            out.append("\n")
        elif kind == "Strong":
            out.append(f"*{_text_inline(node.children)}*")
        elif kind == "Emphasis":
            out.append(f"_{_text_inline(node.children)}_")
        elif kind == "Image":
            alt = plain(node)
            out.append(f"[Image: {alt}]" if alt else "[Image]")
        elif kind == "Link":
            out.append(_text_link(node))
        else:
            out.append(_text_inline(node.children))
    return "".join(out)


def _text_link(node: Node) -> str:
    label = _text_inline(node.children)
    href = node.attrs.get("dest_url", "")
    if not is_safe_link(href):
        return label
    target = href.removeprefix("mailto:")
    return label if label.strip() == target else f"{label} ({target})"
