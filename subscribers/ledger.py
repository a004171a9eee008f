"""The send ledger: campaigns and one delivery row per campaign and subscriber.

The exactly-once protocol, in the order a worker runs it:

1. ``open_campaign`` creates the campaign and snapshots its audience in one transaction
   (rows ``pending``); ``snapshot`` later adds only those not yet in the ledger
   (``--include-new``), so nobody is added twice.
2. ``start_run`` records the sending process (host, pid, start token) and its
   heartbeat; every claim names its run as ``holder``.
3. ``claim`` marks a batch ``inflight`` under a fresh claim id and commits *before* the
   provider is called. On PostgreSQL the claim skips rows other workers hold
   (``FOR UPDATE SKIP LOCKED``); SQLite serialises claimers with ``BEGIN IMMEDIATE``.
4. ``record`` writes each recipient's outcome, guarded by the claim id. An outcome
   nobody knows (the request went out, its answer was lost) is ``unknown``: the batch
   stays whole under its claim until it is settled.

A batch is taken over (``recover``) only when its holder is dead: on this host, its
process is gone; elsewhere, its heartbeat is older than the lease. A batch taken over
from ``inflight`` may have been sent, so it becomes ``unknown`` too. Unknown rows are
settled by asking the provider (``reconciled``), by sending again (``resent``) or by
the author's ``--skip-unknown`` (``skipped``); ``doubt`` keeps which.

:class:`Ledger` is the public face; its SQL pieces live by concern in
:mod:`subscribers.campaigns` (campaigns, audience snapshots), :mod:`subscribers.send_runs`
(runs and their liveness) and :mod:`subscribers.deliveries` (claims, recorded outcomes).
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from pipeline.processes import host_name, start_token
from subscribers import schema as s
from subscribers.audience import AUDIENCE_TABLES, eligible_clause
from subscribers.campaigns import (
    Campaign,
    SentCampaign,
    campaign_from_row,
    counts_by_campaign,
    snapshot_audience,
)
from subscribers.deliveries import (
    HELD,
    RECORD_PG,
    RECORD_SQL,
    Claimed,
    among,
    claimed_batch,
    driver_sql,
    driver_time,
    record_arrays,
    status_is,
)
from subscribers.send_runs import (
    HEARTBEAT,
    LEASE,
    Run,
    already_sending,
    live_runs,
    run_from_row,
    runs_by_id,
)
from subscribers.store import Store

d = s.deliveries
c = s.campaigns
r = s.send_runs


class Ledger:
    """All SQL of campaigns and deliveries; shares the store's engine."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ---- campaigns ------------------------------------------------------------------

    def campaign(self, slug: str, topic: str) -> Campaign | None:
        with self.store.read() as conn:
            row = conn.execute(sa.select(c).where(c.c.slug == slug, c.c.topic == topic)).first()
        return campaign_from_row(row) if row else None

    def campaigns(self) -> list[tuple[Campaign, dict[str, int]]]:
        with self.store.read() as conn:
            rows = conn.execute(sa.select(c).order_by(c.c.created_at, c.c.id)).all()
            counts = counts_by_campaign(conn, None)
        return [(campaign_from_row(r), counts.get(r.id, {})) for r in rows]

    def sent_campaigns(self) -> list[SentCampaign]:
        """Campaigns sent to at least one reader, oldest first, with when the first copy
        went out. Nothing about the readers themselves."""
        first = sa.func.min(d.c.sent_at)
        query = (
            sa.select(c.c.slug, c.c.topic, first.label("first"), sa.func.count().label("n"))
            .join(d, d.c.campaign_id == c.c.id)
            .where(d.c.status == "sent")
            .group_by(c.c.id, c.c.slug, c.c.topic)
            .order_by(first, c.c.id)
        )
        with self.store.read() as conn:
            return [SentCampaign(r.slug, r.topic, r.first, r.n) for r in conn.execute(query)]

    def open_campaign(
        self,
        *,
        slug: str,
        topic: str,
        subject: str,
        content_hash: str,
        provider: str,
        snapshot: bool = True,
    ) -> tuple[Campaign, bool]:
        """The campaign for (slug, topic), created with its audience snapshot if new
        (``snapshot=False``: empty; a sequence step adds readers as they become due)."""
        existing = self.campaign(slug, topic)
        if existing:
            return existing, False
        now = self.store.now()
        values = dict(
            slug=slug,
            topic=topic,
            subject=subject,
            content_hash=content_hash,
            provider=provider,
            created_at=now,
            updated_at=now,
        )
        if snapshot:
            self.store.refresh_statistics()
        try:
            with self.store.write() as conn:
                cid = conn.execute(sa.insert(c).values(**values).returning(c.c.id)).scalar_one()
                queued = snapshot_audience(conn, cid, topic, now, new=True) if snapshot else 0
        except sa.exc.IntegrityError:  # another worker created it first
            found = self.campaign(slug, topic)
            assert found is not None
            return found, False
        # The queue's rows were unknown to the planner: every claim would scan them all.
        self.store.refresh_statistics(("deliveries",), {"deliveries": queued})
        found = self.campaign(slug, topic)
        assert found is not None
        return found, True

    def audience(self, topic: str) -> int:
        """How many subscribers a new campaign for ``topic`` would snapshot now."""
        query = sa.select(sa.func.count()).select_from(s.subscribers).where(eligible_clause(topic))
        self.store.refresh_statistics()
        with self.store.read() as conn:
            return conn.execute(query).scalar_one()

    def snapshot(self, campaign: Campaign) -> int:
        """Add subscribers who became eligible since; returns how many were added."""
        self.store.refresh_statistics((*AUDIENCE_TABLES, "deliveries"))
        with self.store.write() as conn:
            added = snapshot_audience(
                conn, campaign.id, campaign.topic, self.store.now(), new=False
            )
        self.store.refresh_statistics(("deliveries",), {"deliveries": added})
        return added

    # ---- runs ------------------------------------------------------------------------

    def start_run(self, campaign_id: int, *, role: str, provider: str) -> Run:
        """Record this process as a sender of the campaign.

        A ``main`` run (a plain ``send``) is refused while another live main run sends
        the same campaign: two would only race each other. Workers and helpers join.
        """
        now = self.store.now()
        values = dict(
            id=uuid.uuid4().hex,
            campaign_id=campaign_id,
            role=role,
            provider=provider,
            host=host_name(),
            pid=os.getpid(),
            proc_start=start_token(),
            started_at=now,
            heartbeat_at=now,
            finished_at=None,
        )
        with self.store.write() as conn:
            if role == "main":
                # PostgreSQL: serialise starters on the campaign row (SQLite holds the
                # database write lock already).
                conn.execute(sa.select(c.c.id).where(c.c.id == campaign_id).with_for_update())
                busy = [x for x in live_runs(conn, campaign_id, now) if x.role == "main"]
                if busy:
                    raise already_sending(busy[0], now)
            conn.execute(sa.insert(r).values(**values))
        return Run(**values)  # type: ignore[arg-type]

    def heartbeat(self, run_id: str) -> None:
        with self.store.write() as conn:
            conn.execute(sa.update(r).where(r.c.id == run_id).values(heartbeat_at=self.store.now()))

    def finish_run(self, run_id: str) -> None:
        now = self.store.now()
        with self.store.write() as conn:
            conn.execute(
                sa.update(r).where(r.c.id == run_id).values(heartbeat_at=now, finished_at=now)
            )

    def runs(self, campaign_id: int) -> list[tuple[Run, int]]:
        """Every run of the campaign, oldest first, with how many it sent (the rows it
        holds as sent)."""
        sent = (
            sa.select(sa.func.count())
            .where(d.c.campaign_id == campaign_id, d.c.holder == r.c.id, d.c.status == "sent")
            .scalar_subquery()
        )
        query = (
            sa.select(r, sent.label("sent"))
            .where(r.c.campaign_id == campaign_id)
            .order_by(r.c.started_at, r.c.id)
        )
        with self.store.read() as conn:
            return [(run_from_row(row), row.sent) for row in conn.execute(query)]

    def live_holders(self, campaign_id: int, *, exclude: str = "") -> int:
        """Rows held (in flight or unknown) by runs that are still alive, other than
        ``exclude``: a resume waits for them rather than taking them."""
        now = self.store.now()
        with self.store.read() as conn:
            live = {x.id for x in live_runs(conn, campaign_id, now)} - {exclude}
            if not live:
                return 0
            query = sa.select(sa.func.count()).where(
                d.c.campaign_id == campaign_id, status_is(*HELD), d.c.holder.in_(live)
            )
            return conn.execute(query).scalar_one()

    # ---- the send loop --------------------------------------------------------------

    def claim(
        self, campaign_id: int, limit: int, topic: str, holder: str | None = None
    ) -> Claimed | None:
        """Take up to ``limit`` pending recipients as one batch, committed before sending."""
        claim = uuid.uuid4().hex
        pick = (
            sa.select(d.c.subscriber_id)
            .where(d.c.campaign_id == campaign_id, status_is("pending"))
            .order_by(d.c.subscriber_id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        now = self.store.now()
        with self.store.write() as conn:
            # Two statements, not UPDATE ... IN (SELECT ... LIMIT ... SKIP LOCKED): PostgreSQL
            # may run such a subquery more than once, and claim far more than ``limit``.
            ids = conn.execute(pick).scalars().all()
            if not ids:
                return None
            mine = sa.and_(d.c.campaign_id == campaign_id, among(conn, d.c.subscriber_id, ids))
            conn.execute(
                sa.update(d)
                .where(mine)
                .values(
                    status="inflight",
                    claim=claim,
                    holder=holder,
                    claimed_at=now,
                    attempts=d.c.attempts + 1,
                )
            )
            batch = claimed_batch(conn, campaign_id, claim, topic, now, now, where=mine)
        return batch if batch.rows or batch.left else None

    def pending(self, campaign_id: int) -> int:
        """Recipients still waiting to be claimed (some may be mid-claim elsewhere)."""
        query = sa.select(sa.func.count()).where(
            d.c.campaign_id == campaign_id, status_is("pending")
        )
        with self.store.read() as conn:
            return conn.execute(query).scalar_one()

    def recover(
        self, campaign_id: int, topic: str, *, holder: str, lease: dt.timedelta = LEASE
    ) -> list[Claimed]:
        """Batches held by dead runs (in flight or unknown), taken over whole by
        ``holder``. They may have been sent: every row taken over is ``unknown``."""
        now = self.store.now()
        with self.store.write() as conn:
            held = conn.execute(
                sa.select(d.c.claim, d.c.holder, sa.func.min(d.c.claimed_at))
                .where(d.c.campaign_id == campaign_id, status_is(*HELD))
                .group_by(d.c.claim, d.c.holder)
            ).all()
            runs = runs_by_id(conn, {h for _, h, _ in held if h})
            batches = []
            for claim, old, claimed_at in held:
                run = runs.get(old) if old else None
                if (old and old == holder) or (run is not None and run.alive(now, lease)):
                    continue
                conn.execute(
                    sa.update(d)
                    .where(d.c.campaign_id == campaign_id, d.c.claim == claim, status_is(*HELD))
                    .values(status="unknown", holder=holder or None, attempts=d.c.attempts + 1)
                )
                # No request of a dead run started after its last heartbeat (plus one beat).
                quiet = max(claimed_at, run.heartbeat_at + HEARTBEAT) if run else claimed_at
                batch = claimed_batch(conn, campaign_id, claim, topic, claimed_at, quiet)
                if batch.rows or batch.left:
                    batches.append(batch)
        return batches

    def in_doubt(self, campaign_id: int) -> int:
        """Recipients whose outcome nobody knows yet."""
        return self.counts(campaign_id).get("unknown", 0)

    def record(self, campaign_id: int, claim: str, outcomes: Sequence[Any]) -> None:
        """Write each outcome (``pipeline.send.Outcome``); rows no longer held by ``claim``
        are left alone."""
        if not outcomes:
            return
        with self.store.write() as conn:
            sent_at = driver_time(conn, self.store.now())
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(
                    RECORD_PG, record_arrays(campaign_id, claim, outcomes, sent_at)
                )
                return
            params = [
                {
                    "status": o.status,
                    "pid": o.provider_id[:200],
                    "reason": o.reason[:2000],
                    "sent": sent_at if o.status == "sent" else None,
                    "doubt": o.doubt,
                    "now": sent_at,
                    "cid": campaign_id,
                    "sid": o.subscriber_id,
                    "claim": claim,
                }
                for o in outcomes
            ]
            # Straight to the driver's executemany: Core's per-row bind processing cost
            # twice SQLite's own work here, and this runs once per recipient.
            conn.exec_driver_sql(driver_sql(conn, RECORD_SQL), params)

    def release(self, campaign_id: int, claim: str) -> None:
        """Give a batch back (the provider refused the whole request before sending)."""
        with self.store.write() as conn:
            conn.execute(
                sa.update(d)
                .where(d.c.campaign_id == campaign_id, d.c.claim == claim, status_is("inflight"))
                .values(status="pending", claim=None, holder=None, claimed_at=None)
            )

    def requeue_retries(self, campaign_id: int) -> int:
        """Recipients whose failure was temporary go back in the queue for this run."""
        with self.store.write() as conn:
            result = conn.execute(
                sa.update(d)
                .where(d.c.campaign_id == campaign_id, d.c.status == "retry")
                .values(status="pending", claim=None, holder=None, claimed_at=None)
            )
        return result.rowcount or 0

    def suppress(self, email: str, reason: str, source: str) -> None:
        self.store.suppress(email, reason, source=source)

    # ---- reports --------------------------------------------------------------------

    def counts(self, campaign_id: int) -> dict[str, int]:
        with self.store.read() as conn:
            return counts_by_campaign(conn, campaign_id).get(campaign_id, {})

    def doubts(self, campaign_id: int) -> dict[str, int]:
        """How lost answers were settled: ``reconciled`` (the provider had it),
        ``resent``, ``skipped``, and ``unknown`` (still in doubt)."""
        query = (
            sa.select(d.c.doubt, sa.func.count())
            .where(d.c.campaign_id == campaign_id, d.c.doubt != "")
            .group_by(d.c.doubt)
        )
        with self.store.read() as conn:
            found = {doubt: n for doubt, n in conn.execute(query)}
        unknown = self.in_doubt(campaign_id)
        return {**found, "unknown": unknown} if unknown else found

    def failures(self, campaign_id: int, limit: int = 50) -> list[tuple[str, str, str]]:
        """``(email, status, reason)`` of recipients not sent, failures first."""
        query = (
            sa.select(s.subscribers.c.email, d.c.status, d.c.reason)
            .join(s.subscribers, s.subscribers.c.id == d.c.subscriber_id)
            .where(d.c.campaign_id == campaign_id, d.c.status.in_(("failed", "retry", "skipped")))
            .order_by(d.c.status, d.c.subscriber_id)
            .limit(limit)
        )
        with self.store.read() as conn:
            return [(r.email, r.status, r.reason) for r in conn.execute(query)]
