"""Sequences and schedules in the store: who is in a sequence, who is due for a step, and
which campaigns wait for their time. All SQL of automation lives here; the sending
itself goes through the ledger (``subscribers.ledger``), so each reader gets each step
and each scheduled campaign at most once, like any campaign.

Who is in a sequence: every reader who confirmed after the store first saw the sequence
(``sequences.started_at``), and readers enrolled on purpose (``enroll_existing``), from
when they were enrolled. A step is due for a reader once ``delay`` has passed since that
time; a step added later (``sequence_steps.first_seen``) reaches only readers who had
not yet passed its delay when it appeared. Eligibility (active, confirmed, not
suppressed, the step's topic) is checked when readers are added and again at each
claim, so leaving the list or the topic stops the sequence.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from subscribers import schema as s
from subscribers.audience import eligible_clause
from subscribers.campaigns import PENDING_COLUMNS, pending_rows
from subscribers.errors import Conflict, NotFound
from subscribers.store import Store

seq = s.sequences
steps = s.sequence_steps
enr = s.sequence_enrollments
sch = s.schedules
d = s.deliveries


@dataclass(frozen=True)
class Schedule:
    id: int
    slug: str
    topic: str
    send_at: dt.datetime
    state: str  # scheduled | sending | sent | cancelled
    created_at: dt.datetime


class Automation:
    """Sequences, enrollments and schedules; shares the store's engine."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ---- sequences ------------------------------------------------------------------

    def register(
        self, name: str, step_slugs: Sequence[str], now: dt.datetime
    ) -> tuple[dt.datetime, dict[str, dt.datetime]]:
        """Record a sequence and its steps the first time they are seen; returns when the
        sequence started and when each step was first seen."""
        with self.store.write() as conn:
            _insert_missing(conn, seq, [{"name": name, "started_at": now}])
            _insert_missing(
                conn,
                steps,
                [{"sequence": name, "step": slug, "first_seen": now} for slug in step_slugs],
            )
            started = conn.execute(sa.select(seq.c.started_at).where(seq.c.name == name))
            seen = conn.execute(
                sa.select(steps.c.step, steps.c.first_seen).where(steps.c.sequence == name)
            )
            return started.scalar_one(), {step: when for step, when in seen}

    def step_seen(self, name: str, step: str) -> bool:
        with self.store.read() as conn:
            query = sa.select(steps.c.step).where(steps.c.sequence == name, steps.c.step == step)
            return conn.execute(query).first() is not None

    def started(self, name: str) -> dt.datetime | None:
        with self.store.read() as conn:
            query = sa.select(seq.c.started_at).where(seq.c.name == name)
            return conn.execute(query).scalar_one_or_none()

    def enroll_existing(self, name: str, topic: str, now: dt.datetime) -> int:
        """Enroll every reader eligible for ``topic`` now (not yet in), from ``now``."""
        sub = s.subscribers
        already = sa.exists().where(enr.c.sequence == name, enr.c.subscriber_id == sub.c.id)
        select = sa.select(sa.literal(name), sub.c.id, sa.literal(now, s.UTCDateTime)).where(
            eligible_clause(topic), ~already
        )
        self.store.refresh_statistics()
        with self.store.write() as conn:
            if conn.execute(sa.select(seq.c.name).where(seq.c.name == name)).first() is None:
                raise NotFound(f"sequence {name!r} has not started", hint="run: newsletter due")
            cols = ["sequence", "subscriber_id", "enrolled_at"]
            insert = _insert_select(conn, enr, cols, select).returning(enr.c.subscriber_id)
            return len(conn.execute(insert).all())

    def add_due(
        self,
        campaign_id: int,
        sequence: str,
        topic: str,
        delay: dt.timedelta,
        first_seen: dt.datetime,
        now: dt.datetime,
    ) -> int:
        """Put in the step's queue every reader for whom it is due now; returns how many.

        Nobody is added twice (the ledger's key), even by two ``due`` at once."""
        select = self._due_select(campaign_id, sequence, topic, delay, first_seen, now)
        self.store.refresh_statistics()
        with self.store.write() as conn:
            # RETURNING, not rowcount: PostgreSQL reports -1 for ON CONFLICT DO NOTHING here.
            insert = _insert_select(conn, d, PENDING_COLUMNS, select).returning(d.c.subscriber_id)
            return len(conn.execute(insert).all())

    def count_due(
        self,
        campaign_id: int | None,
        sequence: str,
        topic: str,
        delay: dt.timedelta,
        first_seen: dt.datetime,
        now: dt.datetime,
    ) -> int:
        """How many readers :meth:`add_due` would add now (``--dry-run``)."""
        select = self._due_select(campaign_id, sequence, topic, delay, first_seen, now)
        with self.store.read() as conn:
            return conn.execute(
                sa.select(sa.func.count()).select_from(select.subquery())
            ).scalar_one()

    def _due_select(
        self,
        campaign_id: int | None,
        sequence: str,
        topic: str,
        delay: dt.timedelta,
        first_seen: dt.datetime,
        now: dt.datetime,
    ) -> sa.Select[Any]:
        sub = s.subscribers
        lo, hi = first_seen - delay, now - delay  # when the reader must have come in
        started = sa.select(seq.c.started_at).where(seq.c.name == sequence).scalar_subquery()
        by_confirming = sa.and_(
            sub.c.confirmed_at >= started, sub.c.confirmed_at >= lo, sub.c.confirmed_at <= hi
        )
        on_purpose = sa.exists().where(
            enr.c.sequence == sequence,
            enr.c.subscriber_id == sub.c.id,
            enr.c.enrolled_at >= lo,
            enr.c.enrolled_at <= hi,
        )
        already = sa.exists().where(
            d.c.campaign_id == (campaign_id or 0), d.c.subscriber_id == sub.c.id
        )
        return pending_rows(campaign_id or 0, now).where(
            eligible_clause(topic), sa.or_(by_confirming, on_purpose), ~already
        )

    def enrolled(self, sequence: str) -> int:
        """Readers in the sequence who can still get mail from it (any topic)."""
        sub = s.subscribers
        started = sa.select(seq.c.started_at).where(seq.c.name == sequence).scalar_subquery()
        on_purpose = sa.exists().where(enr.c.sequence == sequence, enr.c.subscriber_id == sub.c.id)
        query = (
            sa.select(sa.func.count())
            .select_from(sub)
            .where(
                eligible_clause("all"),
                sa.or_(sub.c.confirmed_at >= started, on_purpose),
            )
        )
        with self.store.read() as conn:
            return conn.execute(query).scalar_one()

    # ---- schedules ------------------------------------------------------------------

    def schedule(self, slug: str, topic: str, at: dt.datetime, now: dt.datetime) -> Schedule:
        """Schedule (or move) a campaign; refused once it has started sending."""
        with self.store.write() as conn:
            row = conn.execute(
                sa.select(sch).where(sch.c.slug == slug, sch.c.topic == topic)
            ).first()
            if row is not None and row.state in ("sending", "sent"):
                raise Conflict(
                    f"{slug} ({topic}) was already sent by its schedule",
                    hint=f"see: newsletter report {slug}",
                )
            values = {"send_at": at, "state": "scheduled", "updated_at": now}
            if row is None:
                conn.execute(
                    sa.insert(sch).values(slug=slug, topic=topic, created_at=now, **values)
                )
            else:
                conn.execute(sa.update(sch).where(sch.c.id == row.id).values(**values))
            found = conn.execute(sa.select(sch).where(sch.c.slug == slug, sch.c.topic == topic))
            return _schedule(found.one())

    def unschedule(self, slug: str, topic: str | None, now: dt.datetime) -> int:
        """Cancel the scheduled (not yet sending) campaigns of ``slug``; how many."""
        where = [sch.c.slug == slug, sch.c.state == "scheduled"]
        if topic:
            where.append(sch.c.topic == topic)
        with self.store.write() as conn:
            result = conn.execute(
                sa.update(sch).where(*where).values(state="cancelled", updated_at=now)
            )
        return result.rowcount or 0

    def schedules(self, states: Sequence[str] = ("scheduled", "sending")) -> list[Schedule]:
        query = sa.select(sch).where(sch.c.state.in_(states)).order_by(sch.c.send_at, sch.c.id)
        with self.store.read() as conn:
            return [_schedule(r) for r in conn.execute(query)]

    def due_schedules(self, now: dt.datetime) -> list[Schedule]:
        """Scheduled campaigns whose time has come, and those a crash left sending."""
        query = (
            sa.select(sch)
            .where(sch.c.state.in_(("scheduled", "sending")), sch.c.send_at <= now)
            .order_by(sch.c.send_at, sch.c.id)
        )
        with self.store.read() as conn:
            return [_schedule(r) for r in conn.execute(query)]

    def set_state(self, schedule_id: int, state: str, now: dt.datetime) -> None:
        with self.store.write() as conn:
            conn.execute(
                sa.update(sch).where(sch.c.id == schedule_id).values(state=state, updated_at=now)
            )


def _insert_select(conn: sa.Connection, table: sa.Table, cols: Sequence[str], select: Any) -> Any:
    """INSERT INTO table (cols) SELECT ... ON CONFLICT DO NOTHING, in the connection's
    dialect: rows already there (another process got first) are skipped, not errors."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).from_select(list(cols), select).on_conflict_do_nothing()


def _insert_missing(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    if rows:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        conn.execute(dialect.insert(table).values(rows).on_conflict_do_nothing())


def _schedule(row: sa.Row) -> Schedule:
    return Schedule(row.id, row.slug, row.topic, row.send_at, row.state, row.created_at)
