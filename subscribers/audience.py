"""Who may be mailed: the eligibility clause and the queries of the send pipeline's side.

A subscriber is eligible for a topic when confirmed, active, not suppressed and
subscribed to it. :func:`eligible_clause` is that rule as SQL, shared by the store
(:meth:`Store.eligible_recipients`, :meth:`Store.still_eligible`, :meth:`Store.stats`),
the ledger's audience snapshots and the automation's sequences.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipeline.settings import ALL_TOPICS
from subscribers import schema as s

AUDIENCE_TABLES = ("subscribers", "subscriber_topics", "suppressions")  # eligible_clause


def has_topic(topic: str) -> Any:
    """Where a subscriber is subscribed to ``topic``."""
    t = s.subscriber_topics
    return sa.exists().where(t.c.subscriber_id == s.subscribers.c.id, t.c.topic == topic)


def _has_any_topic() -> Any:
    t = s.subscriber_topics
    return sa.exists().where(t.c.subscriber_id == s.subscribers.c.id)


def eligible_clause(topic: str) -> Any:
    """Where a subscriber may be mailed for ``topic`` now: confirmed, active, not
    suppressed, and subscribed to the topic (``ALL_TOPICS``: to any topic)."""
    sup = s.suppressions
    return sa.and_(
        s.subscribers.c.status == "active",
        s.subscribers.c.confirmed_at.is_not(None),
        _has_any_topic() if topic == ALL_TOPICS else has_topic(topic),
        ~sa.exists().where(sup.c.email_hash == s.subscribers.c.email_hash),
    )


def eligible_page(conn: Connection, where: Any, after: int, page_size: int) -> list[Any]:
    """Up to ``page_size`` rows ``(id, email, name, link_key)`` matching ``where`` with an
    id above ``after``, in id order (keyset paging)."""
    sub = s.subscribers
    cols = (sub.c.id, sub.c.email, sub.c.name, sub.c.link_key)
    query = sa.select(*cols).where(where, s.subscribers.c.id > after)
    return list(conn.execute(query.order_by(s.subscribers.c.id).limit(page_size)).all())


def eligible_among(conn: Connection, where: Any, ids: Sequence[int]) -> set[int]:
    """Which of ``ids`` (sorted, unique) match ``where``, 500 at a time."""
    found: set[int] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        query = sa.select(s.subscribers.c.id).where(where, s.subscribers.c.id.in_(chunk))
        found.update(conn.execute(query).scalars())
    return found
