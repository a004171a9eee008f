"""The store's tables and their versioned migrations.

``metadata`` describes the schema as it is *now*; the store queries through it.
``MIGRATIONS`` is the ordered history that builds it: step N (1-based) takes a database
from version N-1 to N, and ``schema_version`` records every step applied. Each step
defines the tables it creates itself (a snapshot), so later edits to ``metadata`` never
rewrite history.

Adding a migration (a send ledger, webhook events ...):

1. write ``def _002_send_ledger(conn: Connection) -> None`` with a one-line docstring,
   creating or altering tables through ``conn`` (SQLAlchemy Core or ``conn.execute``);
2. append it to ``MIGRATIONS``;
3. update the matching ``sa.Table`` in ``metadata`` below, and ``tests/test_migrations``
   checks that the two agree.

Steps run in a transaction each, under a lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL
an advisory lock), so several workers starting at once apply each step exactly once,
and a failing step leaves the database at the previous version with its data intact.
SQLite's ALTER TABLE only adds and renames columns; for anything else copy into a new
table and swap.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from subscribers.db import writer
from subscribers.errors import SchemaError

STATUSES = ("pending", "active", "unsubscribed", "bounced", "complained")
ADVISORY_LOCK_KEY = 0x6E65_7773  # "news": serialises migrations on PostgreSQL


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """Timestamps stored as naive UTC (the same on SQLite and PostgreSQL), read back aware."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use datetime.now(UTC)")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return value.replace(tzinfo=dt.UTC) if value is not None else None


metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
)


def _subscribers_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "subscribers",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("confirmed_at", UTCDateTime),
        sa.Column("unsubscribed_at", UTCDateTime),
        sa.CheckConstraint(
            "status IN ('pending', 'active', 'unsubscribed', 'bounced', 'complained')",
            name="ck_subscribers_status",
        ),
    )


def _topics_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "subscriber_topics",
        md,
        sa.Column(
            "subscriber_id",
            sa.Integer,
            sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("topic", sa.String(64), primary_key=True),
        sa.Index("ix_subscriber_topics_topic", "topic", "subscriber_id"),
    )


def _consents_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "consents",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "subscriber_id",
            sa.Integer,
            sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("kind", sa.String(16), nullable=False),  # signup | confirm | import | admin
        sa.Column("source", sa.String(200), nullable=False),  # form id, import file, cli
        sa.Column("topics", sa.String(200), nullable=False, server_default=""),
        sa.Column("ip", sa.String(64)),
        sa.Column("user_agent", sa.String(500)),
        sa.Column("wording", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )


def _suppressions_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "suppressions",
        md,
        sa.Column("email_hash", sa.String(64), primary_key=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("source", sa.String(200), nullable=False, server_default=""),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )


def _events_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "events",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "subscriber_id",
            sa.Integer,
            sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
        ),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Index("ix_events_subscriber_kind", "subscriber_id", "kind", "created_at"),
    )


def _campaigns_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "campaigns",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("slug", sa.String(200), nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("slug", "topic", name="uq_campaigns_slug_topic"),
    )


