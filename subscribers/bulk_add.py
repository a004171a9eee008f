"""Adding a batch of subscribers at once: the CLI's ``add`` and ``import``.

The transaction of :meth:`Store.add_many`. Existing and suppressed addresses are left
as they are (an import never resubscribes anyone silently); the new ones are inserted
with their topics, consent and event in a few multi-row statements.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy.engine import Connection

from subscribers import schema as s
from subscribers.models import AddResult, Consent, NewSubscriber
from subscribers.rows import check_topics, consent_values, existing_hashes, suppressed_hashes
from subscribers.tokens import new_link_key
from subscribers.validation import email_hash


def add_batch(
    conn: Connection,
    rows: Sequence[NewSubscriber],
    *,
    confirmed: bool,
    consent: Consent,
    known_topics: Sequence[str],
    now: dt.datetime,
) -> list[AddResult]:
    """Classify ``rows`` and insert the new ones, in the caller's write transaction.
    ``known_topics``: the store's topics; each row's topics are checked against them."""
    digests = [email_hash(r.email) for r in rows]
    existing = existing_hashes(conn, digests)
    suppressed = suppressed_hashes(conn, digests)
    results, fresh = _classify(rows, digests, existing, suppressed)
    if fresh:
        ids = _insert_many(conn, fresh, "active" if confirmed else "pending", now)
        _attach_many(conn, fresh, ids, consent, now, confirmed, known_topics)
        results += [AddResult(r, "added", i) for r, i in zip(fresh, ids, strict=True)]
    return results


def _classify(
    rows: Sequence[NewSubscriber],
    digests: Sequence[str],
    existing: set[str],
    suppressed: set[str],
) -> tuple[list[AddResult], list[NewSubscriber]]:
    results: list[AddResult] = []
    fresh: list[NewSubscriber] = []
    seen: set[str] = set()
    for row, digest in zip(rows, digests, strict=True):
        if digest in suppressed:
            results.append(AddResult(row, "suppressed", None))
        elif digest in existing or digest in seen:
            results.append(AddResult(row, "exists", None))
        else:
            seen.add(digest)
            fresh.append(row)
    return results, fresh


def _insert_many(
    conn: Connection, rows: Sequence[NewSubscriber], status: str, now: dt.datetime
) -> list[int]:
    query = s.subscribers.insert().returning(s.subscribers.c.id, sort_by_parameter_order=True)
    values = [
        {
            "email": r.email,
            "email_hash": email_hash(r.email),
            "name": r.name,
            "status": status,
            "created_at": now,
            "updated_at": now,
            "confirmed_at": now if status == "active" else None,
            "link_key": new_link_key(),
        }
        for r in rows
    ]
    return list(conn.execute(query, values).scalars())


def _attach_many(
    conn: Connection,
    rows: Sequence[NewSubscriber],
    ids: Sequence[int],
    consent: Consent,
    now: dt.datetime,
    confirmed: bool,
    known_topics: Sequence[str],
) -> None:
    pairs = [(check_topics(known_topics, r.topics), i) for r, i in zip(rows, ids, strict=True)]
    topic_rows = [{"subscriber_id": i, "topic": t} for topics, i in pairs for t in topics]
    if topic_rows:
        conn.execute(s.subscriber_topics.insert(), topic_rows)
    conn.execute(
        s.consents.insert(), [consent_values(i, consent, topics, now) for topics, i in pairs]
    )
    kind = "added_confirmed" if confirmed else "added"
    conn.execute(
        s.events.insert(),
        [
            {"subscriber_id": i, "kind": kind, "detail": consent.source, "created_at": now}
            for _, i in pairs
        ],
    )
