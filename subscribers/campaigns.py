"""Campaigns and their audience snapshots: the rows a send starts from.

A campaign is one (slug, topic); opening it snapshots its audience as ``pending``
delivery rows, and a later snapshot adds only readers not yet in the ledger. The SQL
behind :meth:`Ledger.open_campaign`, :meth:`Ledger.snapshot` and the ledger's reports.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from subscribers import schema as s
from subscribers.audience import eligible_clause

d = s.deliveries
# The columns of a queued delivery row, as :func:`pending_rows` selects them.
PENDING_COLUMNS = (
    "campaign_id",
    "subscriber_id",
    "status",
    "added_at",
    "attempts",
    "provider_id",
    "reason",
)


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
class SentCampaign:
    """A campaign that reached at least one reader (what the public archive lists)."""

    slug: str
    topic: str
    first_sent_at: dt.datetime
    sent: int  # readers it reached


def campaign_from_row(row: sa.Row) -> Campaign:
    return Campaign(
        row.id, row.slug, row.topic, row.subject, row.content_hash, row.provider, row.created_at
    )


def counts_by_campaign(conn: sa.Connection, campaign_id: int | None) -> dict[int, dict[str, int]]:
    """Delivery rows by status, per campaign (``campaign_id``: that one only)."""
    query = sa.select(d.c.campaign_id, d.c.status, sa.func.count()).group_by(
        d.c.campaign_id, d.c.status
    )
    if campaign_id is not None:
        query = query.where(d.c.campaign_id == campaign_id)
    found: dict[int, dict[str, int]] = {}
    for cid, status, n in conn.execute(query):
        found.setdefault(cid, {})[status] = n
    return found


def snapshot_audience(
    conn: sa.Connection, campaign_id: int, topic: str, now: dt.datetime, *, new: bool
) -> int:
    """Queue every reader eligible for ``topic`` not yet queued; returns how many."""
    statement = snapshot_statement(campaign_id, topic, now, new=new)
    # SQLAlchemy keeps an INSERT's row count only when asked (it said -1 on PostgreSQL).
    return conn.execute(statement, execution_options={"preserve_rowcount": True}).rowcount


def snapshot_statement(campaign_id: int, topic: str, now: dt.datetime, *, new: bool) -> sa.Insert:
    """The INSERT ... SELECT that queues every reader eligible for ``topic``.

    A campaign created in the same transaction (``new``) has no rows yet, so the query
    leaves out the check against rows already queued: PostgreSQL would otherwise probe
    the index the statement itself is filling, row by row (quadratic when its
    statistics call the table empty).
    """
    sub = s.subscribers
    select = pending_rows(campaign_id, now).where(eligible_clause(topic))
    if not new:
        select = select.where(
            ~sa.exists().where(d.c.campaign_id == campaign_id, d.c.subscriber_id == sub.c.id)
        )
    return sa.insert(d).from_select(list(PENDING_COLUMNS), select)


def pending_rows(campaign_id: int, now: dt.datetime) -> sa.Select[Any]:
    """A new ``pending`` delivery row per subscriber selected, in :data:`PENDING_COLUMNS`
    order (the caller adds which subscribers)."""
    return sa.select(
        sa.literal(campaign_id),
        s.subscribers.c.id,
        sa.literal("pending"),
        sa.literal(now, s.UTCDateTime),
        sa.literal(0),
        sa.literal(""),
        sa.literal(""),
    )
