"""Campaign compile time (median, warm) and per-recipient personalisation throughput."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from bench import Row
from pipeline.content import find_module, load_module
from pipeline.render import Recipient, compile_campaign
from pipeline.settings import load_settings

REPO = Path(__file__).resolve().parent.parent


def run() -> list[Row]:
    settings = load_settings(REPO / "newsletter.toml", env={"NEWSLETTER_SECRET_KEY": "bench"})
    module = load_module(find_module(settings, "hip-hinge"), settings)
    compiled = compile_campaign(module, settings)  # warm: templates loaded, parsers ready
    timings = []
    for _ in range(200):
        start = time.perf_counter()
        compile_campaign(module, settings)
        timings.append((time.perf_counter() - start) * 1000)
    recipients = [
        Recipient(i, f"reader{i}@example.com", f"Reader <{i}> O'Neil", f"tok{i:08d}")
        for i in range(50_000)
    ]
    start = time.perf_counter()
    for recipient in recipients:
        compiled.personalize(recipient)
    rate = len(recipients) / (time.perf_counter() - start)
    return [
        Row(
            "render",
            "campaign compile, seed (median)",
            statistics.median(timings),
            "ms",
            "<= 2",
            "Markdown + Jinja2 + MJML + css-inline",
        ),
        Row(
            "render",
            "personalise per recipient",
            rate,
            "msg/s",
            ">= 10000",
            "HTML + text + headers, 50k recipients",
        ),
    ]
