"""The email as a light or a dark mail client shows it.

An ``<iframe>`` cannot be given a ``prefers-color-scheme`` of its own: Chromium (156)
matches the query in a frame against the browser's setting, and the CSS
``color-scheme`` of the ``<iframe>`` element does not change it (tested). So the studio
serves the email with each ``(prefers-color-scheme: dark|light)`` in its ``<style>``
blocks and ``media`` attributes replaced by a condition that is always or never true.
Light is then light even on a dark desktop, and Dark applies the email's own dark
rules, whatever they are. The forced inversion of Gmail's apps (which ignore these
rules) is applied in the page on top of the light variant (static/studio.js).
"""

from __future__ import annotations

import re

SCHEMES = ("light", "dark")
QUERY = re.compile(r"\(\s*prefers-color-scheme\s*:\s*(dark|light)\s*\)", re.I)
STYLE = re.compile(r"(<style\b[^>]*>)(.*?)(</style\s*>)", re.I | re.S)
MEDIA_ATTR = re.compile(r"""(\smedia\s*=\s*)(["'])(.*?)\2""", re.I | re.S)
META = re.compile(r"<meta\b[^>]*>", re.I)
CSS_SCHEME = re.compile(r"color-scheme\s*:\s*([^;}]*)", re.I)
SCHEME_METAS = ("color-scheme", "supported-color-schemes")
ALWAYS = "(min-width: 0px)"
NEVER = "(not (min-width: 0px))"


def has_dark_styles(html: str) -> bool:
    """Does the email carry rules for ``prefers-color-scheme: dark``?"""
    blocks = [m.group(2) for m in STYLE.finditer(html)]
    blocks += [m.group(3) for m in MEDIA_ATTR.finditer(html)]
    return any(m.group(1).lower() == "dark" for b in blocks for m in QUERY.finditer(b))


def declares_dark(html: str) -> bool:
    """``<meta name="color-scheme" content="light dark">`` or CSS ``color-scheme: ... dark``."""
    for tag in META.findall(html):
        name = re.search(r"""name\s*=\s*["']?([\w-]+)""", tag, re.I)
        content = re.search(r"""content\s*=\s*["']([^"']*)""", tag, re.I)
        named = name is not None and name.group(1).lower() in SCHEME_METAS
        if named and content is not None and "dark" in content.group(1).lower().split():
            return True
    styles = " ".join(m.group(2) for m in STYLE.finditer(html))
    return any("dark" in m.group(1).lower().split() for m in CSS_SCHEME.finditer(styles))


def as_scheme(html: str, scheme: str) -> str:
    """The email with its colour-scheme media queries fixed to ``scheme``."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, not {scheme!r}")

    def query(match: re.Match[str]) -> str:
        return ALWAYS if match.group(1).lower() == scheme else NEVER

    def style(match: re.Match[str]) -> str:
        return match.group(1) + QUERY.sub(query, match.group(2)) + match.group(3)

    def media(match: re.Match[str]) -> str:
        return match.group(1) + match.group(2) + QUERY.sub(query, match.group(3)) + match.group(2)

    fixed = MEDIA_ATTR.sub(media, STYLE.sub(style, html))
    # The canvas and form controls follow the scheme only where the email opts in, as
    # in Apple Mail; Light stays light on a dark desktop.
    root = "light" if scheme == "light" else ("dark" if declares_dark(html) else "")
    if not root:
        return fixed
    rule = f'<style data-studio="scheme">:root{{color-scheme:{root}}}</style>'
    head_end = re.search(r"</head\s*>", fixed, re.I)
    at = head_end.start() if head_end else 0
    return fixed[:at] + rule + fixed[at:]