def _deliveries_table(md: sa.MetaData) -> sa.Table:
    """The per-recipient ledger: one row per campaign and subscriber, ever."""
    return sa.Table(
        "deliveries",
        md,
        sa.Column(
            "campaign_id",
            sa.Integer,
            sa.ForeignKey("campaigns.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "subscriber_id",
            sa.Integer,
            sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        # pending -> inflight -> sent | failed | retry | skipped
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("claim", sa.String(36)),  # the batch a worker took, before calling out
        sa.Column("claimed_at", UTCDateTime),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("provider_id", sa.String(200), nullable=False, server_default=""),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("added_at", UTCDateTime, nullable=False),
        sa.Column("sent_at", UTCDateTime),
        sa.Index("ix_deliveries_queue", "campaign_id", "status", "subscriber_id"),
        sa.Index("ix_deliveries_claim", "claim"),
    )


def _add_delivery_doubt(conn: Connection) -> None:
    """deliveries.holder (the run that holds a claim) and deliveries.doubt (how an unknown
    outcome was settled: reconciled | resent | skipped)"""
    conn.execute(sa.text("ALTER TABLE deliveries ADD COLUMN holder VARCHAR(32)"))
    conn.execute(sa.text("ALTER TABLE deliveries ADD COLUMN doubt VARCHAR(12) NOT NULL DEFAULT ''"))


def _send_runs_table(md: sa.MetaData) -> sa.Table:
    """Every process that sent a campaign: who, with which provider, alive until when."""
    return sa.Table(
        "send_runs",
        md,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "campaign_id",
            sa.Integer,
            sa.ForeignKey("campaigns.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("role", sa.String(8), nullable=False),  # main | helper | worker
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("proc_start", sa.String(32), nullable=False, server_default=""),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("heartbeat_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime),
        sa.Index("ix_send_runs_campaign", "campaign_id", "started_at"),
    )


def _confirmation_queue_table(md: sa.MetaData) -> sa.Table:
    """Confirmation emails to send: written with the signup, sent by the mailer."""
    return sa.Table(
        "confirmation_queue",
        md,
        sa.Column(
            "subscriber_id",
            sa.Integer,
            sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("due_at", UTCDateTime, nullable=False),  # next try, or end of a claim
        sa.Column("claim", sa.String(36)),  # the mailer batch holding it
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=False, server_default=""),
        sa.Index("ix_confirmation_queue_due", "due_at"),
    )


def _delivery_events_table(md: sa.MetaData) -> sa.Table:
    """What providers reported after a send (webhooks), once per provider event id."""
    return sa.Table(
        "delivery_events",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("provider_event_id", sa.String(200), nullable=False),
        # delivered | bounced | deferred | complained | unsubscribed | opened | clicked | unknown
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("bounce", sa.String(8), nullable=False, server_default=""),  # hard | soft
        sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaigns.id", ondelete="SET NULL")),
        sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="CASCADE")),
        sa.Column("email_hash", sa.String(64), nullable=False, server_default=""),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("occurred_at", UTCDateTime),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("provider", "provider_event_id", name="uq_delivery_events_provider_id"),
        sa.Index("ix_delivery_events_campaign", "campaign_id", "subscriber_id", "type"),
        sa.Index("ix_delivery_events_address", "email_hash", "type", "id"),
    )


def _webhook_tokens_table(md: sa.MetaData) -> sa.Table:
    """Signature tokens already used (Mailgun): a replayed request is refused."""
    return sa.Table(
        "webhook_tokens",
        md,
        sa.Column("provider", sa.String(32), primary_key=True),
        sa.Column("token", sa.String(200), primary_key=True),
        sa.Column("seen_at", UTCDateTime, nullable=False),
        sa.Index("ix_webhook_tokens_seen", "seen_at"),
    )


subscribers = _subscribers_table(metadata)
subscriber_topics = _topics_table(metadata)
consents = _consents_table(metadata)
suppressions = _suppressions_table(metadata)
events = _events_table(metadata)
campaigns = _campaigns_table(metadata)
deliveries = _deliveries_table(metadata)
deliveries.append_column(sa.Column("holder", sa.String(32)))
deliveries.append_column(sa.Column("doubt", sa.String(12), nullable=False, server_default=""))
send_runs = _send_runs_table(metadata)
confirmation_queue = _confirmation_queue_table(metadata)
delivery_events = _delivery_events_table(metadata)
webhook_tokens = _webhook_tokens_table(metadata)


# ---------------------------------------------------------------------------------------
# Migrations: append only. Never edit a step that has shipped.


def _001_initial(conn: Connection) -> None:
    """subscribers, topics, consent records, suppression list, event log"""
    md = sa.MetaData()
    for build in (
        _subscribers_table,
        _topics_table,
        _consents_table,
        _suppressions_table,
        _events_table,
    ):
        build(md)
    md.create_all(conn)


Migration = Callable[[Connection], None]


def _002_send_ledger(conn: Connection) -> None:
    """campaigns and the per-recipient delivery ledger"""
    md = sa.MetaData()
    # Foreign keys need the referenced table in the same MetaData.
    sa.Table("subscribers", md, sa.Column("id", sa.Integer, primary_key=True))
    _campaigns_table(md).create(conn)
    _deliveries_table(md).create(conn)


def _003_confirmation_queue(conn: Connection) -> None:
    """confirmation emails queued with the signup, sent by the mailer"""
    md = sa.MetaData()
    sa.Table("subscribers", md, sa.Column("id", sa.Integer, primary_key=True))
    _confirmation_queue_table(md).create(conn)


def _004_delivery_events(conn: Connection) -> None:
    """provider webhook events and used webhook signature tokens"""
    md = sa.MetaData()
    sa.Table("subscribers", md, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table("campaigns", md, sa.Column("id", sa.Integer, primary_key=True))
    _delivery_events_table(md).create(conn)
    _webhook_tokens_table(md).create(conn)


def _005_send_runs(conn: Connection) -> None:
    """send runs with heartbeats; who holds each claim; unknown outcomes settled"""
    _add_delivery_doubt(conn)
    md = sa.MetaData()
    sa.Table("campaigns", md, sa.Column("id", sa.Integer, primary_key=True))
    _send_runs_table(md).create(conn)


MIGRATIONS: list[Migration] = [
    _001_initial,
    _002_send_ledger,
    _003_confirmation_queue,
    _004_delivery_events,
    _005_send_runs,
]


def latest_version(migrations: Sequence[Migration] = MIGRATIONS) -> int:
    return len(migrations)


def current_version(conn: Connection) -> int:
    """The version recorded in the database; 0 for an empty one."""
    if not sa.inspect(conn).has_table("schema_version"):
        return 0
    return conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0


def migrate(engine: Engine, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Bring the database up to date; returns the versions applied (empty when current).

    An up-to-date database costs one read: every CLI command and web worker opens here.
    """
    found, applied = _version(engine), []
    if found < len(migrations):
        _create_version_table(engine)
        steps = list(enumerate(migrations, start=1))[found:]
        applied = [version for version, step in steps if _apply(engine, version, step)]
        found = _version(engine)
    if found > len(migrations):
        raise SchemaError(
            f"the database is at schema version {found}, newer than this code ({len(migrations)})",
            hint="upgrade newsletter-pipeline before using this database",
        )
    return applied


def _version(engine: Engine) -> int:
    with engine.connect() as conn:
        return current_version(conn)


def _create_version_table(engine: Engine) -> None:
    with writer(engine).begin() as conn:
        _lock(conn)
        schema_version.create(conn, checkfirst=True)


def _apply(engine: Engine, version: int, step: Migration) -> bool:
    with writer(engine).begin() as conn:
        _lock(conn)
        if current_version(conn) >= version:
            return False
        try:
            step(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise SchemaError(
                f"schema migration {version} ({step.__name__}) failed: {exc}"
            ) from exc
        conn.execute(
            schema_version.insert().values(
                version=version,
                description=_describe(step),
                applied_at=dt.datetime.now(dt.UTC),
            )
        )
    return True


def _lock(conn: Connection) -> None:
    """SQLite holds the write lock already (BEGIN IMMEDIATE); PostgreSQL takes an advisory one."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})


def _describe(step: Migration) -> str:
    doc = (step.__doc__ or step.__name__).strip().splitlines()[0]
    return doc[:200]
