"""`newsletter archive`: a full build of 200 sent issues, and incremental rebuilds.

A throwaway project holds 200 content modules (the seed article's body, each with the
hero image) sent through the ledger of a real SQLite store (one reader each). Each
figure is what the command does after reading settings: ask the ledger what was sent,
load the modules, and write the folder.

1. Full build into an empty folder.
2. Rebuild with nothing changed (nothing is rendered or written).
3. Rebuild after the newest module was edited (its page and the feed are written).
4. Rebuild after a new issue was sent (its page, its neighbour, the lists, the feed).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench import Row
from pipeline.archive import sent_issues
from pipeline.archive_build import Report, build
from pipeline.send import Outcome
from pipeline.settings import Settings, load_settings
from subscribers.forms import render_form
from subscribers.ledger import Ledger
from subscribers.models import Consent, NewSubscriber
from subscribers.store import Store

REPO = Path(__file__).resolve().parent.parent
ISSUES = 200
ROUNDS = 7
SEED = REPO / "content" / "2026-11-23-hip-hinge.md"


def run() -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench-archive-") as tmp:
        settings = _project(Path(tmp))
        with Store.from_settings(settings) as store:
            ledger = Ledger(store)
            _send_all(settings, store, ledger)
            return _measure(settings, ledger)


def _project(root: Path) -> Settings:
    shutil.copytree(REPO / "templates", root / "templates")
    shutil.copy(REPO / "newsletter.toml", root / "newsletter.toml")
    (root / "content" / "images").mkdir(parents=True)
    shutil.copy(REPO / "content" / "images" / "hip-hinge.png", root / "content" / "images")
    for n in range(ISSUES + 1):
        _write(root, n)
    return load_settings(root / "newsletter.toml", env={"NEWSLETTER_SECRET_KEY": "bench"})


def _write(root: Path, n: int, extra: str = "") -> None:
    text = SEED.read_text().replace(
        "title: Master the Hip Hinge", f"title: Issue {n} - Master the Hip Hinge"
    )
    (root / "content" / f"issue-{n:03d}.md").write_text(text + extra)


def _send_all(settings: Settings, store: Store, ledger: Ledger) -> None:
    consent = Consent(kind="import", source="bench", wording="bench")
    store.add_many(
        [NewSubscriber("r@example.com", "R", ("updates",))], confirmed=True, consent=consent
    )
    for n in range(ISSUES):
        _send(ledger, f"issue-{n:03d}")


def _send(ledger: Ledger, slug: str) -> None:
    campaign, _ = ledger.open_campaign(
        slug=slug, topic="updates", subject=slug, content_hash="h", provider="outbox"
    )
    batch = ledger.claim(campaign.id, 10, "updates")
    assert batch is not None
    ledger.record(campaign.id, batch.claim, [Outcome(row[0], "sent") for row in batch.rows])


def _build(settings: Settings, ledger: Ledger, out: Path) -> tuple[float, Report]:
    start = time.perf_counter()
    selection = sent_issues(settings, ledger)
    report = build(settings, selection, out, form_html=render_form(settings, "archive"))
    return (time.perf_counter() - start) * 1000, report


def _measure(settings: Settings, ledger: Ledger) -> list[Row]:
    out = settings.var_dir / "archive"
    full = []
    for _ in range(3):
        shutil.rmtree(out, ignore_errors=True)
        full.append(_build(settings, ledger, out)[0])
    same = [_build(settings, ledger, out)[0] for _ in range(ROUNDS)]
    edited, written = [], 0
    for n in range(ROUNDS):
        _write(settings.root, ISSUES - 1, extra=f"\nEdit number {n}.\n")  # the newest
        took, report = _build(settings, ledger, out)
        edited.append(took)
        written = len(report.written)
    _send(ledger, f"issue-{ISSUES:03d}")
    sent_ms, sent_report = _build(settings, ledger, out)
    note = f"{ISSUES} issues, SQLite ledger"
    return [
        Row(
            "archive",
            f"full build, {ISSUES} issues (median)",
            statistics.median(full),
            "ms",
            "<= 3000",
            note,
        ),
        Row(
            "archive",
            "rebuild, nothing changed (median)",
            statistics.median(same),
            "ms",
            "<= 150",
            "0 files written",
        ),
        Row(
            "archive",
            "rebuild after one edit (median)",
            statistics.median(edited),
            "ms",
            "<= 200",
            f"{written} files written (the newest issue's page, the feed)",
        ),
        Row(
            "archive",
            "rebuild after a new issue was sent",
            sent_ms,
            "ms",
            "<= 300",
            f"{len(sent_report.written)} files written (page, image, neighbour, "
            f"{sent_report.rendered} rendered; lists, feed)",
        ),
    ]
