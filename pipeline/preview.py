"""Write what a sample subscriber would get: SLUG.html, SLUG.txt and SLUG.eml."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.content import ContentModule
from pipeline.message import to_bytes
from pipeline.render import Recipient, compile_campaign
from pipeline.settings import Settings

SAMPLE = {"id": "preview", "email": "reader@example.com", "name": "Sample Reader"}


@dataclass(frozen=True)
class PreviewFiles:
    paths: list[Path]
    html_size: int


def write_preview(
    module: ContentModule, settings: Settings, out: Path, *, token: str
) -> PreviewFiles:
    """Render for the sample subscriber and write the three files atomically."""
    recipient = Recipient(token=token, **SAMPLE)
    local = compile_campaign(module, settings, preview=True).personalize(recipient)
    sent = compile_campaign(module, settings).personalize(recipient)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        out / f"{module.slug}.html": local.html.encode("utf-8"),
        out / f"{module.slug}.txt": local.text.encode("utf-8"),
        out / f"{module.slug}.eml": to_bytes(sent),
    }
    for path, data in files.items():
        _write_atomic(path, data)
    return PreviewFiles(list(files), len(sent.html.encode("utf-8")))


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
