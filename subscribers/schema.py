"""The store's tables as they are now, and the runner that migrates a database to them.

``metadata`` describes the schema as it is *now*; the store queries through it. The
history that builds it lives in :mod:`subscribers.migrations` (``MIGRATIONS``): each
step there is a frozen snapshot of its own DDL, and ``tests/test_migrations.py``
checks that a database built step by step matches these tables exactly.
``schema_version`` records every step applied.

Steps run in a transaction each, under a lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL
an advisory lock), so several workers starting at once apply each step exactly once,
and a failing step leaves the database at the previous version with its data intact.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from subscribers.db import writer
from subscribers.errors import SchemaError
from subscribers.migrations import MIGRATIONS, Migration, check_foreign_keys

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


subscribers = sa.Table(
    "subscribers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("email_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False, server_default=""),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("confirmed_at", UTCDateTime),
    sa.Column("unsubscribed_at", UTCDateTime),
    # Random, made with the row, never reused: every link to this person is signed over
    # it (subscribers.tokens). "" only for rows made before migration 5.
    sa.Column("link_key", sa.String(32), nullable=False, server_default=""),
    sa.CheckConstraint(
        "status IN ('pending', 'active', 'unsubscribed', 'bounced', 'complained')",
        name="ck_subscribers_status",
    ),
    sqlite_autoincrement=True,  # ids are never reused (PostgreSQL: its sequence)
)

subscriber_topics = sa.Table(
    "subscriber_topics",
    metadata,
    sa.Column(
        "subscriber_id",
        sa.Integer,
        sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("topic", sa.String(64), primary_key=True),
    sa.Index("ix_subscriber_topics_topic", "topic", "subscriber_id"),
)

consents = sa.Table(
    "consents",
    metadata,
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

suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("email_hash", sa.String(64), primary_key=True),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("source", sa.String(200), nullable=False, server_default=""),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="CASCADE")),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_events_subscriber_kind", "subscriber_id", "kind", "created_at"),
)

campaigns = sa.Table(
    "campaigns",
    metadata,
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

# The per-recipient ledger: one row per campaign and subscriber, ever.
deliveries = sa.Table(
    "deliveries",
    metadata,
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
    # pending -> inflight -> sent | failed | retry | skipped | unknown (answer lost)
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("claim", sa.String(36)),  # the batch a worker took, before calling out
    sa.Column("claimed_at", UTCDateTime),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("provider_id", sa.String(200), nullable=False, server_default=""),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("added_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime),
    sa.Column("holder", sa.String(32)),  # the send run that holds the claim
    # how a lost answer was settled: reconciled | resent | skipped
    sa.Column("doubt", sa.String(12), nullable=False, server_default=""),
    sa.Index("ix_deliveries_queue", "campaign_id", "status", "subscriber_id"),
    # Partial: only the rows a send looks for, so claims stay fast as the queue empties
    # (the ledger spells these statuses out literally, to match the predicates).
    sa.Index(
        "ix_deliveries_pending",
        "campaign_id",
        "subscriber_id",
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    ),
    sa.Index(
        "ix_deliveries_held",
        "campaign_id",
        "claim",
        postgresql_where=sa.text("status IN ('inflight', 'unknown')"),
        sqlite_where=sa.text("status IN ('inflight', 'unknown')"),
    ),
)

# A signup for an address already in the store: what the person asked for, applied only
# when they follow the link in the confirmation email it sends (subscribers.signup_requests).
signup_requests = sa.Table(
    "signup_requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "subscriber_id",
        sa.Integer,
        sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("name", sa.String(200)),  # None: keep the current name
    sa.Column("topics", sa.String(200), nullable=False),  # comma-separated keys
    sa.Column("source", sa.String(200), nullable=False),  # the consent, recorded on confirm
    sa.Column("wording", sa.Text, nullable=False, server_default=""),
    sa.Column("ip", sa.String(64)),
    sa.Column("user_agent", sa.String(500)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sqlite_autoincrement=True,  # a used request's id (in old links) is never handed out again
)

# Every process that sent a campaign: who, with which provider, alive until when.
send_runs = sa.Table(
    "send_runs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column(
        "campaign_id", sa.Integer, sa.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False
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

# Sequences as the store has seen them: readers who confirm after ``started_at`` are in.
sequences = sa.Table(
    "sequences",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("started_at", UTCDateTime, nullable=False),
)

# When each step was first seen: a step added later reaches only readers not yet past it.
sequence_steps = sa.Table(
    "sequence_steps",
    metadata,
    sa.Column(
        "sequence",
        sa.String(64),
        sa.ForeignKey("sequences.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("step", sa.String(200), primary_key=True),
    sa.Column("first_seen", UTCDateTime, nullable=False),
)

# Readers enrolled on purpose (``sequences enroll NAME --existing``), from enrolled_at.
sequence_enrollments = sa.Table(
    "sequence_enrollments",
    metadata,
    sa.Column(
        "sequence",
        sa.String(64),
        sa.ForeignKey("sequences.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "subscriber_id",
        sa.Integer,
        sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("enrolled_at", UTCDateTime, nullable=False),
    sa.Index("ix_sequence_enrollments_subscriber", "subscriber_id"),
)

# Campaigns to send at a chosen time (``send SLUG --at``), sent by ``newsletter due``.
schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("slug", sa.String(200), nullable=False),
    sa.Column("topic", sa.String(64), nullable=False),
    sa.Column("send_at", UTCDateTime, nullable=False),
    sa.Column("state", sa.String(12), nullable=False),  # scheduled | sending | sent | cancelled
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("slug", "topic", name="uq_schedules_slug_topic"),
    sa.Index("ix_schedules_due", "state", "send_at"),
)

# Confirmation emails to send: written with the signup, sent by the mailer.
confirmation_queue = sa.Table(
    "confirmation_queue",
    metadata,
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
    # the request this email confirms (None: a new address, confirming its own row)
    sa.Column("request_id", sa.Integer, sa.ForeignKey("signup_requests.id", ondelete="CASCADE")),
)

# What providers reported after a send (webhooks), once per provider event id.
delivery_events = sa.Table(
    "delivery_events",
    metadata,
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

# Signature tokens already used (Mailgun): a replayed request is refused.
webhook_tokens = sa.Table(
    "webhook_tokens",
    metadata,
    sa.Column("provider", sa.String(32), primary_key=True),
    sa.Column("token", sa.String(200), primary_key=True),
    sa.Column("seen_at", UTCDateTime, nullable=False),
    sa.Index("ix_webhook_tokens_seen", "seen_at"),
)


# ---- the runner -------------------------------------------------------------------------


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
    rebuilds = getattr(step, "rebuilds_tables", False)
    with writer(engine).connect() as conn, _foreign_keys_off(conn, rebuilds), conn.begin():
        _lock(conn)
        if current_version(conn) >= version:
            return False
        try:
            step(conn)
            if rebuilds and conn.dialect.name == "sqlite":
                check_foreign_keys(conn)
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


@contextmanager
def _foreign_keys_off(conn: Connection, needed: bool) -> Iterator[None]:
    """SQLite: foreign keys off for a table rebuild. The pragma is a no-op inside a
    transaction, so it is set on the connection before BEGIN, and set back after."""
    if not (needed and conn.dialect.name == "sqlite"):
        yield
        return
    raw = conn.connection.dbapi_connection
    assert raw is not None
    raw.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        raw.execute("PRAGMA foreign_keys = ON")


def _lock(conn: Connection) -> None:
    """SQLite holds the write lock already (BEGIN IMMEDIATE); PostgreSQL takes an advisory one."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})


def _describe(step: Migration) -> str:
    doc = (step.__doc__ or step.__name__).strip().splitlines()[0]
    return doc[:200]
