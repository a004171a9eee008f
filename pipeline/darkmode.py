"""Dark-mode views of a rendered email, for previews in an ordinary browser.

The email carries its own dark mode (``prefers-color-scheme`` styles and Outlook.com's
``data-ogsc``/``data-ogsb`` rules, built from ``templates/email/palette.toml``). A
preview tool shows it with :func:`dark_preview`, whatever the author's own system is
set to, and shows what Gmail's and Outlook's apps do to an email (they ignore those
styles and invert the colours) with :func:`forced_dark_preview`.
"""

from __future__ import annotations

import re

DARK_MEDIA_RE = re.compile(r"@media\s*\(\s*prefers-color-scheme\s*:\s*dark\s*\)", re.I)
SCHEME_META_RE = re.compile(
    r'(<meta\s+name="(?:color-scheme|supported-color-schemes)"\s+content=")[^"]*(")', re.I
)
STYLE_RE = re.compile(r"<style\b[^>]*>(.*?)</style>", re.S | re.I)
# How Gmail's and Outlook's apps show an email without a dark mode of their own: colours
# inverted with their hues kept; images are left as they are.
FORCED_DARK_CSS = (
    "html { background: #ffffff; filter: invert(1) hue-rotate(180deg); }\n"
    "img { filter: invert(1) hue-rotate(180deg); }\n"
)


def dark_preview(html: str) -> str:
    """The email as a client in dark mode shows it (Apple Mail, Outlook apps ...),
    in any browser: its dark-mode styles apply unconditionally."""
    html = DARK_MEDIA_RE.sub("@media all", html)
    return SCHEME_META_RE.sub(r"\1dark\2", html)


def forced_dark_preview(html: str) -> str:
    """The email under a forced inversion (Gmail's apps): its own dark styles are
    ignored, its light colours inverted."""
    html = DARK_MEDIA_RE.sub("@media not all", html)
    return _add_style(SCHEME_META_RE.sub(r"\1light\2", html), FORCED_DARK_CSS)


def dark_styles(html: str) -> str:
    """The dark-mode styles a rendered email carries (empty when it has none); the
    styles of any email are also :func:`pipeline.render.dark_mode_css`."""
    blocks = STYLE_RE.findall(html)
    return "\n".join(b.strip() for b in blocks if "prefers-color-scheme" in b or "data-og" in b)


def _add_style(html: str, css: str) -> str:
    style = f"<style>{css}</style>"
    head_end = html.find("</head>")
    if head_end < 0:
        return style + html
    return html[:head_end] + style + html[head_end:]
