"""A subscriber's rows, read and written inside a transaction the caller holds.

Locking and loading a subscriber, their topics, consents, events and suppressions: the
pieces every path of :class:`subscribers.store.Store` is built from (signup,
confirmation, preferences, import, webhooks). Each function takes the connection of
the caller's transaction and commits nothing itself.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from subscribers import schema as s
from subscribers.errors import InvalidInput
from subscribers.models import Consent, Subscriber
from subscribers.validation import email_hash, normalise_email

# Statements of the signup path, built once: SQLAlchemy then skips re-coercing them and
# reuses their cache keys, which halves the cost of a signup.
_ROW_BY_HASH = (
    sa.select(s.subscribers)
    .where(s.subscribers.c.email_hash == sa.bindparam("digest"))
    .with_for_update()
)
_ROW_BY_ID = (
    sa.select(s.subscribers).where(s.subscribers.c.id == sa.bindparam("sid")).with_for_update()
)
_SUPPRESSION = sa.select(s.suppressions.c.reason).where(
    s.suppressions.c.email_hash == sa.bindparam("digest")
)
_UPDATE_SUBSCRIBER = s.subscribers.update().where(s.subscribers.c.id == sa.bindparam("_sid"))
_DELETE_TOPICS = s.subscriber_topics.delete().where(
    s.subscriber_topics.c.subscriber_id == sa.bindparam("sid")
)
_INSERT_TOPIC = s.subscriber_topics.insert()
_INSERT_CONSENT = s.consents.insert()
INSERT_EVENT = s.events.insert()
_RECENT_EVENTS = sa.select(sa.func.count()).where(
    s.events.c.subscriber_id == sa.bindparam("sid"),
    s.events.c.kind == sa.bindparam("kind"),
    s.events.c.created_at >= sa.bindparam("since", type_=s.UTCDateTime),
)
_TOPICS_OF = (
    sa.select(s.subscriber_topics.c.subscriber_id, s.subscriber_topics.c.topic)
    .where(s.subscriber_topics.c.subscriber_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(s.subscriber_topics.c.subscriber_id, s.subscriber_topics.c.topic)
)


# ---- checks ---------------------------------------------------------------------------


def hash_of(email: str) -> str:
    """Hash of an address as given by a person or a provider: normalised when valid."""
    try:
        return email_hash(normalise_email(email))
    except InvalidInput:
        return email_hash(email.strip())


def check_status(status: str) -> str:
    if status not in s.STATUSES:
        raise InvalidInput(
            "status", f"unknown status {status!r}", hint=f"one of: {', '.join(s.STATUSES)}"
        )
    return status


def check_topic(known: Sequence[str], topic: str) -> str:
    """``topic``, when it is one of the ``known`` topics; InvalidInput otherwise."""
    if topic not in known:
        raise InvalidInput(
            "topic", f"unknown topic {topic!r}", hint=f"known topics: {', '.join(known)}"
        )
    return topic


def check_topics(known: Sequence[str], topics: Iterable[str]) -> tuple[str, ...]:
    """The chosen topics, each checked, in the order of ``known`` without repeats."""
    chosen = set(topics)
    for topic in chosen:
        check_topic(known, topic)
    return tuple(t for t in known if t in chosen)


# ---- the subscriber row ---------------------------------------------------------------


def lock_by_hash(conn: Connection, digest: str) -> Any:
    """The subscriber row, locked for this transaction (FOR UPDATE is a no-op on SQLite)."""
    return conn.execute(_ROW_BY_HASH, {"digest": digest}).first()


def lock_by_id(conn: Connection, sid: int) -> Any:
    return conn.execute(_ROW_BY_ID, {"sid": sid}).first()


def lock_ids(conn: Connection, ids: Sequence[int]) -> None:
    """Lock subscriber rows in id order (no deadlock between two lockers)."""
    sub = s.subscribers
    query = sa.select(sub.c.id).where(sub.c.id.in_(sorted(ids))).order_by(sub.c.id)
    conn.execute(query.with_for_update()).all()


def load(conn: Connection, where: Any) -> Subscriber | None:
    found = load_many(conn, where, 1)
    return found[0] if found else None


def load_many(conn: Connection, where: Any, limit: int) -> list[Subscriber]:
    query = sa.select(s.subscribers).where(where).order_by(s.subscribers.c.id).limit(limit)
    rows = conn.execute(query).all()
    topics = topics_of(conn, [r.id for r in rows]) if rows else {}
    return [_subscriber(r, topics.get(r.id, ())) for r in rows]


def _subscriber(row: Any, topics: tuple[str, ...]) -> Subscriber:
    return Subscriber(
        id=row.id,
        email=row.email,
        name=row.name,
        status=row.status,
        topics=topics,
        created_at=row.created_at,
        updated_at=row.updated_at,
        confirmed_at=row.confirmed_at,
        unsubscribed_at=row.unsubscribed_at,
        link_key=row.link_key,
    )


def update_subscriber(conn: Connection, sid: int, values: dict[str, Any]) -> None:
    conn.execute(_UPDATE_SUBSCRIBER, {"_sid": sid, **values})


# ---- topics, consents, events ---------------------------------------------------------


def topics_of(conn: Connection, ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
    found: dict[int, list[str]] = {}
    for sid, topic in conn.execute(_TOPICS_OF, {"ids": list(ids)}):
        found.setdefault(sid, []).append(topic)
    return {sid: tuple(topics) for sid, topics in found.items()}


def set_topics(conn: Connection, sid: int, topics: Sequence[str], *, new: bool = False) -> None:
    if not new:
        conn.execute(_DELETE_TOPICS, {"sid": sid})
    if topics:
        conn.execute(_INSERT_TOPIC, [{"subscriber_id": sid, "topic": topic} for topic in topics])


def consent_values(
    sid: int, consent: Consent, topics: Sequence[str], now: dt.datetime
) -> dict[str, Any]:
    return {
        "subscriber_id": sid,
        "kind": consent.kind,
        "topics": ",".join(topics),
        "created_at": now,
        **consent_fields(consent),
    }


def consent_fields(consent: Consent) -> dict[str, Any]:
    """Where and how a consent was given, cut to its columns' sizes (``consents`` and
    ``signup_requests`` store the same four)."""
    return {
        "source": consent.source[:200],
        "ip": (consent.ip or None) and consent.ip[:64],
        "user_agent": (consent.user_agent or None) and consent.user_agent[:500],
        "wording": consent.wording,
    }


def record_consent(
    conn: Connection, sid: int, consent: Consent, topics: Sequence[str], now: dt.datetime
) -> None:
    conn.execute(_INSERT_CONSENT, consent_values(sid, consent, topics, now))


def record_event(
    conn: Connection, sid: int | None, kind: str, now: dt.datetime, detail: str
) -> None:
    values = {"subscriber_id": sid, "kind": kind, "detail": detail[:1000], "created_at": now}
    conn.execute(INSERT_EVENT, values)


def recent_events(conn: Connection, sid: int, kind: str, since: dt.datetime) -> int:
    return conn.execute(_RECENT_EVENTS, {"sid": sid, "kind": kind, "since": since}).scalar_one()


# ---- suppressions and lookups by hash -------------------------------------------------


def suppression_reason(conn: Connection, digest: str) -> str | None:
    return conn.execute(_SUPPRESSION, {"digest": digest}).scalar()


def insert_suppression(
    conn: Connection, digest: str, reason: str, source: str, now: dt.datetime
) -> bool:
    if suppression_reason(conn, digest) is not None:
        return False
    values = {"email_hash": digest, "reason": reason, "source": source[:200], "created_at": now}
    try:
        with conn.begin_nested():
            conn.execute(s.suppressions.insert().values(**values))
    except sa.exc.IntegrityError:  # suppressed concurrently: same outcome
        return False
    return True


def existing_hashes(conn: Connection, digests: Sequence[str]) -> set[str]:
    col = s.subscribers.c.email_hash
    return _hashes_in(conn, col, digests)


def suppressed_hashes(conn: Connection, digests: Sequence[str]) -> set[str]:
    return _hashes_in(conn, s.suppressions.c.email_hash, digests)


def _hashes_in(conn: Connection, col: Any, digests: Sequence[str]) -> set[str]:
    found: set[str] = set()
    unique = sorted(set(digests))
    for start in range(0, len(unique), 500):
        query = sa.select(col).where(col.in_(unique[start : start + 500]))
        found.update(conn.execute(query).scalars())
    return found
