"""What the store reports: everything held about a subscriber (export), and the counts.

The reads behind :meth:`Store.consents_for`, :meth:`Store.events_for`,
:meth:`Store.export_records` and :meth:`Store.stats`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from subscribers import schema as s
from subscribers.audience import eligible_clause
from subscribers.models import Stats, Subscriber
from subscribers.validation import email_hash

PENDING_EXPIRY = dt.timedelta(days=7)  # the confirm token's lifetime


def consents_of(conn: Connection, ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """The consents of each subscriber in ``ids``, oldest first."""
    c = s.consents
    query = sa.select(c).where(c.c.subscriber_id.in_(ids)).order_by(c.c.id)
    found: dict[int, list[dict[str, Any]]] = {}
    for row in conn.execute(query).mappings():
        record = {k: row[k] for k in ("kind", "source", "topics", "ip", "user_agent", "wording")}
        record["at"] = _iso(row["created_at"])
        found.setdefault(row["subscriber_id"], []).append(record)
    return found


def events_of(conn: Connection, ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """The events of each subscriber in ``ids``, oldest first."""
    e = s.events
    query = sa.select(e).where(e.c.subscriber_id.in_(ids)).order_by(e.c.id)
    found: dict[int, list[dict[str, Any]]] = {}
    for row in conn.execute(query):
        record = {"kind": row.kind, "detail": row.detail, "at": _iso(row.created_at)}
        found.setdefault(row.subscriber_id, []).append(record)
    return found


def _iso(value: dt.datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def export_record(
    sub: Subscriber,
    consent_map: dict[int, list[dict[str, Any]]],
    event_map: dict[int, list[dict[str, Any]]],
    suppressed: set[str],
) -> dict[str, Any]:
    """One subscriber as :meth:`Store.export_records` gives it."""
    return {
        "id": sub.id,
        "email": sub.email,
        "name": sub.name,
        "status": sub.status,
        "topics": list(sub.topics),
        "created_at": _iso(sub.created_at),
        "updated_at": _iso(sub.updated_at),
        "confirmed_at": _iso(sub.confirmed_at),
        "unsubscribed_at": _iso(sub.unsubscribed_at),
        "suppressed": email_hash(sub.email) in suppressed,
        "consents": consent_map.get(sub.id, []),
        "events": event_map.get(sub.id, []),
    }


def stats(conn: Connection, topics: Sequence[str], now: dt.datetime) -> Stats:
    """Subscribers by status, active readers by topic, suppressions, expired pending
    signups and the last 7 days' signups."""
    sub = s.subscribers
    stats = Stats()
    by_status = sa.select(sub.c.status, sa.func.count()).group_by(sub.c.status)
    stats.by_status = {status: 0 for status in s.STATUSES}
    stats.by_status.update({row[0]: row[1] for row in conn.execute(by_status)})
    stats.total = sum(stats.by_status.values())
    for topic in topics:
        query = sa.select(sa.func.count()).select_from(sub).where(eligible_clause(topic))
        stats.active_by_topic[topic] = conn.execute(query).scalar_one()
    count = sa.select(sa.func.count())
    stats.suppressed = conn.execute(count.select_from(s.suppressions)).scalar_one()
    expired = sa.and_(sub.c.status == "pending", sub.c.updated_at < now - PENDING_EXPIRY)
    stats.pending_expired = conn.execute(count.select_from(sub).where(expired)).scalar_one()
    recent = sub.c.created_at >= now - dt.timedelta(days=7)
    stats.signups_7d = conn.execute(count.select_from(sub).where(recent)).scalar_one()
    return stats
