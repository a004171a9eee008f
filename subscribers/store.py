"""The subscriber store: the only module with SQL in it (SQLAlchemy Core, one code path).

SQLite by default (``var/newsletter.db``), PostgreSQL by URL. The schema upgrades itself
on open (see :mod:`subscribers.schema`). Every write is one short transaction; a
subscriber's row is locked (``SELECT ... FOR UPDATE`` on PostgreSQL, the database write
lock on SQLite) before it changes, so concurrent signups of the same address are safe.

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
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from pipeline.settings import ALL_TOPICS, Settings
from subscribers import schema as s
from subscribers import signup_requests
from subscribers.db import make_engine, normalise_url, refresh_statistics, writer
from subscribers.errors import Conflict, DatabaseUnavailable, InvalidInput, NotFound
from subscribers.tokens import new_link_key
from subscribers.validation import clean_name, email_hash, email_key, normalise_email

CONFIRMATION_CAP = 5  # confirmation emails per address per CONFIRMATION_WINDOW
CONFIRMATION_WINDOW = dt.timedelta(hours=1)
PENDING_EXPIRY = dt.timedelta(days=7)  # the confirm token's lifetime
SUPPRESSION_STATUS = {"bounced": "bounced", "complained": "complained"}
PAGE = 1000
CLAIM_LEASE = dt.timedelta(minutes=2)  # a mailer batch must finish within this
CONFIRMATION_ATTEMPTS = 8
RETRY_BASE = dt.timedelta(seconds=30)  # 30 s, 1 min, 2 min ... capped at RETRY_MAX
RETRY_MAX = dt.timedelta(hours=1)
AUDIENCE_TABLES = ("subscribers", "subscriber_topics", "suppressions")  # eligible_clause
Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class Consent:
    """What a person agreed to and where: stored with every signup, confirmation, import."""

    kind: str  # signup | confirm | import | admin | preferences
    source: str  # form id ("article", "hosted"), "import:FILE", "cli"
    wording: str = ""
    ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    email: str
    name: str
    status: str
    topics: tuple[str, ...]
    created_at: dt.datetime
    updated_at: dt.datetime
    confirmed_at: dt.datetime | None = None
    unsubscribed_at: dt.datetime | None = None
    link_key: str = field(default="", repr=False)  # signs this person's links (tokens)


@dataclass(frozen=True, slots=True)
class SignupOutcome:
    """``action``: new | resend | capped | suppressed.

    ``new``: a new address, stored as pending. ``resend``: an address already held
    (whatever its status); nothing about it changed, a signup request waits for the
    link in the confirmation email. ``send_confirmation`` is True when a confirmation
    email was queued (see :meth:`Store.claim_confirmations`).
    """

    subscriber_id: int | None
    action: str
    send_confirmation: bool


@dataclass(frozen=True, slots=True)
class PendingConfirmation:
    """A confirmation email to send now (from :meth:`Store.claim_confirmations`)."""

    subscriber_id: int
    email: str
    name: str  # the name to greet: the one asked for in the request, if any
    topics: tuple[str, ...]  # the topics the link will confirm
    link_key: str = field(default="", repr=False)
    request_id: int | None = None  # the signup request the link applies (None: a new address)


@dataclass(frozen=True, slots=True)
class NewSubscriber:
    """One row for :meth:`Store.add_many` (already validated)."""

    email: str
    name: str = ""
    topics: tuple[str, ...] = ()
    line: int = 0  # where it came from, for reports


@dataclass(frozen=True, slots=True)
class AddResult:
    row: NewSubscriber
    outcome: str  # added | exists | suppressed
    subscriber_id: int | None


@dataclass(slots=True)
class Stats:
    total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    active_by_topic: dict[str, int] = field(default_factory=dict)
    suppressed: int = 0
    pending_expired: int = 0
    signups_7d: int = 0


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
            return _load(conn, s.subscribers.c.id == subscriber_id)

    def find(self, email: str) -> Subscriber | None:
        with self.read() as conn:
            return _load(conn, s.subscribers.c.email_hash == _hash_of(email))

    def iter_subscribers(
        self, *, status: str | None = None, topic: str | None = None, page_size: int = PAGE
    ) -> Iterator[Subscriber]:
        """Every subscriber (optionally of one status / topic), in id order, page by page."""
        where = []
        if status:
            where.append(s.subscribers.c.status == _check_status(status))
        if topic:
            where.append(_has_topic(self._check_topic(topic)))
        for page in self._pages(sa.and_(sa.true(), *where), page_size):
            yield from page

    def _pages(self, where: Any, page_size: int) -> Iterator[list[Subscriber]]:
        after = 0
        while True:
            with self.read() as conn:
                page = _load_many(conn, sa.and_(where, s.subscribers.c.id > after), page_size)
            if not page:
                return
            yield page
            after = page[-1].id

    def consents_for(self, subscriber_id: int) -> list[dict[str, Any]]:
        with self.read() as conn:
            return _consents(conn, [subscriber_id]).get(subscriber_id, [])

    def events_for(self, subscriber_id: int) -> list[dict[str, Any]]:
        with self.read() as conn:
            return _events(conn, [subscriber_id]).get(subscriber_id, [])

    def export_records(self, *, email: str | None = None) -> Iterator[dict[str, Any]]:
        """Everything held about each subscriber: fields, topics, consents, events."""
        where = s.subscribers.c.email_hash == _hash_of(email) if email else sa.true()
        for page in self._pages(where, 500):
            ids = [sub.id for sub in page]
            with self.read() as conn:
                consent_map, event_map = _consents(conn, ids), _events(conn, ids)
                suppressed = _suppressed_hashes(conn, [email_hash(x.email) for x in page])
            for sub in page:
                yield _export_record(sub, consent_map, event_map, suppressed)

    def count(self, status: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(s.subscribers)
        if status:
            query = query.where(s.subscribers.c.status == _check_status(status))
        with self.read() as conn:
            return conn.execute(query).scalar_one()

    def stats(self) -> Stats:
        now = self.now()
        with self.read() as conn:
            return _stats(conn, self.topics, now)

    def suppression_reason(self, email: str) -> str | None:
        """Why an address is suppressed, or None when it is not."""
        with self.read() as conn:
            return _suppression_reason(conn, _hash_of(email))

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
                _new_row(email, digest, name, "pending", now), topics, consent
            )
            if fresh is not None:
                return SignupOutcome(fresh, "new", True)
        with self.write() as conn:
            row = _lock_by_hash(conn, digest)
            if _suppression_reason(conn, digest):
                _event(conn, row.id if row else None, "signup_suppressed", now, consent.source)
                return SignupOutcome(row.id if row else None, "suppressed", False)
            if row is None:
                sid, created = _insert_subscriber(conn, email, name, "pending", now)
                if created:
                    return self._new_signup(conn, sid, topics, consent, now)
                row = _lock_by_id(conn, sid)
            return self._known_signup(conn, row, name, topics, consent, now)

    def _new_address(
        self, row: dict[str, Any], topics: Sequence[str], consent: Consent
    ) -> int | None:
        """PostgreSQL, the common case: one statement, atomic on its own, so it runs
        without BEGIN and COMMIT round trips (see :func:`_insert_new_address`)."""
        with self._errors(), self.engine.connect() as conn:
            auto = conn.execution_options(isolation_level="AUTOCOMMIT")
            return _insert_new_address(auto, row, topics, consent)

    def _new_signup(
        self, conn: Connection, sid: int, topics: Sequence[str], consent: Consent, now: dt.datetime
    ) -> SignupOutcome:
        _set_topics(conn, sid, topics, new=True)
        _consent(conn, sid, consent, topics, now)
        _event(conn, sid, "confirmation_queued", now, consent.source)
        _enqueue_confirmation(conn, sid, now, new=True)
        return SignupOutcome(sid, "new", True)

    def _known_signup(
        self,
        conn: Connection,
        row: Any,
        name: str,
        topics: Sequence[str],
        consent: Consent,
        now: dt.datetime,
    ) -> SignupOutcome:
        """Changes nothing about the reader: records a request and mails its link."""
        if _recent_events(conn, row.id, "confirmation_queued", now - CONFIRMATION_WINDOW) >= (
            CONFIRMATION_CAP
        ):
            _event(conn, row.id, "confirmation_capped", now, consent.source)
            return SignupOutcome(row.id, "capped", False)
        request_id = signup_requests.add(conn, row.id, name or None, topics, consent, now)
        _event(conn, row.id, "confirmation_queued", now, consent.source)
        _enqueue_confirmation(conn, row.id, now, new=False, request_id=request_id)
        return SignupOutcome(row.id, "resend", True)

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
            row = _lock_by_id(conn, subscriber_id)
            if row is None or email_key(row.email) != email_key(email):
                raise NotFound("this confirmation link is not valid", hint="sign up again")
            if request_id is not None:
                return self._confirm_request(conn, row, request_id, consent, now)
            if row.status == "active":
                return _load(conn, s.subscribers.c.id == row.id), False
            if row.status != "pending" or _suppression_reason(conn, row.email_hash):
                raise Conflict(
                    "this confirmation link is no longer valid",
                    hint="sign up again to get a fresh link",
                )
            _update(conn, row.id, {"status": "active", "confirmed_at": now, "updated_at": now})
            topics = _topics(conn, [row.id]).get(row.id, ())
            _consent(conn, row.id, consent, topics, now)
            _event(conn, row.id, "confirmed", now, consent.source)
            return _load(conn, s.subscribers.c.id == row.id), True

    def _confirm_request(
        self, conn: Connection, row: Any, request_id: int, consent: Consent, now: dt.datetime
    ) -> tuple[Subscriber, bool]:
        request = signup_requests.get(conn, request_id, row.id)
        if request is None:  # used, or withdrawn by a later choice
            if row.status == "active":
                return _load(conn, s.subscribers.c.id == row.id), False  # type: ignore[return-value]
            raise Conflict(
                "this confirmation link is no longer valid",
                hint="sign up again to get a fresh link",
            )
        if _suppression_reason(conn, row.email_hash):
            raise Conflict(
                "this address is blocked from our mailings",
                hint="reply to any of our emails if you want to receive them again",
            )
        topics = tuple(t for t in self.topics if t in signup_requests.topics_of(request))
        values: dict[str, Any] = {"status": "active", "updated_at": now}
        if row.confirmed_at is None:
            values["confirmed_at"] = now
        if request.name is not None:
            values["name"] = request.name
        _update(conn, row.id, values)
        _set_topics(conn, row.id, topics)
        asked = Consent("signup", request.source, request.wording, request.ip, request.user_agent)
        _consent(conn, row.id, asked, topics, request.created_at)
        _consent(conn, row.id, consent, topics, now)
        _event(conn, row.id, "confirmed", now, consent.source)
        signup_requests.withdraw(conn, row.id)  # this link is used; older ones are superseded
        return _load(conn, s.subscribers.c.id == row.id), True  # type: ignore[return-value]

    def unsubscribe(self, subscriber_id: int, *, source: str) -> Subscriber | None:
        """Stop all mail to this subscriber at once. Idempotent; None for an unknown id."""
        now = self.now()
        with self.write() as conn:
            row = _lock_by_id(conn, subscriber_id)
            if row is None:
                return None
            signup_requests.withdraw(conn, row.id)  # no confirmation link may undo this
            if row.status in ("active", "pending"):
                values = {"status": "unsubscribed", "unsubscribed_at": now, "updated_at": now}
                _update(conn, row.id, values)
                _event(conn, row.id, "unsubscribed", now, source)
            return _load(conn, s.subscribers.c.id == row.id)

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
            row = _lock_by_id(conn, subscriber_id)
            if row is None:
                raise NotFound("this link is not valid", hint="use the link from your latest email")
            signup_requests.withdraw(conn, row.id)  # the latest explicit choice wins
            values: dict[str, Any] = {"updated_at": now}
            if name is not None:
                values["name"] = clean_name(name)
            values.update(self._status_change(conn, row, topics, consent, now))
            _update(conn, row.id, values)
            if topics:
                _set_topics(conn, row.id, topics)
            _event(conn, row.id, "preferences", now, ",".join(topics) or "none")
            return _load(conn, s.subscribers.c.id == row.id)

    def _status_change(
        self, conn: Connection, row: Any, topics: Sequence[str], consent: Consent, now: dt.datetime
    ) -> dict[str, Any]:
        if not topics:
            if row.status in ("active", "pending"):
                _event(conn, row.id, "unsubscribed", now, consent.source)
                return {"status": "unsubscribed", "unsubscribed_at": now}
            return {}
        if row.status == "active" or row.confirmed_at is None or row.status == "pending":
            return {}
        if _suppression_reason(conn, row.email_hash):
            raise Conflict(
                "this address is blocked from our mailings",
                hint="reply to any of our emails if you want to receive them again",
            )
        _consent(conn, row.id, consent, topics, now)
        _event(conn, row.id, "resubscribed", now, consent.source)
        return {"status": "active"}

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
                existing = _existing_hashes(conn, [email_hash(r.email) for r in rows])
                suppressed = _suppressed_hashes(conn, [email_hash(r.email) for r in rows])
                results, fresh = _classify(rows, existing, suppressed)
                if fresh:
                    ids = _insert_many(conn, fresh, "active" if confirmed else "pending", now)
                    self._attach_many(conn, fresh, ids, consent, now, confirmed)
                    results += [AddResult(r, "added", i) for r, i in zip(fresh, ids, strict=True)]
                if dry_run:
                    raise _RollBack(results)
        except _RollBack as rollback:
            results = rollback.results
        return sorted(results, key=lambda r: r.row.line)

    def _attach_many(
        self,
        conn: Connection,
        rows: Sequence[NewSubscriber],
        ids: Sequence[int],
        consent: Consent,
        now: dt.datetime,
        confirmed: bool,
    ) -> None:
        pairs = list(zip(rows, ids, strict=True))
        topic_rows = [
            {"subscriber_id": i, "topic": t} for r, i in pairs for t in self._check_topics(r.topics)
        ]
        if topic_rows:
            conn.execute(s.subscriber_topics.insert(), topic_rows)
        conn.execute(
            s.consents.insert(),
            [_consent_values(i, consent, self._check_topics(r.topics), now) for r, i in pairs],
        )
        kind = "added_confirmed" if confirmed else "added"
        conn.execute(
            s.events.insert(),
            [
                {"subscriber_id": i, "kind": kind, "detail": consent.source, "created_at": now}
                for _, i in pairs
            ],
        )

    def remove(self, email: str, *, erase: bool = False, source: str = "cli") -> bool:
        """Unsubscribe an address, or with ``erase`` delete everything held about it
        except a suppression hash. Returns whether the address was in the store."""
        digest = _hash_of(email)
        now = self.now()
        with self.write() as conn:
            row = _lock_by_hash(conn, digest)
            if not erase:
                if row is not None:
                    signup_requests.withdraw(conn, row.id)
                if row is not None and row.status in ("active", "pending"):
                    values = {"status": "unsubscribed", "unsubscribed_at": now, "updated_at": now}
                    _update(conn, row.id, values)
                    _event(conn, row.id, "removed", now, source)
                return row is not None
            if row is not None:
                conn.execute(s.subscribers.delete().where(s.subscribers.c.id == row.id))
            _insert_suppression(conn, digest, "erased", source, now)
            _event(conn, None, "erased", now, "")
            return row is not None

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
            rows = conn.execute(_due_confirmations(now, limit, ids)).all()
            gone = [r.subscriber_id for r in rows if _not_to_confirm(r)]
            keep = [r for r in rows if r.subscriber_id not in set(gone)]
            _queue_delete(conn, gone)
            if keep:
                conn.execute(
                    _claim_rows([r.subscriber_id for r in keep]),
                    {"new_claim": claim, "lease_end": now + CLAIM_LEASE},
                )
            topics = _topics(conn, [r.subscriber_id for r in keep]) if keep else {}
        return claim, [_pending(r, topics.get(r.subscriber_id, ())) for r in keep]

    def confirmation_for(self, subscriber_id: int) -> PendingConfirmation | None:
        """A confirmation email for a subscriber as stored (the CLI's add and import)."""
        with self.read() as conn:
            sub = _load(conn, s.subscribers.c.id == subscriber_id)
        if sub is None:
            return None
        return PendingConfirmation(sub.id, sub.email, sub.name, sub.topics, sub.link_key)

    def confirmations_sent(self, claim: str, ids: Sequence[int]) -> None:
        """The provider took these: unqueue them (unless re-requested meanwhile)."""
        if not ids:
            return
        now = self.now()
        with self.write() as conn:
            _lock_ids(conn, ids)
            q = s.confirmation_queue
            conn.execute(q.delete().where(q.c.claim == claim, q.c.subscriber_id.in_(list(ids))))
            conn.execute(
                _INSERT_EVENT,
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

    def confirmation_failed(
        self, claim: str, subscriber_id: int, error: str, *, retry: bool
    ) -> bool:
        """Back off and try again later, or give up. Returns True when it will be retried."""
        now = self.now()
        q = s.confirmation_queue
        mine = sa.and_(q.c.claim == claim, q.c.subscriber_id == subscriber_id)
        with self.write() as conn:
            _lock_ids(conn, [subscriber_id])
            attempts = conn.execute(sa.select(q.c.attempts).where(mine)).scalar()
            if attempts is None:  # re-requested meanwhile: the new request stands
                return True
            if retry and attempts + 1 < CONFIRMATION_ATTEMPTS:
                delay = min(RETRY_BASE * 2**attempts, RETRY_MAX)
                values = {"claim": None, "attempts": attempts + 1, "due_at": now + delay}
                conn.execute(q.update().where(mine).values(last_error=error[:1000], **values))
                return True
            conn.execute(q.delete().where(mine))
            _event(conn, subscriber_id, "confirmation_failed", now, error)
            return False

    def queued_confirmations(self) -> int:
        with self.read() as conn:
            query = sa.select(sa.func.count()).select_from(s.confirmation_queue)
            return conn.execute(query).scalar_one()

    # ---- the send pipeline's side -------------------------------------------------

    def eligible_recipients(
        self, topic: str, *, page_size: int = PAGE
    ) -> Iterator[tuple[int, str, str, str]]:
        """``(id, email, name, link_key)`` of every confirmed, active, unsuppressed
        subscriber of ``topic``, in id order. Reads one page per short transaction
        (keyset paging), so memory stays flat and no lock is held while the caller sends."""
        where = _eligible(self._check_topic(topic))
        sub = s.subscribers
        cols = (sub.c.id, sub.c.email, sub.c.name, sub.c.link_key)
        after = 0
        while True:
            query = sa.select(*cols).where(where, s.subscribers.c.id > after)
            with self.read() as conn:
                page = conn.execute(query.order_by(s.subscribers.c.id).limit(page_size)).all()
            yield from ((r.id, r.email, r.name, r.link_key) for r in page)
            if len(page) < page_size:
                return
            after = page[-1].id

    def still_eligible(self, ids: Iterable[int], topic: str) -> set[int]:
        """Which of ``ids`` may still be mailed for ``topic`` right now."""
        where = _eligible(self._check_topic(topic))
        wanted = sorted(set(ids))
        found: set[int] = set()
        with self.read() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                query = sa.select(s.subscribers.c.id).where(where, s.subscribers.c.id.in_(chunk))
                found.update(conn.execute(query).scalars())
        return found

    def suppress(self, email: str, reason: str, *, source: str = "") -> bool:
        """Never mail this address again (bounce, complaint, erasure, manual).

        ``bounced`` and ``complained`` also set the subscriber's status. Idempotent;
        returns True when the address was newly suppressed.
        """
        digest = _hash_of(email)
        now = self.now()
        with self.write() as conn:
            added = _insert_suppression(conn, digest, reason[:32], source, now)
            row = _lock_by_hash(conn, digest)
            if row is not None:
                if reason in SUPPRESSION_STATUS and row.status != SUPPRESSION_STATUS[reason]:
                    _update(conn, row.id, {"status": SUPPRESSION_STATUS[reason], "updated_at": now})
                _event(conn, row.id, "suppressed", now, f"{reason} {source}".strip())
            return added

    def mark_status(self, subscriber: int | str, status: str, *, reason: str = "") -> bool:
        """Set a subscriber's status by id or email. Returns False when nobody matched."""
        status = _check_status(status)
        now = self.now()
        with self.write() as conn:
            if isinstance(subscriber, int):
                row = _lock_by_id(conn, subscriber)
            else:
                row = _lock_by_hash(conn, _hash_of(subscriber))
            if row is None:
                return False
            _update(conn, row.id, _status_values(row, status, now))
            _event(conn, row.id, f"status_{status}", now, reason)
            return True

    def log_event(self, subscriber_id: int | None, kind: str, detail: str = "") -> None:
        with self.write() as conn:
            _event(conn, subscriber_id, kind, self.now(), detail)

    # ---- checks -------------------------------------------------------------------

    def _check_topic(self, topic: str) -> str:
        if topic not in self.topics:
            raise InvalidInput(
                "topic", f"unknown topic {topic!r}", hint=f"known topics: {', '.join(self.topics)}"
            )
        return topic

    def _check_topics(self, topics: Iterable[str]) -> tuple[str, ...]:
        chosen = set(topics)
        for topic in chosen:
            self._check_topic(topic)
        return tuple(t for t in self.topics if t in chosen)


# ---- query helpers (module level: small, and all the SQL in one file) -----------------


class _RollBack(Exception):  # noqa: N818 - control flow, never escapes this module
    def __init__(self, results: list[AddResult]) -> None:
        self.results = results


def _hash_of(email: str) -> str:
    """Hash of an address as given by a person or a provider: normalised when valid."""
    try:
        return email_hash(normalise_email(email))
    except InvalidInput:
        return email_hash(email.strip())


def _check_status(status: str) -> str:
    if status not in s.STATUSES:
        raise InvalidInput(
            "status", f"unknown status {status!r}", hint=f"one of: {', '.join(s.STATUSES)}"
        )
    return status


def _status_values(row: Any, status: str, now: dt.datetime) -> dict[str, Any]:
    values: dict[str, Any] = {"status": status, "updated_at": now}
    if status == "active" and row.confirmed_at is None:
        values["confirmed_at"] = now
    if status == "unsubscribed" and row.status != "unsubscribed":
        values["unsubscribed_at"] = now
    return values


def _has_topic(topic: str) -> Any:
    t = s.subscriber_topics
    return sa.exists().where(t.c.subscriber_id == s.subscribers.c.id, t.c.topic == topic)


def _eligible(topic: str) -> Any:
    sup = s.suppressions
    return sa.and_(
        s.subscribers.c.status == "active",
        s.subscribers.c.confirmed_at.is_not(None),
        _has_any_topic() if topic == ALL_TOPICS else _has_topic(topic),
        ~sa.exists().where(sup.c.email_hash == s.subscribers.c.email_hash),
    )


def eligible_clause(topic: str) -> Any:
    """Where a subscriber may be mailed for ``topic`` now: confirmed, active, not
    suppressed, and subscribed to the topic (``ALL_TOPICS``: to any topic)."""
    return _eligible(topic)


def _has_any_topic() -> Any:
    t = s.subscriber_topics
    return sa.exists().where(t.c.subscriber_id == s.subscribers.c.id)


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
_UPDATE_SUBSCRIBER = s.subscribers.update().where(s.subscribers.c.id == sa.bindparam("_sid"))
_DELETE_TOPICS = s.subscriber_topics.delete().where(
    s.subscriber_topics.c.subscriber_id == sa.bindparam("sid")
)
_INSERT_TOPIC = s.subscriber_topics.insert()
_INSERT_CONSENT = s.consents.insert()
_INSERT_EVENT = s.events.insert()
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
_QUEUE_DELETE = s.confirmation_queue.delete().where(
    s.confirmation_queue.c.subscriber_id == sa.bindparam("sid")
)
_QUEUE_INSERT = s.confirmation_queue.insert()


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


def _lock_ids(conn: Connection, ids: Sequence[int]) -> None:
    """Lock subscriber rows in id order (no deadlock between two lockers)."""
    sub = s.subscribers
    query = sa.select(sub.c.id).where(sub.c.id.in_(sorted(ids))).order_by(sub.c.id)
    conn.execute(query.with_for_update()).all()


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


def _lock_by_hash(conn: Connection, digest: str) -> Any:
    """The subscriber row, locked for this transaction (FOR UPDATE is a no-op on SQLite)."""
    return conn.execute(_ROW_BY_HASH, {"digest": digest}).first()


def _lock_by_id(conn: Connection, sid: int) -> Any:
    return conn.execute(_ROW_BY_ID, {"sid": sid}).first()


def _load(conn: Connection, where: Any) -> Subscriber | None:
    found = _load_many(conn, where, 1)
    return found[0] if found else None


def _load_many(conn: Connection, where: Any, limit: int) -> list[Subscriber]:
    query = sa.select(s.subscribers).where(where).order_by(s.subscribers.c.id).limit(limit)
    rows = conn.execute(query).all()
    topics = _topics(conn, [r.id for r in rows]) if rows else {}
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


def _topics(conn: Connection, ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
    found: dict[int, list[str]] = {}
    for sid, topic in conn.execute(_TOPICS_OF, {"ids": list(ids)}):
        found.setdefault(sid, []).append(topic)
    return {sid: tuple(topics) for sid, topics in found.items()}


def _set_topics(conn: Connection, sid: int, topics: Sequence[str], *, new: bool = False) -> None:
    if not new:
        conn.execute(_DELETE_TOPICS, {"sid": sid})
    if topics:
        conn.execute(_INSERT_TOPIC, [{"subscriber_id": sid, "topic": topic} for topic in topics])


def _enqueue_confirmation(
    conn: Connection, sid: int, now: dt.datetime, *, new: bool, request_id: int | None = None
) -> None:
    """Queue a confirmation email; a newer request replaces an older one (and its claim)."""
    if not new:
        conn.execute(_QUEUE_DELETE, {"sid": sid})
    values = {"subscriber_id": sid, "due_at": now, "attempts": 0, "request_id": request_id}
    conn.execute(_QUEUE_INSERT, values)


def _insert_new_address(
    conn: Connection, row: dict[str, Any], topics: Sequence[str], consent: Consent
) -> int | None:
    """PostgreSQL, the common case in one statement: an address neither present nor
    suppressed is stored pending with its topics, consent, event and queued confirmation;
    returns its id (the insert holds the row's lock). None: present or suppressed, for
    the full path. One round trip where the full path takes eight."""
    agreed = _consent_values(0, consent, topics, row["created_at"])
    del agreed["subscriber_id"]
    values = {
        **agreed,
        **row,  # the same created_at
        "topic_list": agreed["topics"],
        "topics": list(topics),
        "detail": consent.source[:1000],
    }
    return conn.execute(_SIGNUP_NEW_ADDRESS, values).scalar_one_or_none()


def _new_row(email: str, digest: str, name: str, status: str, now: dt.datetime) -> dict[str, Any]:
    return {
        "email": email,
        "email_hash": digest,
        "name": name,
        "status": status,
        "created_at": now,
        "updated_at": now,
        "link_key": new_link_key(),
    }


def _insert_subscriber(
    conn: Connection, email: str, name: str, status: str, now: dt.datetime
) -> tuple[int, bool]:
    """Insert a new row, or find the one a concurrent transaction just inserted.

    Returns ``(id, created)``. PostgreSQL: ``ON CONFLICT DO NOTHING`` waits for a
    concurrent signup of the same address and then yields to it, in one statement (a
    savepoint around a plain INSERT cost two more round trips on every signup).
    """
    digest = email_hash(email)
    values = _new_row(email, digest, name, status, now)
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


def _classify(
    rows: Sequence[NewSubscriber], existing: set[str], suppressed: set[str]
) -> tuple[list[AddResult], list[NewSubscriber]]:
    results: list[AddResult] = []
    fresh: list[NewSubscriber] = []
    seen: set[str] = set()
    for row in rows:
        digest = email_hash(row.email)
        if digest in suppressed:
            results.append(AddResult(row, "suppressed", None))
        elif digest in existing or digest in seen:
            results.append(AddResult(row, "exists", None))
        else:
            seen.add(digest)
            fresh.append(row)
    return results, fresh


def _update(conn: Connection, sid: int, values: dict[str, Any]) -> None:
    conn.execute(_UPDATE_SUBSCRIBER, {"_sid": sid, **values})


def _consent_values(
    sid: int, consent: Consent, topics: Sequence[str], now: dt.datetime
) -> dict[str, Any]:
    return {
        "subscriber_id": sid,
        "kind": consent.kind,
        "source": consent.source[:200],
        "topics": ",".join(topics),
        "ip": (consent.ip or None) and consent.ip[:64],
        "user_agent": (consent.user_agent or None) and consent.user_agent[:500],
        "wording": consent.wording,
        "created_at": now,
    }


def _consent(
    conn: Connection, sid: int, consent: Consent, topics: Sequence[str], now: dt.datetime
) -> None:
    conn.execute(_INSERT_CONSENT, _consent_values(sid, consent, topics, now))


def _event(conn: Connection, sid: int | None, kind: str, now: dt.datetime, detail: str) -> None:
    values = {"subscriber_id": sid, "kind": kind, "detail": detail[:1000], "created_at": now}
    conn.execute(_INSERT_EVENT, values)


def _recent_events(conn: Connection, sid: int, kind: str, since: dt.datetime) -> int:
    return conn.execute(_RECENT_EVENTS, {"sid": sid, "kind": kind, "since": since}).scalar_one()


def _suppression_reason(conn: Connection, digest: str) -> str | None:
    return conn.execute(_SUPPRESSION, {"digest": digest}).scalar()


def _insert_suppression(
    conn: Connection, digest: str, reason: str, source: str, now: dt.datetime
) -> bool:
    if _suppression_reason(conn, digest) is not None:
        return False
    values = {"email_hash": digest, "reason": reason, "source": source[:200], "created_at": now}
    try:
        with conn.begin_nested():
            conn.execute(s.suppressions.insert().values(**values))
    except sa.exc.IntegrityError:  # suppressed concurrently: same outcome
        return False
    return True


def _existing_hashes(conn: Connection, digests: Sequence[str]) -> set[str]:
    col = s.subscribers.c.email_hash
    return _hashes_in(conn, col, digests)


def _suppressed_hashes(conn: Connection, digests: Sequence[str]) -> set[str]:
    return _hashes_in(conn, s.suppressions.c.email_hash, digests)


def _hashes_in(conn: Connection, col: Any, digests: Sequence[str]) -> set[str]:
    found: set[str] = set()
    unique = sorted(set(digests))
    for start in range(0, len(unique), 500):
        query = sa.select(col).where(col.in_(unique[start : start + 500]))
        found.update(conn.execute(query).scalars())
    return found


def _consents(conn: Connection, ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    c = s.consents
    query = sa.select(c).where(c.c.subscriber_id.in_(ids)).order_by(c.c.id)
    found: dict[int, list[dict[str, Any]]] = {}
    for row in conn.execute(query).mappings():
        record = {k: row[k] for k in ("kind", "source", "topics", "ip", "user_agent", "wording")}
        record["at"] = _iso(row["created_at"])
        found.setdefault(row["subscriber_id"], []).append(record)
    return found


def _events(conn: Connection, ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    e = s.events
    query = sa.select(e).where(e.c.subscriber_id.in_(ids)).order_by(e.c.id)
    found: dict[int, list[dict[str, Any]]] = {}
    for row in conn.execute(query):
        record = {"kind": row.kind, "detail": row.detail, "at": _iso(row.created_at)}
        found.setdefault(row.subscriber_id, []).append(record)
    return found


def _iso(value: dt.datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def _export_record(
    sub: Subscriber,
    consent_map: dict[int, list[dict[str, Any]]],
    event_map: dict[int, list[dict[str, Any]]],
    suppressed: set[str],
) -> dict[str, Any]:
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


def _stats(conn: Connection, topics: Sequence[str], now: dt.datetime) -> Stats:
    sub = s.subscribers
    stats = Stats()
    by_status = sa.select(sub.c.status, sa.func.count()).group_by(sub.c.status)
    stats.by_status = {status: 0 for status in s.STATUSES}
    stats.by_status.update({row[0]: row[1] for row in conn.execute(by_status)})
    stats.total = sum(stats.by_status.values())
    for topic in topics:
        query = sa.select(sa.func.count()).select_from(sub).where(_eligible(topic))
        stats.active_by_topic[topic] = conn.execute(query).scalar_one()
    count = sa.select(sa.func.count())
    stats.suppressed = conn.execute(count.select_from(s.suppressions)).scalar_one()
    expired = sa.and_(sub.c.status == "pending", sub.c.updated_at < now - PENDING_EXPIRY)
    stats.pending_expired = conn.execute(count.select_from(sub).where(expired)).scalar_one()
    recent = sub.c.created_at >= now - dt.timedelta(days=7)
    stats.signups_7d = conn.execute(count.select_from(sub).where(recent)).scalar_one()
    return stats


__all__ = [
    "AddResult",
    "Consent",
    "NewSubscriber",
    "PendingConfirmation",
    "SignupOutcome",
    "Stats",
    "Store",
    "Subscriber",
]
