"""The send ledger on PostgreSQL at a realistic size: the audience snapshot's plan.

100,000 readers arrive the way a bulk import leaves them (tables never analyzed), with
suppressions and an earlier campaign's deliveries. Without statistics PostgreSQL guesses
that a topic keeps 0.5% of the list and joins row by row (minutes for 100k readers);
the ledger refreshes the statistics first and the snapshot hashes each table once.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from helpers import pg_schema

from pipeline.send import Outcome
from subscribers import schema as s
from subscribers.audience import AUDIENCE_TABLES
from subscribers.campaigns import snapshot_statement
from subscribers.ledger import Ledger
from subscribers.models import Consent, NewSubscriber
from subscribers.store import Store

N = 100_000
# Who is eligible for "updates" in the generated list (see _generate):
#   every 20th unsubscribed, every 50th (+1) unconfirmed, every 10th (+3) not on the
#   topic, every 97th suppressed.
ELIGIBLE = sum(1 for i in range(1, N + 1) if i % 20 and i % 50 != 1 and i % 10 != 3 and i % 97)


def _generate(conn: sa.Connection) -> None:
    """One INSERT ... SELECT generate_series per table."""
    conn.exec_driver_sql(
        "INSERT INTO subscribers (id, email, email_hash, name, status, created_at, "
        "updated_at, confirmed_at) "
        "SELECT i, 'reader' || i || '@example.com', md5('a' || i) || md5('b' || i), "
        "'Reader ' || i, CASE WHEN i %% 20 = 0 THEN 'unsubscribed' "
        "WHEN i %% 50 = 1 THEN 'pending' ELSE 'active' END, now(), now(), "
        "CASE WHEN i %% 50 = 1 THEN NULL ELSE now() END "
        f"FROM generate_series(1, {N}) i"
    )
    conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('subscribers', 'id'), {N})")
    conn.exec_driver_sql(
        "INSERT INTO subscriber_topics (subscriber_id, topic) "
        f"SELECT i, 'updates' FROM generate_series(1, {N}) i WHERE i %% 10 <> 3 "
        f"UNION ALL SELECT i, 'offers' FROM generate_series(1, {N}) i WHERE i %% 3 = 0"
    )
    conn.exec_driver_sql(
        "INSERT INTO suppressions (email_hash, reason, source, created_at) "
        "SELECT md5('a' || i) || md5('b' || i), 'bounced', 'webhook', now() "
        f"FROM generate_series(97, {N}, 97) i"
    )
    conn.exec_driver_sql(
        "INSERT INTO campaigns (id, slug, topic, subject, content_hash, provider, "
        "created_at, updated_at) VALUES (1, 'earlier', 'updates', 'Earlier', 'h', "
        "'postmark', now(), now())"
    )
    conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('campaigns', 'id'), 1)")
    conn.exec_driver_sql(
        "INSERT INTO deliveries (campaign_id, subscriber_id, status, added_at, sent_at) "
        f"SELECT 1, i, 'sent', now(), now() FROM generate_series(1, {N}) i WHERE i %% 10 <> 3"
    )


@pytest.fixture(scope="module")
def imported(request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL schema holding the generated list, its statistics never gathered."""
    with pg_schema(request.getfixturevalue("pg_url")) as url:
        with Store(url) as store, store.engine.begin() as conn:
            _generate(conn)
        yield url


def _plan(conn: sa.Connection, statement: Any) -> dict[str, Any]:
    compiled = statement.compile(dialect=conn.dialect)
    params = {
        k: s.UTCDateTime().process_bind_param(v, conn.dialect) if isinstance(v, dt.datetime) else v
        for k, v in compiled.construct_params().items()
    }
    row = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", params).scalar_one()
    return (json.loads(row) if isinstance(row, str) else row)[0]["Plan"]


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _joins(plan: dict[str, Any]) -> list[str]:
    return [
        f"{n['Node Type']} {n.get('Join Type', '')}".strip()
        for n in _nodes(plan)
        if "Join Type" in n
    ]


def test_snapshot_after_a_bulk_import_hashes_each_table_once(imported: str) -> None:
    now = dt.datetime.now(dt.UTC)
    with Store(imported) as store:
        with store.engine.connect() as conn:
            before = _joins(_plan(conn, snapshot_statement(99, "updates", now, new=True)))
        # The fixture is the slow case of issue 15: row-by-row joins without statistics.
        assert any(j.startswith("Nested Loop") for j in before), before

        ledger = Ledger(store)
        assert ledger.audience("updates") == ELIGIBLE  # gathers the statistics first
        with store.engine.connect() as conn:
            plan = _plan(conn, snapshot_statement(99, "updates", now, new=True))
        joins = _joins(plan)
        assert joins == ["Hash Join Anti", "Hash Join Inner"], joins
        scans = {
            n["Relation Name"]: n["Node Type"]
            for n in _nodes(plan)
            if "Relation Name" in n and n["Node Type"] != "ModifyTable"
        }
        # each read once; a brand-new campaign does not look up its own (empty) queue
        assert scans == dict.fromkeys(AUDIENCE_TABLES, "Seq Scan"), scans
        estimate = plan["Plans"][0]["Plan Rows"]
        assert ELIGIBLE / 2 < estimate < ELIGIBLE * 2  # the planner knows the list's size

        campaign, created = ledger.open_campaign(
            slug="hinge", topic="updates", subject="Hinge", content_hash="h", provider="postmark"
        )
        assert created and ledger.counts(campaign.id) == {"pending": ELIGIBLE}


