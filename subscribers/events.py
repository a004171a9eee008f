"""Provider events in the store: what webhooks reported, tied to campaign and subscriber.

:class:`EventLog` holds all SQL of ``delivery_events`` and ``webhook_tokens``.
:class:`Feedback` decides what an event does, in this order, so that a provider's
retry of the same event (or two deliveries of it at once) changes nothing twice:

1. an event id already recorded is skipped;
2. the event is tied to a campaign and subscriber: our Message-ID first, then the
   metadata we sent (campaign slug, subscriber id), then the ledger's provider id,
   then the recipient address;
3. its effect is applied (every effect is idempotent): a hard bounce or complaint
   suppresses the address, ``soft_bounce_limit`` soft bounces in a row do too, a
   provider-side unsubscribe unsubscribes;
4. the event is recorded, unique per (provider, event id).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from pipeline.message_ids import MessageIds
from pipeline.providers.webhook_events import Event, EventType
from subscribers import schema as s
from subscribers.rows import hash_of
from subscribers.store import Store

e = s.delivery_events
d = s.deliveries
c = s.campaigns
REPORTED = ("delivered", "bounced", "complained", "unsubscribed", "opened", "clicked")
ENGAGED = ("delivered", "opened", "clicked")  # the address works: soft bounces start over
PAGE = 1000


@dataclass(frozen=True)
class Target:
    """Who and what an event is about, as far as we could tell."""

    campaign_id: int | None = None
    subscriber_id: int | None = None
    email: str = ""


class EventLog:
    """All SQL of provider events and webhook tokens; shares the store's engine."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ---- tying events to the ledger --------------------------------------------------

    def campaign_for(self, slug: str, topic: str | None, subscriber_id: int | None) -> int | None:
        """The campaign (slug, topic) - or the newest of that slug that mailed the subscriber."""
        query = sa.select(c.c.id).where(c.c.slug == slug).order_by(c.c.created_at.desc(), c.c.id)
        if topic is not None:
            query = query.where(c.c.topic == topic)
        if subscriber_id is not None and topic is None:
            mailed = sa.exists().where(
                d.c.campaign_id == c.c.id, d.c.subscriber_id == subscriber_id
            )
            query = query.where(mailed)
        with self.store.read() as conn:
            return conn.execute(query.limit(1)).scalar()

    def by_provider_id(self, provider_id: str, email: str) -> Target | None:
        """The delivery the provider knows by this id (narrowed by address for batch ids)."""
        sub = s.subscribers
        query = (
            sa.select(d.c.campaign_id, d.c.subscriber_id, sub.c.email, sub.c.email_hash)
            .join(sub, sub.c.id == d.c.subscriber_id)
            .where(d.c.provider_id == provider_id[:200])
            .limit(PAGE)
        )
        with self.store.read() as conn:
            rows = conn.execute(query).all()
        if email:
            rows = [r for r in rows if r.email_hash == hash_of(email)]
        if len(rows) != 1:
            return None
        return Target(rows[0].campaign_id, rows[0].subscriber_id, rows[0].email)

    # ---- recording -----------------------------------------------------------------

    def seen(self, provider: str, event_id: str) -> bool:
        query = sa.select(e.c.id).where(
            e.c.provider == provider, e.c.provider_event_id == event_id[:200]
        )
        with self.store.read() as conn:
            return conn.execute(query).first() is not None

    def record(self, event: Event, target: Target) -> bool:
        """Store the event once; False when this (provider, event id) is already stored."""
        values = {
            "provider": event.provider,
            "provider_event_id": event.event_id[:200],
            "type": str(event.type),
            "bounce": event.bounce,
            "campaign_id": target.campaign_id,
            "subscriber_id": target.subscriber_id,
            "email_hash": hash_of(target.email) if target.email else "",
            "detail": event.detail[:1000],
            "occurred_at": event.occurred_at,
            "created_at": self.store.now(),
        }
        try:
            return self._insert(values)
        except sa.exc.IntegrityError:  # the subscriber or campaign was deleted meanwhile
            return self._insert({**values, "subscriber_id": None, "campaign_id": None})

    def _insert(self, values: dict[str, Any]) -> bool:
        with self.store.write() as conn:
            stmt = _insert_ignore(conn, e, ["provider", "provider_event_id"]).values(**values)
            return conn.execute(stmt.returning(e.c.id)).first() is not None

    def soft_bounces(self, email: str) -> int:
        """Soft bounces of this address since it last took a message (delivered, opened ...)."""
        digest = hash_of(email)
        last_ok = (
            sa.select(sa.func.coalesce(sa.func.max(e.c.id), 0))
            .where(e.c.email_hash == digest, e.c.type.in_(ENGAGED))
            .scalar_subquery()
        )
        query = (
            sa.select(sa.func.count())
            .select_from(e)
            .where(e.c.email_hash == digest, e.c.type == "bounced", e.c.bounce == "soft")
            .where(e.c.id > last_ok)
        )
        with self.store.read() as conn:
            return conn.execute(query).scalar_one()

    # ---- webhook tokens (replay protection) --------------------------------------------

    def claim_token(self, provider: str, token: str, keep: dt.timedelta) -> bool:
        """Remember a signature token; False when it was used before (a replay)."""
        t = s.webhook_tokens
        now = self.store.now()
        with self.store.write() as conn:
            conn.execute(sa.delete(t).where(t.c.seen_at < now - keep))
            stmt = _insert_ignore(conn, t, ["provider", "token"]).values(
                provider=provider, token=token[:200], seen_at=now
            )
            return conn.execute(stmt.returning(t.c.token)).first() is not None

    def release_token(self, provider: str, token: str) -> None:
        """Forget a token whose request failed, so the provider's retry is accepted."""
        t = s.webhook_tokens
        with self.store.write() as conn:
            conn.execute(sa.delete(t).where(t.c.provider == provider, t.c.token == token[:200]))

    # ---- reports -------------------------------------------------------------------

    def counts(self, campaign_id: int) -> dict[str, int]:
        """Recipients with each kind of event (a recipient counts once per kind)."""
        query = (
            sa.select(e.c.type, e.c.bounce, sa.func.count(sa.distinct(e.c.email_hash)))
            .where(e.c.campaign_id == campaign_id, e.c.type.in_(REPORTED))
            .group_by(e.c.type, e.c.bounce)
        )
        found = dict.fromkeys(REPORTED, 0)
        with self.store.read() as conn:
            for kind, bounce, n in conn.execute(query):
                found[kind] += n
                if kind == "bounced" and bounce:
                    found[f"bounced_{bounce}"] = found.get(f"bounced_{bounce}", 0) + n
        return found

    def delivery_counts(self, since: dt.datetime) -> dict[str, int]:
        """Since ``since``, over every campaign: messages sent, recipients who hard-bounced
        and who complained, and provider events of any kind (``newsletter doctor``)."""
        recent = sa.func.coalesce(e.c.occurred_at, e.c.created_at) >= since

        def recipients(*where: Any) -> Any:
            return (
                sa.select(sa.func.count(sa.distinct(e.c.email_hash)))
                .where(recent, *where)
                .scalar_subquery()
            )

        query = sa.select(
            sa.select(sa.func.count())
            .select_from(d)
            .where(d.c.status == "sent", d.c.sent_at >= since)
            .scalar_subquery()
            .label("sent"),
            recipients(e.c.type == "bounced", e.c.bounce == "hard").label("bounced"),
            recipients(e.c.type == "complained").label("complained"),
            sa.select(sa.func.count())
            .select_from(e)
            .where(recent)
            .scalar_subquery()
            .label("reported"),
        )
        with self.store.read() as conn:
            return dict(conn.execute(query).one()._mapping)

    def outcomes(self, campaign_id: int) -> Iterator[dict[str, Any]]:
        """Per recipient of the campaign: address, ledger status and reason, events."""
        after = 0
        while True:
            page = self._delivery_page(campaign_id, after)
            if not page:
                return
            events = self._events_of(campaign_id, [r.subscriber_id for r in page])
            for row in page:
                yield _outcome(row, events.get(row.subscriber_id, []))
            after = page[-1].subscriber_id

    def _delivery_page(self, campaign_id: int, after: int) -> Sequence[Any]:
        sub = s.subscribers
        query = (
            sa.select(d.c.subscriber_id, sub.c.email, d.c.status, d.c.reason)
            .join(sub, sub.c.id == d.c.subscriber_id)
            .where(d.c.campaign_id == campaign_id, d.c.subscriber_id > after)
            .order_by(d.c.subscriber_id)
            .limit(PAGE)
        )
        with self.store.read() as conn:
            return conn.execute(query).all()

    def _events_of(self, campaign_id: int, ids: list[int]) -> dict[int, list[Any]]:
        query = (
            sa.select(e.c.subscriber_id, e.c.type, e.c.bounce, e.c.detail, e.c.occurred_at)
            .where(e.c.campaign_id == campaign_id, e.c.subscriber_id.in_(ids))
            .order_by(e.c.id)
        )
        found: dict[int, list[Any]] = {}
        with self.store.read() as conn:
            for row in conn.execute(query):
                found.setdefault(row.subscriber_id, []).append(row)
        return found


