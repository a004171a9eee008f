"""The schema's history: one function per version, each a frozen snapshot of its DDL.

Step N (1-based in ``MIGRATIONS``) takes a database from version N-1 to N. Each step
spells out the tables and columns it creates right here, with plain SQLAlchemy types
(``sa.DateTime``, not the live ``UTCDateTime``), and never calls the live metadata in
:mod:`subscribers.schema`: editing today's tables must not change what step 1 did for a
database created two releases ago. ``tests/test_migrations.py`` builds a database step
by step and checks it matches the live metadata exactly (columns, types, nullability,
defaults, keys, indexes, uniques) on SQLite and PostgreSQL.

Adding a migration:

1. write ``def _006_something(conn: Connection) -> None`` below, with a one-line
   docstring (recorded in ``schema_version``), creating or altering what it needs
   through ``conn`` and nothing from ``subscribers.schema``;
2. append it to ``MIGRATIONS``;
3. change the matching ``sa.Table`` in ``subscribers.schema`` the same way; the test
   fails until the two agree.

A step runs in one transaction under the migration lock (see ``schema.migrate``).
SQLite's ALTER TABLE only adds and renames columns; for anything else rebuild the table
(create, copy, drop, rename) in a step marked with :func:`rebuilds_tables`, which runs
with SQLite's foreign keys off, as SQLite's documentation prescribes.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from subscribers.errors import SchemaError

Migration = Callable[[Connection], None]
STATUS_CHECK = "status IN ('pending', 'active', 'unsubscribed', 'bounced', 'complained')"


def rebuilds_tables(step: Migration) -> Migration:
    """Mark a step that rebuilds SQLite tables: it runs with ``PRAGMA foreign_keys``
    off (dropping a parent table would otherwise cascade into its children), and must
    leave ``PRAGMA foreign_key_check`` clean (see :func:`check_foreign_keys`)."""
    step.rebuilds_tables = True  # type: ignore[attr-defined]
    return step


def check_foreign_keys(conn: Connection) -> None:
    """After a SQLite rebuild: every reference must still point at a row."""
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise SchemaError(f"the table rebuild left {len(broken)} broken reference(s)")


def _ids(md: sa.MetaData, *names: str) -> None:
    """Stand-ins for tables referenced by foreign keys (only their ``id`` matters)."""
    for name in names:
        sa.Table(name, md, sa.Column("id", sa.Integer, primary_key=True))


# ---- 1 ------------------------------------------------------------------------------


def _001_initial(conn: Connection) -> None:
    """subscribers, topics, consent records, suppression list, event log"""
    md = sa.MetaData()
    sa.Table(
        "subscribers",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("confirmed_at", sa.DateTime),
        sa.Column("unsubscribed_at", sa.DateTime),
        sa.CheckConstraint(STATUS_CHECK, name="ck_subscribers_status"),
    )
    sa.Table(
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
    sa.Table(
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
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("topics", sa.String(200), nullable=False, server_default=""),
        sa.Column("ip", sa.String(64)),
        sa.Column("user_agent", sa.String(500)),
        sa.Column("wording", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "suppressions",
        md,
        sa.Column("email_hash", sa.String(64), primary_key=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("source", sa.String(200), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "events",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="CASCADE")),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Index("ix_events_subscriber_kind", "subscriber_id", "kind", "created_at"),
    )
    md.create_all(conn)


# ---- 2 ------------------------------------------------------------------------------


def _002_send_ledger(conn: Connection) -> None:
    """campaigns and the per-recipient delivery ledger"""
    md = sa.MetaData()
    _ids(md, "subscribers")
    campaigns = sa.Table(
        "campaigns",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("slug", sa.String(200), nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("slug", "topic", name="uq_campaigns_slug_topic"),
    )
    deliveries = sa.Table(
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
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("claim", sa.String(36)),
        sa.Column("claimed_at", sa.DateTime),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("provider_id", sa.String(200), nullable=False, server_default=""),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("added_at", sa.DateTime, nullable=False),
        sa.Column("sent_at", sa.DateTime),
        sa.Index("ix_deliveries_queue", "campaign_id", "status", "subscriber_id"),
        sa.Index("ix_deliveries_claim", "claim"),
    )
    campaigns.create(conn)
    deliveries.create(conn)


# ---- 3 ------------------------------------------------------------------------------


def _003_confirmation_queue(conn: Connection) -> None:
    """confirmation emails queued with the signup, sent by the mailer"""
    md = sa.MetaData()
    _ids(md, "subscribers")
    sa.Table(
        "confirmation_queue",
        md,
        sa.Column(
            "subscriber_id",
            sa.Integer,
            sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("due_at", sa.DateTime, nullable=False),
        sa.Column("claim", sa.String(36)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=False, server_default=""),
        sa.Index("ix_confirmation_queue_due", "due_at"),
    ).create(conn)


# ---- 4 ------------------------------------------------------------------------------


def _004_delivery_events(conn: Connection) -> None:
    """provider webhook events and used webhook signature tokens"""
    md = sa.MetaData()
    _ids(md, "subscribers", "campaigns")
    sa.Table(
        "delivery_events",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("provider_event_id", sa.String(200), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("bounce", sa.String(8), nullable=False, server_default=""),
        sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaigns.id", ondelete="SET NULL")),
        sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="CASCADE")),
        sa.Column("email_hash", sa.String(64), nullable=False, server_default=""),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("occurred_at", sa.DateTime),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("provider", "provider_event_id", name="uq_delivery_events_provider_id"),
        sa.Index("ix_delivery_events_campaign", "campaign_id", "subscriber_id", "type"),
        sa.Index("ix_delivery_events_address", "email_hash", "type", "id"),
    ).create(conn)
    sa.Table(
        "webhook_tokens",
        md,
        sa.Column("provider", sa.String(32), primary_key=True),
        sa.Column("token", sa.String(200), primary_key=True),
        sa.Column("seen_at", sa.DateTime, nullable=False),
        sa.Index("ix_webhook_tokens_seen", "seen_at"),
    ).create(conn)


# ---- 5 ------------------------------------------------------------------------------

SUBSCRIBER_COLUMNS_4 = (
    "id, email, email_hash, name, status, created_at, updated_at, confirmed_at, unsubscribed_at"
)


@rebuilds_tables
def _005_identity(conn: Connection) -> None:
    """link keys, ids never reused, signup requests waiting for confirmation"""
    if conn.dialect.name == "sqlite":
        _rebuild_subscribers_with_autoincrement(conn)
    else:  # a SERIAL's sequence never hands out an id twice already ...
        conn.exec_driver_sql(
            "ALTER TABLE subscribers ADD COLUMN link_key VARCHAR(32) DEFAULT '' NOT NULL"
        )
        # ... unless rows came in with explicit ids (a restored dump): move it past them,
        # never back (nextval keeps whatever erased ids it handed out already).
        seq = "pg_get_serial_sequence('subscribers', 'id')"
        conn.exec_driver_sql(
            f"SELECT setval({seq}, GREATEST("
            f"(SELECT COALESCE(MAX(id), 0) FROM subscribers) + 1, nextval({seq})), false)"
        )
    md = sa.MetaData()
    _ids(md, "subscribers")
    sa.Table(
        "signup_requests",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "subscriber_id",
            sa.Integer,
            sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("name", sa.String(200)),
        sa.Column("topics", sa.String(200), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("wording", sa.Text, nullable=False, server_default=""),
        sa.Column("ip", sa.String(64)),
        sa.Column("user_agent", sa.String(500)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sqlite_autoincrement=True,
    ).create(conn)
    conn.exec_driver_sql(
        "ALTER TABLE confirmation_queue ADD COLUMN request_id INTEGER"
        " REFERENCES signup_requests (id) ON DELETE CASCADE"
    )


def _rebuild_subscribers_with_autoincrement(conn: Connection) -> None:
    """SQLite hands out max(id) + 1 without AUTOINCREMENT, so erasing the newest reader
    gave their id to the next signup; AUTOINCREMENT can only be had by a rebuild.
    Rows made before this step keep the link key "" (their old links still work)."""
    md = sa.MetaData()
    sa.Table(
        "subscribers_new",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("confirmed_at", sa.DateTime),
        sa.Column("unsubscribed_at", sa.DateTime),
        sa.Column("link_key", sa.String(32), nullable=False, server_default=""),
        sa.CheckConstraint(STATUS_CHECK, name="ck_subscribers_status"),
        sqlite_autoincrement=True,
    ).create(conn)
    conn.exec_driver_sql(
        f"INSERT INTO subscribers_new ({SUBSCRIBER_COLUMNS_4})"
        f" SELECT {SUBSCRIBER_COLUMNS_4} FROM subscribers"
    )
    conn.exec_driver_sql("DROP TABLE subscribers")
    conn.exec_driver_sql("ALTER TABLE subscribers_new RENAME TO subscribers")


# ---- 6 ------------------------------------------------------------------------------


def _006_send_runs(conn: Connection) -> None:
    """send runs with heartbeats; who holds each claim; how unknown outcomes were settled"""
    conn.execute(sa.text("ALTER TABLE deliveries ADD COLUMN holder VARCHAR(32)"))
    conn.execute(sa.text("ALTER TABLE deliveries ADD COLUMN doubt VARCHAR(12) NOT NULL DEFAULT ''"))
    md = sa.MetaData()
    _ids(md, "campaigns")
    sa.Table(
        "send_runs",
        md,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "campaign_id",
            sa.Integer,
            sa.ForeignKey("campaigns.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("proc_start", sa.String(32), nullable=False, server_default=""),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("heartbeat_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
        sa.Index("ix_send_runs_campaign", "campaign_id", "started_at"),
    ).create(conn)


# ---- 7 ------------------------------------------------------------------------------


def _007_sequences_and_schedules(conn: Connection) -> None:
    """sequences, their steps and enrollments; scheduled campaigns"""
    md = sa.MetaData()
    _ids(md, "subscribers")
    sa.Table(
        "sequences",
        md,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("started_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "sequence_steps",
        md,
        sa.Column(
            "sequence",
            sa.String(64),
            sa.ForeignKey("sequences.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("step", sa.String(200), primary_key=True),
        sa.Column("first_seen", sa.DateTime, nullable=False),
    )
    sa.Table(
        "sequence_enrollments",
        md,
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
        sa.Column("enrolled_at", sa.DateTime, nullable=False),
        sa.Index("ix_sequence_enrollments_subscriber", "subscriber_id"),
    )
    sa.Table(
        "schedules",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("slug", sa.String(200), nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("send_at", sa.DateTime, nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("slug", "topic", name="uq_schedules_slug_topic"),
        sa.Index("ix_schedules_due", "state", "send_at"),
    )
    for name in ("sequences", "sequence_steps", "sequence_enrollments", "schedules"):
        md.tables[name].create(conn)


# ---- 8 ------------------------------------------------------------------------------


def _008_queue_indexes(conn: Connection) -> None:
    """partial indexes for the send queue: pending rows, and rows held under a claim"""
    md = sa.MetaData()
    deliveries = sa.Table(
        "deliveries",
        md,
        sa.Column("campaign_id", sa.Integer),
        sa.Column("subscriber_id", sa.Integer),
        sa.Column("status", sa.String(12)),
        sa.Column("claim", sa.String(36)),
    )
    pending = sa.text("status = 'pending'")
    held = sa.text("status IN ('inflight', 'unknown')")
    sa.Index(
        "ix_deliveries_pending",
        deliveries.c.campaign_id,
        deliveries.c.subscriber_id,
        postgresql_where=pending,
        sqlite_where=pending,
    ).create(conn)
    sa.Index(
        "ix_deliveries_held",
        deliveries.c.campaign_id,
        deliveries.c.claim,
        postgresql_where=held,
        sqlite_where=held,
    ).create(conn)
    conn.execute(sa.text("DROP INDEX ix_deliveries_claim"))


MIGRATIONS: list[Migration] = [
    _001_initial,
    _002_send_ledger,
    _003_confirmation_queue,
    _004_delivery_events,
    _005_identity,
    _006_send_runs,
    _007_sequences_and_schedules,
    _008_queue_indexes,
]
