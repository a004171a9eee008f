"""The claim query's eligibility clause, checked on the ledger directly (SQLite and
PostgreSQL): a claimed batch splits its members into those still eligible right now
(``rows``, with what their links need) and those who left since the snapshot
(``left``), whatever the reason. The second, independent guard of that clause (the
first drives a whole send through ``pipeline.send.Sender``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import pg_schema
from send_helpers import fill

from subscribers.ledger import Ledger
from subscribers.models import Consent
from subscribers.store import Store

PREFS = Consent("preferences", "preferences page")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        with Store(f"sqlite:///{tmp_path / 'ledger.db'}") as st:
            yield st
    else:
        with pg_schema(request.getfixturevalue("pg_url")) as url, Store(url) as st:
            yield st


def test_a_claim_rechecks_every_member_against_the_list_as_it_is_now(store: Store) -> None:
    ids = fill(store, 8, topics=("updates", "offers"))
    ledger = Ledger(store)
    campaign, created = ledger.open_campaign(
        slug="hip-hinge", topic="updates", subject="s", content_hash="h", provider="outbox"
    )
    assert created and ledger.pending(campaign.id) == 8
    # after the snapshot, before the batch is claimed:
    store.mark_status(ids[0], "bounced")  # a status, no suppression row
    store.update_preferences(ids[1], topics=["offers"], consent=PREFS)  # dropped the topic
    store.suppress("reader2@example.com", "manual")  # suppressed, status unchanged
    store.unsubscribe(ids[3], source="one-click")
    store.update_preferences(ids[3], topics=["updates"], consent=PREFS)  # ... and came back
    store.mark_status(ids[4], "pending")  # no longer active
    store.remove("reader5@example.com", erase=True)  # gone with its ledger row
    batch = ledger.claim(campaign.id, 100, "updates")
    assert batch is not None
    assert [row[0] for row in batch.rows] == [ids[3], ids[6], ids[7]]
    assert sorted(batch.left) == [ids[0], ids[1], ids[2], ids[4]]
    for sid, email, name, link_key in batch.rows:  # what the links of each email need
        sub = store.get(sid)
        assert (email, name, link_key) == (sub.email, sub.name, sub.link_key)
        assert len(link_key) == 22


def test_a_claim_for_another_topic_uses_that_topic(store: Store) -> None:
    ids = fill(store, 3, topics=("offers",))
    ledger = Ledger(store)
    campaign, _ = ledger.open_campaign(
        slug="bulletproof-back-program", topic="offers", subject="s", content_hash="h",
        provider="outbox",
    )  # fmt: skip
    store.update_preferences(ids[0], topics=["updates"], consent=PREFS)
    batch = ledger.claim(campaign.id, 100, "offers")
    assert [r[0] for r in batch.rows] == ids[1:] and batch.left == [ids[0]]
