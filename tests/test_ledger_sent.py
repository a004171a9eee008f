"""Ledger.sent_campaigns(): what the public archive reads, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from helpers import Clock

from pipeline.send import Outcome
from subscribers.ledger import Ledger
from subscribers.models import Consent, NewSubscriber
from subscribers.store import Store

CONSENT = Consent(kind="import", source="test", wording="test")
T0 = dt.datetime(2026, 11, 23, 9, 30, tzinfo=dt.UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def ledger(db_url: str, clock: Clock) -> Iterator[Ledger]:
    with Store(db_url, clock=clock) as store:
        rows = [NewSubscriber(f"r{n}@example.com", "", ("updates", "offers")) for n in range(2)]
        store.add_many(rows, confirmed=True, consent=CONSENT)
        yield Ledger(store)


def deliver(ledger: Ledger, slug: str, topic: str, statuses: list[str]) -> None:
    """Open the campaign and record one batch of one reader per status, in order."""
    campaign, _ = ledger.open_campaign(
        slug=slug, topic=topic, subject=slug, content_hash="h", provider="outbox"
    )
    for status in statuses:
        batch = ledger.claim(campaign.id, 1, topic)
        assert batch is not None
        ledger.record(campaign.id, batch.claim, [Outcome(batch.rows[0][0], status)])


def test_only_campaigns_that_reached_a_reader_with_their_first_send(
    ledger: Ledger, clock: Clock
) -> None:
    deliver(ledger, "failed-then-sent", "updates", ["failed"])
    clock.now = T0 + dt.timedelta(hours=1)
    campaign = ledger.campaign("failed-then-sent", "updates")
    assert campaign is not None
    batch = ledger.claim(campaign.id, 1, "updates")
    assert batch is not None
    ledger.record(campaign.id, batch.claim, [Outcome(batch.rows[0][0], "sent")])
    clock.now = T0 + dt.timedelta(hours=2)
    deliver(ledger, "all-failed", "updates", ["failed", "failed"])
    deliver(ledger, "opened-only", "updates", [])
    deliver(ledger, "in-doubt", "updates", ["unknown"])
    clock.now = T0 + dt.timedelta(hours=3)
    deliver(ledger, "both", "offers", ["sent", "sent"])

    found = ledger.sent_campaigns()

    assert [(c.slug, c.topic, c.sent) for c in found] == [
        ("failed-then-sent", "updates", 1),
        ("both", "offers", 2),
    ]
    assert found[0].first_sent_at == T0 + dt.timedelta(hours=1)
    assert found[1].first_sent_at == T0 + dt.timedelta(hours=3)
    assert all(c.first_sent_at.utcoffset() == dt.timedelta(0) for c in found)
