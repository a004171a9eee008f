"""The send ledger: campaigns and one delivery row per campaign and subscriber.

The exactly-once protocol, in the order a worker runs it:

1. ``open_campaign`` creates the campaign and snapshots its audience in one transaction
   (rows ``pending``); ``snapshot`` later adds only those not yet in the ledger
   (``--include-new``), so nobody is added twice.
2. ``claim`` marks a batch ``inflight`` under a fresh claim id and commits *before* the
   provider is called. On PostgreSQL the claim skips rows other workers hold
   (``FOR UPDATE SKIP LOCKED``); SQLite serialises claimers with ``BEGIN IMMEDIATE``.
3. ``record`` writes each recipient's outcome, guarded by the claim id.

A crash between 2 and 3 leaves that one batch ``inflight``; ``recover`` hands it back
whole (same members, hence the same Message-IDs and Resend idempotency key) once its
lease has expired. Everything else is either ``pending`` (never sent) or final.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from subscribers import schema as s
from subscribers.store import Store, _eligible

d = s.deliveries
c = s.campaigns
FINAL = ("sent", "failed", "skipped")
UNFINISHED = ("pending", "inflight", "retry")


@dataclass(frozen=True)
class Campaign:
    id: int
    slug: str
    topic: str
    subject: str
    content_hash: str
    provider: str
    created_at: dt.datetime


@dataclass(frozen=True)
class Claimed:
    """A batch this worker owns: ``(subscriber_id, email, name, link_key)`` rows in id
    order of those still eligible (``link_key`` signs their links: subscribers.tokens),
    and the ids of those who left the list since the snapshot."""

    claim: str
    rows: list[tuple[int, str, str, str]]
    left: list[int]


class Ledger:
    """All SQL of campaigns and deliveries; shares the store's engine."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ---- campaigns ------------------------------------------------------------------

    def campaign(self, slug: str, topic: str) -> Campaign | None:
        with self.store._read() as conn:
            row = conn.execute(sa.select(c).where(c.c.slug == slug, c.c.topic == topic)).first()
        return _campaign(row) if row else None

    def campaigns(self) -> list[tuple[Campaign, dict[str, int]]]:
        with self.store._read() as conn:
            rows = conn.execute(sa.select(c).order_by(c.c.created_at, c.c.id)).all()
            counts = _counts(conn, None)
        return [(_campaign(r), counts.get(r.id, {})) for r in rows]

    def open_campaign(
        self, *, slug: str, topic: str, subject: str, content_hash: str, provider: str
    ) -> tuple[Campaign, bool]:
        """The campaign for (slug, topic), created with its audience snapshot if new."""
        existing = self.campaign(slug, topic)
        if existing:
            return existing, False
        now = self.store._now()
        values = dict(
            slug=slug,
            topic=topic,
            subject=subject,
            content_hash=content_hash,
            provider=provider,
            created_at=now,
            updated_at=now,
        )
        try:
            with self.store._write() as conn:
                cid = conn.execute(sa.insert(c).values(**values).returning(c.c.id)).scalar_one()
                _snapshot(conn, cid, topic, now)
        except sa.exc.IntegrityError:  # another worker created it first
            found = self.campaign(slug, topic)
            assert found is not None
            return found, False
        found = self.campaign(slug, topic)
        assert found is not None
        return found, True

    def audience(self, topic: str) -> int:
        """How many subscribers a new campaign for ``topic`` would snapshot now."""
        query = sa.select(sa.func.count()).select_from(s.subscribers).where(_eligible(topic))
        with self.store._read() as conn:
            return conn.execute(query).scalar_one()

    def snapshot(self, campaign: Campaign) -> int:
        """Add subscribers who became eligible since; returns how many were added."""
        with self.store._write() as conn:
            return _snapshot(conn, campaign.id, campaign.topic, self.store._now())

    # ---- the send loop --------------------------------------------------------------

    def claim(self, campaign_id: int, limit: int, topic: str) -> Claimed | None:
        """Take up to ``limit`` pending recipients as one batch, committed before sending."""
        claim = uuid.uuid4().hex
        pick = (
            sa.select(d.c.subscriber_id)
            .where(d.c.campaign_id == campaign_id, d.c.status == "pending")
            .order_by(d.c.subscriber_id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self.store._write() as conn:
            conn.execute(
                sa.update(d)
                .where(
                    d.c.campaign_id == campaign_id, d.c.subscriber_id.in_(pick.scalar_subquery())
                )
                .values(
                    status="inflight",
                    claim=claim,
                    claimed_at=self.store._now(),
                    attempts=d.c.attempts + 1,
                )
            )
            batch = _claimed(conn, campaign_id, claim, topic)
        return batch if batch.rows or batch.left else None

    def pending(self, campaign_id: int) -> int:
        """Recipients still waiting to be claimed (some may be mid-claim elsewhere)."""
        query = sa.select(sa.func.count()).where(
            d.c.campaign_id == campaign_id, d.c.status == "pending"
        )
        with self.store._read() as conn:
            return conn.execute(query).scalar_one()

    def recover(self, campaign_id: int, topic: str, *, older_than: dt.timedelta) -> list[Claimed]:
        """In-flight batches whose worker stopped (lease expired), taken over whole."""
        cutoff = self.store._now() - older_than
        with self.store._write() as conn:
            stale = (
                conn.execute(
                    sa.select(d.c.claim)
                    .where(
                        d.c.campaign_id == campaign_id,
                        d.c.status == "inflight",
                        d.c.claimed_at <= cutoff,
                    )
                    .group_by(d.c.claim)
                )
                .scalars()
                .all()
            )
            batches = []
            for claim in stale:
                conn.execute(
                    sa.update(d)
                    .where(
                        d.c.campaign_id == campaign_id, d.c.claim == claim, d.c.status == "inflight"
                    )
                    .values(claimed_at=self.store._now(), attempts=d.c.attempts + 1)
                )
                batch = _claimed(conn, campaign_id, claim, topic)
                if batch.rows or batch.left:
                    batches.append(batch)
        return batches

    def record(self, campaign_id: int, claim: str, outcomes: Sequence[Any]) -> None:
        """Write each outcome (``pipeline.send.Outcome``); rows no longer held by ``claim``
        are left alone."""
        if not outcomes:
            return
        with self.store._write() as conn:
            sent_at = _driver_time(conn, self.store._now())
            params = [
                {
                    "status": o.status,
                    "pid": o.provider_id[:200],
                    "reason": o.reason[:2000],
                    "sent": sent_at if o.status == "sent" else None,
                    "cid": campaign_id,
                    "sid": o.subscriber_id,
                    "claim": claim,
                }
                for o in outcomes
            ]
            # Straight to the driver's executemany: Core's per-row bind processing cost
            # twice SQLite's own work here, and this runs once per recipient.
            conn.exec_driver_sql(_driver_sql(conn, RECORD_SQL), params)

    def release(self, campaign_id: int, claim: str) -> None:
        """Give a batch back (the provider refused the whole request before sending)."""
        with self.store._write() as conn:
            conn.execute(
                sa.update(d)
                .where(d.c.campaign_id == campaign_id, d.c.claim == claim, d.c.status == "inflight")
                .values(status="pending", claim=None, claimed_at=None)
            )

    def requeue_retries(self, campaign_id: int) -> int:
        """Recipients whose failure was temporary go back in the queue for this run."""
        with self.store._write() as conn:
            result = conn.execute(
                sa.update(d)
                .where(d.c.campaign_id == campaign_id, d.c.status == "retry")
                .values(status="pending", claim=None, claimed_at=None)
            )
        return result.rowcount or 0

    def suppress(self, email: str, reason: str, source: str) -> None:
        self.store.suppress(email, reason, source=source)

    # ---- reports --------------------------------------------------------------------

    def counts(self, campaign_id: int) -> dict[str, int]:
        with self.store._read() as conn:
            return _counts(conn, campaign_id).get(campaign_id, {})

    def failures(self, campaign_id: int, limit: int = 50) -> list[tuple[str, str, str]]:
        """``(email, status, reason)`` of recipients not sent, failures first."""
        query = (
            sa.select(s.subscribers.c.email, d.c.status, d.c.reason)
            .join(s.subscribers, s.subscribers.c.id == d.c.subscriber_id)
            .where(d.c.campaign_id == campaign_id, d.c.status.in_(("failed", "retry", "skipped")))
            .order_by(d.c.status, d.c.subscriber_id)
            .limit(limit)
        )
        with self.store._read() as conn:
            return [(r.email, r.status, r.reason) for r in conn.execute(query)]

    def failure_reasons(self, campaign_id: int) -> Counter[str]:
        query = (
            sa.select(d.c.reason, sa.func.count())
            .where(d.c.campaign_id == campaign_id, d.c.status.in_(("failed", "retry", "skipped")))
            .group_by(d.c.reason)
        )
        with self.store._read() as conn:
            return Counter({r[0] or "unknown": r[1] for r in conn.execute(query)})


RECORD_SQL = (
    "UPDATE deliveries SET status = :status, provider_id = :pid, reason = :reason, "
    "sent_at = :sent WHERE campaign_id = :cid AND subscriber_id = :sid AND claim = :claim"
)


def _driver_sql(conn: sa.Connection, sql: str) -> str:
    """``:name`` parameters in the driver's own style (sqlite3 named, psycopg pyformat)."""
    if conn.dialect.name == "sqlite":  # sqlite3 takes :name with a dict
        return sql
    return re.sub(r":(\w+)", r"%(\1)s", sql)


def _driver_time(conn: sa.Connection, when: dt.datetime) -> object:
    """A timestamp as UTCDateTime stores it, for statements that bypass Core."""
    naive = when.astimezone(dt.UTC).replace(tzinfo=None)
    return naive.strftime("%Y-%m-%d %H:%M:%S.%f") if conn.dialect.name == "sqlite" else naive


def _snapshot(conn: sa.Connection, campaign_id: int, topic: str, now: dt.datetime) -> int:
    sub = s.subscribers
    already = sa.exists().where(d.c.campaign_id == campaign_id, d.c.subscriber_id == sub.c.id)
    select = sa.select(
        sa.literal(campaign_id),
        sub.c.id,
        sa.literal("pending"),
        sa.literal(now, s.UTCDateTime),
        sa.literal(0),
        sa.literal(""),
        sa.literal(""),
    ).where(_eligible(topic), ~already)
    cols = [
        "campaign_id",
        "subscriber_id",
        "status",
        "added_at",
        "attempts",
        "provider_id",
        "reason",
    ]
    result = conn.execute(sa.insert(d).from_select(cols, select))
    return result.rowcount or 0


def _claimed(conn: sa.Connection, campaign_id: int, claim: str, topic: str) -> Claimed:
    """The rows of a claim, each checked against the list as it is now."""
    sub = s.subscribers
    eligible = sa.case((_eligible(topic), 1), else_=0).label("eligible")
    query = (
        sa.select(sub.c.id, sub.c.email, sub.c.name, sub.c.link_key, eligible)
        .join(d, d.c.subscriber_id == sub.c.id)
        .where(d.c.campaign_id == campaign_id, d.c.claim == claim, d.c.status == "inflight")
        .order_by(sub.c.id)
    )
    rows, left = [], []
    for sid, email, name, link_key, ok in conn.execute(query):
        if ok:
            rows.append((sid, email, name, link_key))
        else:
            left.append(sid)
    return Claimed(claim, rows, left)


def _counts(conn: sa.Connection, campaign_id: int | None) -> dict[int, dict[str, int]]:
    query = sa.select(d.c.campaign_id, d.c.status, sa.func.count()).group_by(
        d.c.campaign_id, d.c.status
    )
    if campaign_id is not None:
        query = query.where(d.c.campaign_id == campaign_id)
    found: dict[int, dict[str, int]] = {}
    for cid, status, n in conn.execute(query):
        found.setdefault(cid, {})[status] = n
    return found


def _campaign(row: sa.Row) -> Campaign:
    return Campaign(
        row.id, row.slug, row.topic, row.subject, row.content_hash, row.provider, row.created_at
    )
