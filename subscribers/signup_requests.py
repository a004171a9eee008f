"""Signup requests: what someone asked for when signing up an address we already hold.

Anyone can post the signup form with any address, so a signup for a known reader
(active, pending, unsubscribed ...) changes nothing about them: their name, topics and
status stay as they are. The choices wait here, and the confirmation email sent to the
address carries a link naming this request; following it applies them
(``Store.confirm``). A request is used once; confirming one, unsubscribing or saving
preferences withdraws every request of that reader, so an older email's link cannot
undo a newer choice. The SQL of :class:`subscribers.store.Store` for these rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from subscribers import schema as s
from subscribers.rows import consent_fields

if TYPE_CHECKING:
    from subscribers.models import Consent

LIFETIME = dt.timedelta(days=7)  # as long as the confirmation link (tokens.CONFIRM_MAX_AGE)

r = s.signup_requests
_INSERT = r.insert().returning(r.c.id)
_GET = sa.select(r).where(r.c.id == sa.bindparam("rid"), r.c.subscriber_id == sa.bindparam("sid"))
_WITHDRAW = r.delete().where(r.c.subscriber_id == sa.bindparam("sid"))
_PRUNE = r.delete().where(
    r.c.subscriber_id == sa.bindparam("sid"),
    r.c.created_at < sa.bindparam("before", type_=s.UTCDateTime),
)


def add(
    conn: Connection,
    subscriber_id: int,
    name: str | None,
    topics: Sequence[str],
    consent: Consent,
    now: dt.datetime,
) -> int:
    """Record a request (and forget this reader's expired ones); returns its id."""
    conn.execute(_PRUNE, {"sid": subscriber_id, "before": now - LIFETIME})
    values = {
        "subscriber_id": subscriber_id,
        "name": name,
        "topics": ",".join(topics),
        "created_at": now,
        **consent_fields(consent),
    }
    return conn.execute(_INSERT, values).scalar_one()


def get(conn: Connection, request_id: int, subscriber_id: int) -> Any:
    """The request, if it is still open and is this reader's; else None."""
    return conn.execute(_GET, {"rid": request_id, "sid": subscriber_id}).first()


def withdraw(conn: Connection, subscriber_id: int) -> None:
    """Close every open request of this reader (their queued emails go with them)."""
    conn.execute(_WITHDRAW, {"sid": subscriber_id})


def topics_of(request: Any) -> tuple[str, ...]:
    return tuple(t for t in request.topics.split(",") if t)
