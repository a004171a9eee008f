"""A subscriber's status after signup: unsubscribe, preferences, removal, suppression.

The transactions behind :meth:`Store.unsubscribe`, :meth:`Store.update_preferences`,
:meth:`Store.remove`, :meth:`Store.suppress` and :meth:`Store.mark_status`; each runs in
the caller's write transaction. Every change withdraws the reader's open signup
requests where a later confirmation link could otherwise undo it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection

from subscribers import schema as s
from subscribers import signup_requests
from subscribers.errors import Conflict, NotFound
from subscribers.models import Consent, Subscriber
from subscribers.rows import (
    hash_of,
    insert_suppression,
    load,
    lock_by_hash,
    lock_by_id,
    record_consent,
    record_event,
    set_topics,
    suppression_reason,
    update_subscriber,
)
from subscribers.validation import clean_name

SUPPRESSION_STATUS = {"bounced": "bounced", "complained": "complained"}


def unsubscribe(
    conn: Connection, subscriber_id: int, source: str, now: dt.datetime
) -> Subscriber | None:
    """Stop all mail to this subscriber at once. Idempotent; None for an unknown id."""
    row = lock_by_id(conn, subscriber_id)
    if row is None:
        return None
    signup_requests.withdraw(conn, row.id)  # no confirmation link may undo this
    if row.status in ("active", "pending"):
        values = {"status": "unsubscribed", "unsubscribed_at": now, "updated_at": now}
        update_subscriber(conn, row.id, values)
        record_event(conn, row.id, "unsubscribed", now, source)
    return load(conn, s.subscribers.c.id == row.id)


def update_preferences(
    conn: Connection,
    subscriber_id: int,
    topics: Sequence[str],
    name: str | None,
    consent: Consent,
    now: dt.datetime,
) -> Subscriber:
    """The transaction of :meth:`Store.update_preferences` (``topics`` already checked)."""
    row = lock_by_id(conn, subscriber_id)
    if row is None:
        raise NotFound("this link is not valid", hint="use the link from your latest email")
    signup_requests.withdraw(conn, row.id)  # the latest explicit choice wins
    values: dict[str, Any] = {"updated_at": now}
    if name is not None:
        values["name"] = clean_name(name)
    values.update(_status_change(conn, row, topics, consent, now))
    update_subscriber(conn, row.id, values)
    if topics:
        set_topics(conn, row.id, topics)
    record_event(conn, row.id, "preferences", now, ",".join(topics) or "none")
    return load(conn, s.subscribers.c.id == row.id)  # type: ignore[return-value]


def _status_change(
    conn: Connection, row: Any, topics: Sequence[str], consent: Consent, now: dt.datetime
) -> dict[str, Any]:
    if not topics:
        if row.status in ("active", "pending"):
            record_event(conn, row.id, "unsubscribed", now, consent.source)
            return {"status": "unsubscribed", "unsubscribed_at": now}
        return {}
    if row.status == "active" or row.confirmed_at is None or row.status == "pending":
        return {}
    if suppression_reason(conn, row.email_hash):
        raise Conflict(
            "this address is blocked from our mailings",
            hint="reply to any of our emails if you want to receive them again",
        )
    record_consent(conn, row.id, consent, topics, now)
    record_event(conn, row.id, "resubscribed", now, consent.source)
    return {"status": "active"}


def remove(conn: Connection, digest: str, erase: bool, source: str, now: dt.datetime) -> bool:
    """The transaction of :meth:`Store.remove`: unsubscribe the address with this hash,
    or erase it, keeping only a suppression. Returns whether the address was held."""
    row = lock_by_hash(conn, digest)
    if not erase:
        if row is not None:
            signup_requests.withdraw(conn, row.id)
        if row is not None and row.status in ("active", "pending"):
            values = {"status": "unsubscribed", "unsubscribed_at": now, "updated_at": now}
            update_subscriber(conn, row.id, values)
            record_event(conn, row.id, "removed", now, source)
        return row is not None
    if row is not None:
        conn.execute(s.subscribers.delete().where(s.subscribers.c.id == row.id))
    insert_suppression(conn, digest, "erased", source, now)
    record_event(conn, None, "erased", now, "")
    return row is not None


def suppress(conn: Connection, digest: str, reason: str, source: str, now: dt.datetime) -> bool:
    """The transaction of :meth:`Store.suppress`. True when newly suppressed."""
    added = insert_suppression(conn, digest, reason[:32], source, now)
    row = lock_by_hash(conn, digest)
    if row is not None:
        if reason in SUPPRESSION_STATUS and row.status != SUPPRESSION_STATUS[reason]:
            values = {"status": SUPPRESSION_STATUS[reason], "updated_at": now}
            update_subscriber(conn, row.id, values)
        record_event(conn, row.id, "suppressed", now, f"{reason} {source}".strip())
    return added


def mark_status(
    conn: Connection, subscriber: int | str, status: str, reason: str, now: dt.datetime
) -> bool:
    """The transaction of :meth:`Store.mark_status` (``status`` already checked): the
    subscriber by id or email. False when nobody matched."""
    if isinstance(subscriber, int):
        row = lock_by_id(conn, subscriber)
    else:
        row = lock_by_hash(conn, hash_of(subscriber))
    if row is None:
        return False
    update_subscriber(conn, row.id, _status_values(row, status, now))
    record_event(conn, row.id, f"status_{status}", now, reason)
    return True


def _status_values(row: Any, status: str, now: dt.datetime) -> dict[str, Any]:
    values: dict[str, Any] = {"status": status, "updated_at": now}
    if status == "active" and row.confirmed_at is None:
        values["confirmed_at"] = now
    if status == "unsubscribed" and row.status != "unsubscribed":
        values["unsubscribed_at"] = now
    return values
