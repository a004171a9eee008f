"""The confirmation queue: confirmation emails waiting to go out, claimed under a lease.

The SQL behind :meth:`Store.claim_confirmations`, :meth:`Store.confirmations_sent`
and :meth:`Store.confirmation_failed`. A claimed row stays queued until the mailer
says it was sent or failed, so a mailer that dies mid-batch loses nothing: the lease
runs out and another mailer sends it. Each function runs in the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from subscribers import schema as s
from subscribers.models import PendingConfirmation
from subscribers.rows import INSERT_EVENT, lock_ids, record_event, topics_of

CLAIM_LEASE = dt.timedelta(minutes=2)  # a mailer batch must finish within this
CONFIRMATION_ATTEMPTS = 8
RETRY_BASE = dt.timedelta(seconds=30)  # 30 s, 1 min, 2 min ... capped at RETRY_MAX
RETRY_MAX = dt.timedelta(hours=1)

_QUEUE_DELETE = s.confirmation_queue.delete().where(
    s.confirmation_queue.c.subscriber_id == sa.bindparam("sid")
)
_QUEUE_INSERT = s.confirmation_queue.insert()


def enqueue_confirmation(
    conn: Connection, sid: int, now: dt.datetime, *, new: bool, request_id: int | None = None
) -> None:
    """Queue a confirmation email; a newer request replaces an older one (and its claim)."""
    if not new:
        conn.execute(_QUEUE_DELETE, {"sid": sid})
    values = {"subscriber_id": sid, "due_at": now, "attempts": 0, "request_id": request_id}
    conn.execute(_QUEUE_INSERT, values)


def claim_due(
    conn: Connection, claim: str, now: dt.datetime, limit: int, ids: Sequence[int] | None
) -> list[PendingConfirmation]:
    """Take up to ``limit`` due rows under ``claim`` (see :meth:`Store.claim_confirmations`);
    rows no longer to be confirmed are dropped from the queue."""
    rows = conn.execute(_due_confirmations(now, limit, ids)).all()
    gone = [r.subscriber_id for r in rows if _not_to_confirm(r)]
    keep = [r for r in rows if r.subscriber_id not in set(gone)]
    _queue_delete(conn, gone)
    if keep:
        conn.execute(
            _claim_rows([r.subscriber_id for r in keep]),
            {"new_claim": claim, "lease_end": now + CLAIM_LEASE},
        )
    topics = topics_of(conn, [r.subscriber_id for r in keep]) if keep else {}
    return [_pending(r, topics.get(r.subscriber_id, ())) for r in keep]


def mark_sent(conn: Connection, claim: str, ids: Sequence[int], now: dt.datetime) -> None:
    """Unqueue rows the provider took (unless re-requested meanwhile), with an event each."""
    lock_ids(conn, ids)
    q = s.confirmation_queue
    conn.execute(q.delete().where(q.c.claim == claim, q.c.subscriber_id.in_(list(ids))))
    conn.execute(
        INSERT_EVENT,
        [
            {
                "subscriber_id": i,
                "kind": "confirmation_sent",
                "detail": "",
                "created_at": now,
            }
            for i in ids
        ],
    )


def mark_failed(
    conn: Connection, claim: str, subscriber_id: int, error: str, retry: bool, now: dt.datetime
) -> bool:
    """Back off and try again later, or give up. Returns True when it will be retried."""
    q = s.confirmation_queue
    mine = sa.and_(q.c.claim == claim, q.c.subscriber_id == subscriber_id)
    lock_ids(conn, [subscriber_id])
    attempts = conn.execute(sa.select(q.c.attempts).where(mine)).scalar()
    if attempts is None:  # re-requested meanwhile: the new request stands
        return True
    if retry and attempts + 1 < CONFIRMATION_ATTEMPTS:
        delay = min(RETRY_BASE * 2**attempts, RETRY_MAX)
        values = {"claim": None, "attempts": attempts + 1, "due_at": now + delay}
        conn.execute(q.update().where(mine).values(last_error=error[:1000], **values))
        return True
    conn.execute(q.delete().where(mine))
    record_event(conn, subscriber_id, "confirmation_failed", now, error)
    return False


def queued(conn: Connection) -> int:
    """How many confirmation emails are queued (claimed or not)."""
    query = sa.select(sa.func.count()).select_from(s.confirmation_queue)
    return conn.execute(query).scalar_one()


def _due_confirmations(now: dt.datetime, limit: int, ids: Sequence[int] | None) -> Any:
    q, sub, sup, req = s.confirmation_queue, s.subscribers, s.suppressions, s.signup_requests
    suppressed = sa.exists().where(sup.c.email_hash == sub.c.email_hash).label("suppressed")
    query = (
        sa.select(
            q.c.subscriber_id,
            q.c.request_id,
            sub.c.email,
            sub.c.name,
            sub.c.status,
            sub.c.link_key,
            req.c.name.label("asked_name"),
            req.c.topics.label("asked_topics"),
            suppressed,
        )
        .join(sub, sub.c.id == q.c.subscriber_id)
        .outerjoin(req, req.c.id == q.c.request_id)
        .where(q.c.due_at <= now)
        .order_by(q.c.due_at, q.c.subscriber_id)
        .limit(limit)
        # Lock order everywhere: subscriber row, then its queue row. The mailer passes by
        # a signup in progress (SKIP LOCKED) instead of waiting for it; a claim for given
        # ids (inline mode) waits. SQLite has one writer anyway and renders no FOR UPDATE.
        .with_for_update(of=sub, skip_locked=ids is None)
    )
    if ids is not None:
        query = query.where(q.c.subscriber_id.in_(list(ids)))
    return query


def _not_to_confirm(row: Any) -> bool:
    """A queued email that must not go out: suppressed, or a new address's first link
    while the reader is no longer pending (a request stands whatever the status)."""
    return bool(row.suppressed) or (row.request_id is None and row.status != "pending")


def _pending(row: Any, topics: tuple[str, ...]) -> PendingConfirmation:
    """The email to send for a claimed queue row: a request's choices, or the row's own."""
    if row.request_id is not None:
        name = row.name if row.asked_name is None else row.asked_name
        topics = tuple(t for t in row.asked_topics.split(",") if t)
    else:
        name = row.name
    return PendingConfirmation(
        row.subscriber_id, row.email, name, topics, row.link_key, row.request_id
    )


def _claim_rows(ids: Sequence[int]) -> Any:
    q = s.confirmation_queue
    return (
        q.update()
        .where(q.c.subscriber_id.in_(list(ids)))
        .values(
            claim=sa.bindparam("new_claim"),
            due_at=sa.bindparam("lease_end", type_=s.UTCDateTime),
        )
    )


def _queue_delete(conn: Connection, ids: Sequence[int]) -> None:
    if ids:
        q = s.confirmation_queue
        conn.execute(q.delete().where(q.c.subscriber_id.in_(list(ids))))
