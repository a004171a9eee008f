"""Sizes of the images in an email, so every ``<img>`` carries its real width and height.

A client that blocks images (Outlook, many corporate inboxes) still lays the email out
with the image's box, its styled alt text inside, instead of collapsing it. Local images
are measured from the file (Pillow reads only the header); remote ones take
``image_width``/``image_height`` from the front matter, or stay unsized (``check`` warns).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

COLUMN = 552  # px: the 600 px email minus the card's 24 px padding on each side
HEAVY = 200 * 1024  # bytes: an image over this slows the email down on a phone


@dataclass(frozen=True)
class Size:
    width: int
    height: int

    def fit(self, max_width: int = COLUMN) -> Size:
        """The size shown in a column ``max_width`` wide (never scaled up)."""
        if self.width <= max_width:
            return self
        return Size(max_width, max(1, round(self.height * max_width / self.width)))


def image_size(path: Path) -> Size | None:
    """The pixel size of an image file, or None when it is missing or not an image."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return _measure(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=256)
def _measure(path: Path, mtime_ns: int, size: int) -> Size | None:
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    return Size(width, height) if width > 0 and height > 0 else None
