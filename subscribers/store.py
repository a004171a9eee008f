"""The subscriber store: the public face of the subscriber database (SQLAlchemy Core).

SQLite by default (``var/newsletter.db``), PostgreSQL by URL. The schema upgrades itself
on open (see :mod:`subscribers.schema`). Every write is one short transaction; a
subscriber's row is locked (``SELECT ... FOR UPDATE`` on PostgreSQL, the database write
lock on SQLite) before it changes, so concurrent signups of the same address are safe.

:class:`Store` owns the engine, the transactions and the clock; the SQL of each concern
lives beside it: :mod:`subscribers.rows` (a subscriber's rows), :mod:`subscribers.opt_in`
(double opt-in), :mod:`subscribers.status_changes` (unsubscribe, preferences, removal,
suppression), :mod:`subscribers.confirmation_queue`, :mod:`subscribers.bulk_add`,
:mod:`subscribers.audience` (who may be mailed) and :mod:`subscribers.reports`; the
records it takes and gives are in :mod:`subscribers.models`.

For the send pipeline: :meth:`Store.eligible_recipients` streams
``(id, email, name, link_key)`` in id order page by page, :meth:`Store.still_eligible`
rechecks a batch just before it goes out, and :meth:`Store.suppress` /
:meth:`Store.mark_status` record what webhooks say.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipeline.settings import Settings
from subscribers import confirmation_queue, opt_in, reports, status_changes
from subscribers import schema as s
from subscribers.audience import (
    AUDIENCE_TABLES,
    eligible_among,
    eligible_clause,
    eligible_page,
    has_topic,
)
from subscribers.bulk_add import add_batch
from subscribers.db import make_engine, normalise_url, refresh_statistics, writer
from subscribers.errors import DatabaseUnavailable
from subscribers.models import (
    AddResult,
    Consent,
    NewSubscriber,
    PendingConfirmation,
    SignupOutcome,
    Stats,
    Subscriber,
)
from subscribers.rows import (
    check_status,
    check_topic,
    check_topics,
    hash_of,
    load,
    load_many,
    record_event,
    suppressed_hashes,
    suppression_reason,
)
from subscribers.validation import clean_name, email_hash, normalise_email

PAGE = 1000
Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Store:
    """All reads and writes of subscribers, consent, suppressions and events."""

    def __init__(
        self,
        url: str,
        *,
        topics: Sequence[str] = ("updates", "offers"),
        clock: Clock = utcnow,
        auto_migrate: bool = True,
    ) -> None:
        self.url = normalise_url(url)
        self.topics = tuple(topics)
        self.engine = make_engine(url)
        self._writer = writer(self.engine)
        # SQLite has one writer at a time. Threads of this process queue here (woken at
        # once) instead of in SQLite's busy handler, which sleeps 1, 2, 5, 10 ... ms
        # between tries; other processes still meet the busy timeout.
        self._write_lock = threading.RLock() if self.dialect == "sqlite" else nullcontext()
        self.now: Clock = clock  # the store's clock (tests pass their own)
        if auto_migrate:
            with self._errors():
                s.migrate(self.engine)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Store:
        return cls(settings.database_url, topics=list(settings.topics), **kwargs)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- transactions -------------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise DatabaseUnavailable(
                f"the subscriber database is unavailable: {exc.orig or exc}",
                hint=f"check NEWSLETTER_DATABASE_URL ({self.url.render_as_string()})",
            ) from exc

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (SQLite: BEGIN IMMEDIATE; one writer thread at a time).
        The store's modules (ledger, events, automation) write through it."""
        with self._errors(), self._write_lock, self._writer.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reading; database errors become DatabaseUnavailable."""
        with self._errors(), self.engine.connect() as conn:
            yield conn

    # ---- reading ------------------------------------------------------------------

    def refresh_statistics(
        self, tables: Sequence[str] = AUDIENCE_TABLES, added: Mapping[str, int] | None = None
    ) -> list[str]:
        """On PostgreSQL, ANALYZE those of ``tables`` whose planner statistics are stale
        (after a bulk import, or with autovacuum behind or off) before a query over the
        whole list; ``added``: rows this process just wrote. Returns the tables analyzed;
        a no-op on SQLite."""
        if self.dialect != "postgresql":
            return []
        with self.write() as conn:
            return refresh_statistics(conn, tables, added)

    def ping(self) -> None:
        """Raise DatabaseUnavailable unless the database answers."""
        with self.read() as conn:
            conn.execute(sa.select(1))

    def get(self, subscriber_id: int) -> Subscriber | None:
        with self.read() as conn:
            return load(conn, s.subscribers.c.id == subscriber_id)

    def find(self, email: str) -> Subscriber | None:
        with self.read() as conn:
            return load(conn, s.subscribers.c.email_hash == hash_of(email))

    def iter_subscribers(
        self, *, status: str | None = None, topic: str | None = None, page_size: int = PAGE
    ) -> Iterator[Subscriber]:
        """Every subscriber (optionally of one status / topic), in id order, page by page."""
        where = []
        if status:
            where.append(s.subscribers.c.status == check_status(status))
        if topic:
            where.append(has_topic(self._check_topic(topic)))
        for page in self._pages(sa.and_(sa.true(), *where), page_size):
            yield from page

    def _pages(self, where: Any, page_size: int) -> Iterator[list[Subscriber]]:
        after = 0
        while True:
            with self.read() as conn:
                page = load_many(conn, sa.and_(where, s.subscribers.c.id > after), page_size)
            if not page:
                return
            yield page
            after = page[-1].id

    def consents_for(self, subscriber_id: int) -> list[dict[str, Any]]:
        with self.read() as conn:
            return reports.consents_of(conn, [subscriber_id]).get(subscriber_id, [])

    def events_for(self, subscriber_id: int) -> list[dict[str, Any]]:
        with self.read() as conn:
            return reports.events_of(conn, [subscriber_id]).get(subscriber_id, [])

    def export_records(self, *, email: str | None = None) -> Iterator[dict[str, Any]]:
        """Everything held about each subscriber: fields, topics, consents, events."""
        where = s.subscribers.c.email_hash == hash_of(email) if email else sa.true()
        for page in self._pages(where, 500):
            ids = [sub.id for sub in page]
            with self.read() as conn:
                consent_map = reports.consents_of(conn, ids)
                event_map = reports.events_of(conn, ids)
                suppressed = suppressed_hashes(conn, [email_hash(x.email) for x in page])
            for sub in page:
                yield reports.export_record(sub, consent_map, event_map, suppressed)

    def count(self, status: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(s.subscribers)
        if status:
            query = query.where(s.subscribers.c.status == check_status(status))
        with self.read() as conn:
            return conn.execute(query).scalar_one()

    def stats(self) -> Stats:
        now = self.now()
        with self.read() as conn:
            return reports.stats(conn, self.topics, now)

    def suppression_reason(self, email: str) -> str | None:
        """Why an address is suppressed, or None when it is not."""
        with self.read() as conn:
            return suppression_reason(conn, hash_of(email))

    # ---- signup, confirmation, unsubscribe, preferences ----------------------------

    def signup(
        self, email: str, name: str, topics: Sequence[str], consent: Consent
    ) -> SignupOutcome:
        """Record a form signup (double opt-in). Never reveals state to the caller's visitor.

        A new address is stored as pending. For an address already held, nothing about
        that reader changes (name, topics, status) until they follow the link in the
        confirmation email this queues: the choices wait as a signup request.
        """
        email, name = normalise_email(email), clean_name(name)
        topics = self._check_topics(topics)
        now = self.now()
        digest = email_hash(email)
        if self.dialect == "postgresql":
            fresh = self._new_address(
                opt_in.new_row(email, digest, name, "pending", now), topics, consent
            )
            if fresh is not None:
                return SignupOutcome(fresh, "new", True)
        with self.write() as conn:
            return opt_in.signup(conn, email, digest, name, topics, consent, now)

    def _new_address(
        self, row: dict[str, Any], topics: Sequence[str], consent: Consent
    ) -> int | None:
        """PostgreSQL, the common case: one statement, atomic on its own, so it runs
        without BEGIN and COMMIT round trips (see :func:`opt_in.insert_new_address`)."""
        with self._errors(), self.engine.connect() as conn:
            auto = conn.execution_options(isolation_level="AUTOCOMMIT")
            return opt_in.insert_new_address(auto, row, topics, consent)

    def confirm(
        self,
        subscriber_id: int,
        email: str,
        consent: Consent,
        *,
        request_id: int | None = None,
    ) -> tuple[Subscriber, bool]:
        """Activate a subscriber from their confirmation link.

        Without ``request_id`` (a new address's first link) a pending subscriber becomes
        active; with it, the choices of that signup request apply (name, topics) and the
        reader becomes active whatever they were. Returns ``(subscriber, changed)``; a
        repeated click changes nothing. Raises NotFound for an unknown id or an address
        that no longer matches, Conflict when the link is no longer valid (the reader
        left, or chose again, after it was sent) or the address is suppressed.
        """
        now = self.now()
        with self.write() as conn:
            return opt_in.confirm(conn, subscriber_id, email, consent, request_id, self.topics, now)

    def unsubscribe(self, subscriber_id: int, *, source: str) -> Subscriber | None:
        """Stop all mail to this subscriber at once. Idempotent; None for an unknown id."""
        now = self.now()
        with self.write() as conn:
            return status_changes.unsubscribe(conn, subscriber_id, source, now)

    def update_preferences(
        self,
        subscriber_id: int,
        *,
        topics: Sequence[str],
        name: str | None = None,
        consent: Consent,
    ) -> Subscriber:
        """Change topics (and name). No topics means unsubscribe; choosing topics again
        after leaving resubscribes a confirmed, unsuppressed subscriber (explicitly, from
        their own link), recording the consent."""
        topics = self._check_topics(topics)
        now = self.now()
        with self.write() as conn:
            return status_changes.update_preferences(
                conn, subscriber_id, topics, name, consent, now
            )

    # ---- administration -----------------------------------------------------------

    def add_many(
        self,
        rows: Sequence[NewSubscriber],
        *,
        confirmed: bool,
        consent: Consent,
        dry_run: bool = False,
    ) -> list[AddResult]:
        """Add a batch in one transaction. Existing and suppressed addresses are left as
        they are (an import never resubscribes anyone silently). ``dry_run`` does all the
        work and rolls it back."""
        now = self.now()
        try:
            with self.write() as conn:
                results = add_batch(
                    conn,
                    rows,
                    confirmed=confirmed,
                    consent=consent,
                    known_topics=self.topics,
                    now=now,
                )
                if dry_run:
                    raise _RollBack(results)
        except _RollBack as rollback:
            results = rollback.results
        return sorted(results, key=lambda r: r.row.line)

    def remove(self, email: str, *, erase: bool = False, source: str = "cli") -> bool:
        """Unsubscribe an address, or with ``erase`` delete everything held about it
        except a suppression hash. Returns whether the address was in the store."""
        digest = hash_of(email)
        now = self.now()
        with self.write() as conn:
            return status_changes.remove(conn, digest, erase, source, now)

    # ---- the confirmation queue ---------------------------------------------------

    def claim_confirmations(
        self, *, limit: int = 100, ids: Sequence[int] | None = None
    ) -> tuple[str, list[PendingConfirmation]]:
        """Take up to ``limit`` due confirmation emails for one batch.

        The rows stay queued under a lease (CLAIM_LEASE) until :meth:`confirmations_sent`
        or :meth:`confirmation_failed`, so a mailer that dies mid-batch loses nothing:
        the lease runs out and another mailer sends them. Entries whose subscriber is no
        longer pending, or is suppressed, are dropped. ``ids`` limits the claim to those
        subscribers (the web app's inline mode).
        """
        claim, now = str(uuid.uuid4()), self.now()
        with self.write() as conn:
            pending = confirmation_queue.claim_due(conn, claim, now, limit, ids)
        return claim, pending

    def confirmation_for(self, subscriber_id: int) -> PendingConfirmation | None:
        """A confirmation email for a subscriber as stored (the CLI's add and import)."""
        with self.read() as conn:
            sub = load(conn, s.subscribers.c.id == subscriber_id)
        if sub is None:
            return None
        return PendingConfirmation(sub.id, sub.email, sub.name, sub.topics, sub.link_key)

    def confirmations_sent(self, claim: str, ids: Sequence[int]) -> None:
        """The provider took these: unqueue them (unless re-requested meanwhile)."""
        if not ids:
            return
        now = self.now()
        with self.write() as conn:
            confirmation_queue.mark_sent(conn, claim, ids, now)

    def confirmation_failed(
        self, claim: str, subscriber_id: int, error: str, *, retry: bool
    ) -> bool:
        """Back off and try again later, or give up. Returns True when it will be retried."""
        now = self.now()
        with self.write() as conn:
            return confirmation_queue.mark_failed(conn, claim, subscriber_id, error, retry, now)

    def queued_confirmations(self) -> int:
        with self.read() as conn:
            return confirmation_queue.queued(conn)

    # ---- the send pipeline's side -------------------------------------------------

    def eligible_recipients(
        self, topic: str, *, page_size: int = PAGE
    ) -> Iterator[tuple[int, str, str, str]]:
        """``(id, email, name, link_key)`` of every confirmed, active, unsuppressed
        subscriber of ``topic``, in id order. Reads one page per short transaction
        (keyset paging), so memory stays flat and no lock is held while the caller sends."""
        where = eligible_clause(self._check_topic(topic))
        after = 0
        while True:
            with self.read() as conn:
                page = eligible_page(conn, where, after, page_size)
            yield from ((r.id, r.email, r.name, r.link_key) for r in page)
            if len(page) < page_size:
                return
            after = page[-1].id

    def still_eligible(self, ids: Iterable[int], topic: str) -> set[int]:
        """Which of ``ids`` may still be mailed for ``topic`` right now."""
        where = eligible_clause(self._check_topic(topic))
        wanted = sorted(set(ids))
        with self.read() as conn:
            return eligible_among(conn, where, wanted)

    def suppress(self, email: str, reason: str, *, source: str = "") -> bool:
        """Never mail this address again (bounce, complaint, erasure, manual).

        ``bounced`` and ``complained`` also set the subscriber's status. Idempotent;
        returns True when the address was newly suppressed.
        """
        digest = hash_of(email)
        now = self.now()
        with self.write() as conn:
            return status_changes.suppress(conn, digest, reason, source, now)

    def mark_status(self, subscriber: int | str, status: str, *, reason: str = "") -> bool:
        """Set a subscriber's status by id or email. Returns False when nobody matched."""
        status = check_status(status)
        now = self.now()
        with self.write() as conn:
            return status_changes.mark_status(conn, subscriber, status, reason, now)

    def log_event(self, subscriber_id: int | None, kind: str, detail: str = "") -> None:
        with self.write() as conn:
            record_event(conn, subscriber_id, kind, self.now(), detail)

    # ---- checks -------------------------------------------------------------------

    def _check_topic(self, topic: str) -> str:
        return check_topic(self.topics, topic)

    def _check_topics(self, topics: Iterable[str]) -> tuple[str, ...]:
        return check_topics(self.topics, topics)


class _RollBack(Exception):  # noqa: N818 - control flow, never escapes this module
    def __init__(self, results: list[AddResult]) -> None:
        self.results = results


__all__ = ["PAGE", "Clock", "Store", "utcnow"]
