"""Helpers for the archive tests: readers with data no page may show, real sends through
the CLI (outbox provider), extra content modules, and a look at every output file."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner, Result
from helpers import read_outbox

from pipeline.cli import cli
from pipeline.send import Outcome
from pipeline.settings import Settings
from subscribers.ledger import Ledger
from subscribers.models import Consent, NewSubscriber
from subscribers.store import Store
from subscribers.tokens import subscriber_token

CONSENT = Consent(kind="import", source="archive test", wording="test readers")
# Readers whose every detail is easy to find if it leaks into a page.
READERS = (
    NewSubscriber(
        "zebulon.marmalade.7731@readers-unique.example.org", "Zebulon Quixotic-Marmalade"
    ),
    NewSubscriber("ottilie.vrzalova+news@post-distinct.example.net", "Ottilie Vrzalová"),
    NewSubscriber("xanthe_kowalczyk@mail-peculiar.example.com", "Xanthe Kowalczyk"),
)
Run = Callable[..., Result]


def runner(project: Path, env: dict[str, str]) -> Run:
    def invoke(*args: str) -> Result:
        full = {**env, "NEWSLETTER_CONFIG": str(project / "newsletter.toml")}
        return CliRunner().invoke(cli, list(args), env=full)

    return invoke


def add_readers(settings: Settings) -> list[int]:
    """The distinctive readers, confirmed, on every topic; returns their ids."""
    rows = [
        NewSubscriber(r.email, r.name, tuple(settings.topics), line=n)
        for n, r in enumerate(READERS)
    ]
    with Store.from_settings(settings) as store:
        results = store.add_many(rows, confirmed=True, consent=CONSENT)
    return [r.subscriber_id for r in results if r.subscriber_id is not None]


def send(run: Run, slug: str) -> None:
    result = run("send", slug, "--yes")
    assert result.exit_code == 0, result.output


def record_sent(settings: Settings, slug: str, topic: str, *, sent: bool = True) -> None:
    """A campaign through the ledger's own steps (open, claim, record), for what
    `newsletter send` cannot send yet (sequence steps); ``sent=False`` records a
    campaign whose every message failed."""
    with Store.from_settings(settings) as store:
        ledger = Ledger(store)
        campaign, _ = ledger.open_campaign(
            slug=slug, topic=topic, subject=slug, content_hash="h", provider="outbox"
        )
        batch = ledger.claim(campaign.id, 100, topic)
        assert batch is not None and batch.rows
        status = "sent" if sent else "failed"
        ledger.record(campaign.id, batch.claim, [Outcome(row[0], status) for row in batch.rows])


def write_module(settings: Settings, name: str, front: str, body: str, folder: str = "") -> Path:
    path = settings.content_dir / folder / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"---\n{front.strip()}\n---\n{body.strip()}\n", encoding="utf-8")
    return path


def update_module(title: str, extra: str = "") -> str:
    return f"title: {title}\ndate: 2026-12-01\nkind: update\n{extra}"


@dataclass(frozen=True)
class Output:
    path: Path
    data: bytes


def outputs(out: Path) -> list[Output]:
    return [Output(p, p.read_bytes()) for p in sorted(out.rglob("*")) if p.is_file()]


def reader_traces(settings: Settings, ids: list[int]) -> list[str]:
    """Every string that would show a reader's data: names, addresses and their parts,
    link tokens, and what the sent emails carried personally (links, Message-IDs)."""
    traces = []
    for reader in READERS:
        local, domain = reader.email.split("@")
        traces += [reader.email, local, domain, *reader.name.split()]
    with Store.from_settings(settings) as store:
        keys = {sid: store.get(sid).link_key for sid in ids}  # type: ignore[union-attr]
    traces += [subscriber_token(settings.secret_key(), sid, keys[sid]) for sid in ids]
    for message in read_outbox(settings.outbox_dir):
        traces.append(message["Message-ID"].strip("<>"))
        traces += re.findall(
            r"/(?:unsubscribe|preferences)/([A-Za-z0-9_.\-]+)", message.as_string()
        )
    return sorted(set(traces))