def test_statistics_are_refreshed_only_when_stale(imported: str) -> None:
    with Store(imported) as store:
        store.refresh_statistics()
        assert store.refresh_statistics() == []  # fresh now: nothing to do
        consent = Consent(kind="import", source="test", wording="test")
        rows = [NewSubscriber(f"new{i}@example.com", "", ("updates",)) for i in range(15_000)]
        store.add_many(rows, confirmed=True, consent=consent)  # > 10% of both tables
        store.suppress("reader5@example.com", "complained")  # 1 of ~1,000: not stale
    with Store(imported) as store:
        _wait_for_statistics_collector(store, "subscriber_topics", 15_000)
        assert store.refresh_statistics(AUDIENCE_TABLES) == ["subscriber_topics", "subscribers"]
        assert store.refresh_statistics(AUDIENCE_TABLES) == []


def _wait_for_statistics_collector(store: Store, table: str, changed: int) -> None:
    """Backends report what they changed to the statistics system within a second or so."""
    query = sa.text(
        "SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relid = CAST(:t AS regclass)"
    )
    deadline = time.monotonic() + 15
    with store.engine.connect() as conn:
        while conn.execute(query, {"t": table}).scalar_one() < changed:
            assert time.monotonic() < deadline, f"{table}: changes never reported"
            conn.rollback()  # a new transaction sees the newest figures
            time.sleep(0.1)


def test_include_new_reports_how_many_joined_on_postgres(pg_url: str) -> None:
    consent = Consent(kind="import", source="test", wording="test")
    with pg_schema(pg_url) as url, Store(url) as store:
        ledger = Ledger(store)
        store.add_many(
            [NewSubscriber(f"r{i}@example.com", "", ("updates",)) for i in range(3)],
            confirmed=True,
            consent=consent,
        )
        campaign, _ = ledger.open_campaign(
            slug="hinge", topic="updates", subject="Hinge", content_hash="h", provider="postmark"
        )
        assert ledger.snapshot(campaign) == 0
        store.add_many(
            [NewSubscriber(f"late{i}@example.com", "", ("updates",)) for i in range(2)],
            confirmed=True,
            consent=consent,
        )
        assert ledger.snapshot(campaign) == 2
        assert ledger.snapshot(campaign) == 0
        assert ledger.counts(campaign.id) == {"pending": 5}


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        with Store(f"sqlite:///{tmp_path / 'ledger.db'}") as found:
            yield found
        return
    with pg_schema(request.getfixturevalue("pg_url")) as url, Store(url) as found:
        yield found


def test_record_writes_each_outcome_under_its_claim_only(store: Store) -> None:
    """The batch UPDATE (one statement on PostgreSQL) writes what executemany did."""
    consent = Consent(kind="import", source="test", wording="test")
    added = store.add_many(
        [NewSubscriber(f"r{i}@example.com", "", ("updates",)) for i in range(5)],
        confirmed=True,
        consent=consent,
    )
    ids = [a.subscriber_id for a in added]
    ledger = Ledger(store)
    campaign, _ = ledger.open_campaign(
        slug="hinge", topic="updates", subject="Hinge", content_hash="h", provider="postmark"
    )
    batch = ledger.claim(campaign.id, 4, "updates", None)
    assert batch is not None and [r[0] for r in batch.rows] == ids[:4]
    a, b, c, e = ids[:4]
    ledger.record(
        campaign.id,
        batch.claim,
        [
            Outcome(a, "sent", "pm-1"),
            Outcome(b, "failed", "pm-2", "Invalid 'To' address"),
            Outcome(c, "unknown", reason="the answer was lost"),
            Outcome(e, "sent", "pm-4", doubt="resent"),
        ],
    )
    ledger.record(campaign.id, "another-claim", [Outcome(ids[4], "sent", "pm-5")])
    with store.engine.connect() as conn:
        rows = {
            r.subscriber_id: r
            for r in conn.execute(sa.select(s.deliveries).where(s.deliveries.c.campaign_id == 1))
        }
    got = {sid: (r.status, r.provider_id, r.reason, r.doubt) for sid, r in rows.items()}
    assert got == {
        a: ("sent", "pm-1", "", ""),
        b: ("failed", "pm-2", "Invalid 'To' address", ""),
        c: ("unknown", "", "the answer was lost", ""),
        e: ("sent", "pm-4", "", "resent"),
        ids[4]: ("pending", "", "", ""),  # not under that claim: left alone
    }
    assert [sid for sid, r in rows.items() if r.sent_at is not None] == [a, e]
    assert rows[c].claimed_at >= rows[a].claimed_at  # the search for it starts anew
    assert ledger.counts(campaign.id) == {"sent": 2, "failed": 1, "unknown": 1, "pending": 1}
    assert [b.claim for b in ledger.recover(campaign.id, "updates", holder="next")] == [
        batch.claim
    ]  # the unknown row's batch, taken over whole