class Feedback:
    """Applies provider events to the list: suppress, unsubscribe, record."""

    def __init__(
        self, store: Store, *, message_ids: MessageIds, soft_bounce_limit: int = 3
    ) -> None:
        self.store = store
        self.log = EventLog(store)
        self.message_ids = message_ids
        self.soft_bounce_limit = max(1, soft_bounce_limit)

    def apply(self, event: Event) -> bool:
        """Handle one event; False when it was handled before (a provider retry)."""
        if self.log.seen(event.provider, event.event_id):
            return False
        target = self.resolve(event)
        self.act(event, target)
        return self.log.record(event, target)

    # ---- who is it about -------------------------------------------------------------

    def resolve(self, event: Event) -> Target:
        target = self._from_message_id(event) or self._from_metadata(event)
        if target is None and event.provider_id:
            target = self.log.by_provider_id(event.provider_id, event.email)
        target = target or Target()
        if target.subscriber_id is None and event.email:
            found = self.store.find(event.email)
            target = Target(target.campaign_id, found.id if found else None, target.email)
        return Target(target.campaign_id, target.subscriber_id, self._email(event, target))

    def _from_message_id(self, event: Event) -> Target | None:
        ours = self.message_ids.parse(event.message_id)
        if ours is None:
            return None
        sid = self._known(ours.subscriber_id)
        return Target(self.log.campaign_for(ours.slug, ours.topic, sid), sid)

    def _from_metadata(self, event: Event) -> Target | None:
        if not (event.campaign and event.recipient.isdigit()):
            return None
        sid = self._known(int(event.recipient))
        return Target(self.log.campaign_for(event.campaign, None, sid), sid)

    def _known(self, subscriber_id: int) -> int | None:
        return subscriber_id if self.store.get(subscriber_id) is not None else None

    def _email(self, event: Event, target: Target) -> str:
        if event.email:
            return event.email
        if target.email:
            return target.email
        sub = self.store.get(target.subscriber_id) if target.subscriber_id else None
        return sub.email if sub else ""

    # ---- what it does ------------------------------------------------------------------

    def act(self, event: Event, target: Target) -> None:
        source = f"{event.provider} webhook"
        if event.suppresses and target.email:
            reason = "complained" if event.type == EventType.COMPLAINED else "bounced"
            self.store.suppress(target.email, reason, source=f"{source}: {event.detail}"[:200])
        elif event.type == EventType.BOUNCED and target.email:
            self._soft_bounce(target.email, source)
        elif event.type == EventType.UNSUBSCRIBED and target.subscriber_id is not None:
            self.store.unsubscribe(target.subscriber_id, source=source)

    def _soft_bounce(self, email: str, source: str) -> None:
        count = self.log.soft_bounces(email) + 1  # this one is not recorded yet
        if count >= self.soft_bounce_limit:
            self.store.suppress(email, "bounced", source=f"{source}: {count} soft bounces in a row")


def _outcome(row: Any, events: list[Any]) -> dict[str, Any]:
    counts = dict.fromkeys(REPORTED, 0)
    for event in events:
        if event.type in counts:
            counts[event.type] += 1
    last = events[-1] if events else None
    last_event = ""
    if last is not None:
        last_event = f"{last.type} ({last.bounce})" if last.bounce else last.type
    return {
        "email": row.email,
        "status": row.status,
        "reason": row.reason,
        "last_event": last_event,
        "last_event_at": last.occurred_at.isoformat(timespec="seconds")
        if last is not None and last.occurred_at
        else "",
        "last_event_detail": last.detail if last is not None else "",
        **counts,
    }


def _insert_ignore(conn: sa.Connection, table: sa.Table, keys: list[str]) -> Any:
    """INSERT ... ON CONFLICT (keys) DO NOTHING, in the connection's dialect.

    Callers add RETURNING to learn whether a row went in: PostgreSQL reports no rowcount
    when SQLAlchemy adds an implicit RETURNING for the primary key."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing(index_elements=keys)
