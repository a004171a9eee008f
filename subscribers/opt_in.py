"""Double opt-in: a form signup and the click on its confirmation link.

The transactions behind :meth:`Store.signup` and :meth:`Store.confirm`. A new address
is stored pending and its confirmation email queued; for an address already held,
nothing about that reader changes until they follow the link: their choices wait as a
signup request (:mod:`subscribers.signup_requests`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from subscribers import schema as s
from subscribers import signup_requests
from subscribers.confirmation_queue import enqueue_confirmation
from subscribers.errors import Conflict, NotFound
from subscribers.models import Consent, SignupOutcome, Subscriber
from subscribers.rows import (
    consent_values,
    load,
    lock_by_hash,
    lock_by_id,
    recent_events,
    record_consent,
    record_event,
    set_topics,
    suppression_reason,
    topics_of,
    update_subscriber,
)
from subscribers.tokens import new_link_key
from subscribers.validation import email_key

CONFIRMATION_CAP = 5  # confirmation emails per address per CONFIRMATION_WINDOW
CONFIRMATION_WINDOW = dt.timedelta(hours=1)

_INSERT_SUBSCRIBER = s.subscribers.insert()
# PostgreSQL: a signup of a new address as one statement (data-modifying CTEs that
# share the new row's id). ``new`` is empty when the address is present (ON CONFLICT)
# or suppressed, and then so is everything else.
_SIGNUP_NEW_ADDRESS = sa.text("""
WITH new AS (
    INSERT INTO subscribers (email, email_hash, name, status, created_at, updated_at, link_key)
    SELECT CAST(:email AS VARCHAR), CAST(:email_hash AS VARCHAR), CAST(:name AS VARCHAR),
        CAST(:status AS VARCHAR), :created_at, :updated_at, CAST(:link_key AS VARCHAR)
    WHERE NOT EXISTS (
        SELECT 1 FROM suppressions WHERE email_hash = CAST(:email_hash AS VARCHAR)
    )
    ON CONFLICT (email_hash) DO NOTHING
    RETURNING id
), topics AS (
    INSERT INTO subscriber_topics (subscriber_id, topic)
    SELECT new.id, topic FROM new, unnest(CAST(:topics AS VARCHAR[])) AS topic
), consent AS (
    INSERT INTO consents (subscriber_id, kind, source, topics, ip, user_agent, wording,
        created_at)
    SELECT id, CAST(:kind AS VARCHAR), CAST(:source AS VARCHAR),
        CAST(:topic_list AS VARCHAR), CAST(:ip AS VARCHAR), CAST(:user_agent AS VARCHAR),
        CAST(:wording AS TEXT), :created_at
    FROM new
), event AS (
    INSERT INTO events (subscriber_id, kind, detail, created_at)
    SELECT id, 'confirmation_queued', CAST(:detail AS TEXT), :created_at FROM new
)
INSERT INTO confirmation_queue (subscriber_id, due_at, attempts)
SELECT id, :created_at, 0 FROM new
RETURNING subscriber_id
""").bindparams(
    sa.bindparam("created_at", type_=s.UTCDateTime),
    sa.bindparam("updated_at", type_=s.UTCDateTime),
)
_INSERT_UNLESS_PRESENT = (
    postgresql.insert(s.subscribers)
    .on_conflict_do_nothing(index_elements=["email_hash"])
    .returning(s.subscribers.c.id)
)


# ---- signup ---------------------------------------------------------------------------


def new_row(email: str, digest: str, name: str, status: str, now: dt.datetime) -> dict[str, Any]:
    """The values of a new subscriber row (with a fresh link key)."""
    return {
        "email": email,
        "email_hash": digest,
        "name": name,
        "status": status,
        "created_at": now,
        "updated_at": now,
        "link_key": new_link_key(),
    }


def insert_new_address(
    conn: Connection, row: dict[str, Any], topics: Sequence[str], consent: Consent
) -> int | None:
    """PostgreSQL, the common case in one statement: an address neither present nor
    suppressed is stored pending with its topics, consent, event and queued confirmation;
    returns its id (the insert holds the row's lock). None: present or suppressed, for
    the full path. One round trip where the full path takes eight."""
    agreed = consent_values(0, consent, topics, row["created_at"])
    del agreed["subscriber_id"]
    values = {
        **agreed,
        **row,  # the same created_at
        "topic_list": agreed["topics"],
        "topics": list(topics),
        "detail": consent.source[:1000],
    }
    return conn.execute(_SIGNUP_NEW_ADDRESS, values).scalar_one_or_none()


def signup(
    conn: Connection,
    email: str,
    digest: str,
    name: str,
    topics: Sequence[str],
    consent: Consent,
    now: dt.datetime,
) -> SignupOutcome:
    """The full path of a signup (any database), in the caller's write transaction."""
    row = lock_by_hash(conn, digest)
    if suppression_reason(conn, digest):
        record_event(conn, row.id if row else None, "signup_suppressed", now, consent.source)
        return SignupOutcome(row.id if row else None, "suppressed", False)
    if row is None:
        sid, created = _insert_subscriber(conn, email, digest, name, "pending", now)
        if created:
            return _new_signup(conn, sid, topics, consent, now)
        row = lock_by_id(conn, sid)
    return _known_signup(conn, row, name, topics, consent, now)


def _new_signup(
    conn: Connection, sid: int, topics: Sequence[str], consent: Consent, now: dt.datetime
) -> SignupOutcome:
    set_topics(conn, sid, topics, new=True)
    record_consent(conn, sid, consent, topics, now)
    record_event(conn, sid, "confirmation_queued", now, consent.source)
    enqueue_confirmation(conn, sid, now, new=True)
    return SignupOutcome(sid, "new", True)


def _known_signup(
    conn: Connection,
    row: Any,
    name: str,
    topics: Sequence[str],
    consent: Consent,
    now: dt.datetime,
) -> SignupOutcome:
    """Changes nothing about the reader: records a request and mails its link."""
    if recent_events(conn, row.id, "confirmation_queued", now - CONFIRMATION_WINDOW) >= (
        CONFIRMATION_CAP
    ):
        record_event(conn, row.id, "confirmation_capped", now, consent.source)
        return SignupOutcome(row.id, "capped", False)
    request_id = signup_requests.add(conn, row.id, name or None, topics, consent, now)
    record_event(conn, row.id, "confirmation_queued", now, consent.source)
    enqueue_confirmation(conn, row.id, now, new=False, request_id=request_id)
    return SignupOutcome(row.id, "resend", True)


def _insert_subscriber(
    conn: Connection, email: str, digest: str, name: str, status: str, now: dt.datetime
) -> tuple[int, bool]:
    """Insert a new row, or find the one a concurrent transaction just inserted.

    Returns ``(id, created)``. PostgreSQL: ``ON CONFLICT DO NOTHING`` waits for a
    concurrent signup of the same address and then yields to it, in one statement (a
    savepoint around a plain INSERT cost two more round trips on every signup).
    """
    values = new_row(email, digest, name, status, now)
    query = sa.select(s.subscribers.c.id).where(s.subscribers.c.email_hash == digest)
    if conn.dialect.name == "postgresql":
        sid = conn.execute(_INSERT_UNLESS_PRESENT, values).scalar_one_or_none()
        return (sid, True) if sid is not None else (conn.execute(query).scalar_one(), False)
    # SQLite: BEGIN IMMEDIATE already excludes every other writer, so no conflict can
    # happen here.
    try:
        result = conn.execute(_INSERT_SUBSCRIBER, values)
        return result.inserted_primary_key[0], True
    except sa.exc.IntegrityError:
        return conn.execute(query).scalar_one(), False


# ---- confirmation ---------------------------------------------------------------------


def confirm(
    conn: Connection,
    subscriber_id: int,
    email: str,
    consent: Consent,
    request_id: int | None,
    known_topics: Sequence[str],
    now: dt.datetime,
) -> tuple[Subscriber, bool]:
    """The transaction of :meth:`Store.confirm` (see there), in the caller's write
    transaction; ``known_topics``: the store's topics, in their order."""
    row = lock_by_id(conn, subscriber_id)
    if row is None or email_key(row.email) != email_key(email):
        raise NotFound("this confirmation link is not valid", hint="sign up again")
    if request_id is not None:
        return _confirm_request(conn, row, request_id, consent, known_topics, now)
    if row.status == "active":
        return load(conn, s.subscribers.c.id == row.id), False
    if row.status != "pending" or suppression_reason(conn, row.email_hash):
        raise Conflict(
            "this confirmation link is no longer valid",
            hint="sign up again to get a fresh link",
        )
    update_subscriber(conn, row.id, {"status": "active", "confirmed_at": now, "updated_at": now})
    topics = topics_of(conn, [row.id]).get(row.id, ())
    record_consent(conn, row.id, consent, topics, now)
    record_event(conn, row.id, "confirmed", now, consent.source)
    return load(conn, s.subscribers.c.id == row.id), True


def _confirm_request(
    conn: Connection,
    row: Any,
    request_id: int,
    consent: Consent,
    known_topics: Sequence[str],
    now: dt.datetime,
) -> tuple[Subscriber, bool]:
    request = signup_requests.get(conn, request_id, row.id)
    if request is None:  # used, or withdrawn by a later choice
        if row.status == "active":
            return load(conn, s.subscribers.c.id == row.id), False  # type: ignore[return-value]
        raise Conflict(
            "this confirmation link is no longer valid",
            hint="sign up again to get a fresh link",
        )
    if suppression_reason(conn, row.email_hash):
        raise Conflict(
            "this address is blocked from our mailings",
            hint="reply to any of our emails if you want to receive them again",
        )
    topics = tuple(t for t in known_topics if t in signup_requests.topics_of(request))
    values: dict[str, Any] = {"status": "active", "updated_at": now}
    if row.confirmed_at is None:
        values["confirmed_at"] = now
    if request.name is not None:
        values["name"] = request.name
    update_subscriber(conn, row.id, values)
    set_topics(conn, row.id, topics)
    asked = Consent("signup", request.source, request.wording, request.ip, request.user_agent)
    record_consent(conn, row.id, asked, topics, request.created_at)
    record_consent(conn, row.id, consent, topics, now)
    record_event(conn, row.id, "confirmed", now, consent.source)
    signup_requests.withdraw(conn, row.id)  # this link is used; older ones are superseded
    return load(conn, s.subscribers.c.id == row.id), True  # type: ignore[return-value]
