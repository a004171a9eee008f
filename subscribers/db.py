"""Engines for SQLite (the default) and PostgreSQL, behind one SQLAlchemy Core code path.

SQLite gets WAL, a busy timeout, foreign keys and real transactions: sqlite3's legacy
mode would not BEGIN before DDL or SELECT (see SQLAlchemy's "Transactions with SQLite
and the sqlite3 driver"), so we emit BEGIN ourselves. Writers use ``BEGIN IMMEDIATE``,
which takes the write lock up front: two deferred transactions that both read and then
write can deadlock, and SQLite answers that with "database is locked" at once instead of
waiting out the busy timeout.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError

from pipeline.errors import ConfigError

BUSY_TIMEOUT_MS = 15_000
WRITE_OPTION = "newsletter_write"  # execution option: this transaction will write
_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}


def normalise_url(url: str) -> URL:
    """Parse a database URL; plain ``postgresql://`` (or ``postgres://``) means psycopg 3."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(
            f"not a database URL: {url!r}",
            hint="use sqlite:///path/to/newsletter.db or postgresql://user@host/db",
        ) from exc
    if parsed.drivername in _DRIVERS:
        parsed = parsed.set(drivername=_DRIVERS[parsed.drivername])
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"unsupported database {parsed.get_backend_name()!r} in NEWSLETTER_DATABASE_URL",
            hint="use sqlite:///... or postgresql://...",
        )
    return parsed


def make_engine(url: str) -> Engine:
    """An engine with the pragmas and transaction handling this project relies on."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    return sa.create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)


def writer(engine: Engine) -> Engine:
    """The same engine, marked so that SQLite begins its transactions IMMEDIATE."""
    return engine.execution_options(**{WRITE_OPTION: True})


def _sqlite_engine(url: URL) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        pool_size=20,
        max_overflow=20,
    )
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see module doc)
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _wait_for_lock(lambda: cursor.execute("PRAGMA journal_mode = WAL"), "journal_mode")
        cursor.execute("PRAGMA synchronous = NORMAL")  # WAL: durable across app crashes
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: sa.Connection) -> None:
    raw = conn.connection.dbapi_connection
    if conn.get_execution_options().get(WRITE_OPTION):
        _begin_immediate(raw)
    else:
        raw.execute("BEGIN")


def _begin_immediate(raw: Any) -> None:
    """BEGIN IMMEDIATE, waiting for another process's write lock in small steps.

    SQLite's own busy handler sleeps 1, 2, 5, 10 ... 100 ms between tries: a writer
    waits up to 25 ms for a lock held 0.5 ms, and the threads queued behind it in this
    process (see Store._write_lock) wait with it. Polling from 50 us up to 2 ms keeps the
    same overall deadline (BUSY_TIMEOUT_MS) with a far shorter wait.
    """
    raw.execute("PRAGMA busy_timeout = 0")
    try:
        _wait_for_lock(lambda: raw.execute("BEGIN IMMEDIATE"), "BEGIN IMMEDIATE")
    finally:
        raw.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def _wait_for_lock(attempt: Callable[[], object], what: str) -> None:
    """Run ``attempt`` until SQLite stops answering "locked", up to BUSY_TIMEOUT_MS.

    Also used for ``PRAGMA journal_mode = WAL``: on a brand-new file, switching to WAL
    needs the exclusive lock, and SQLite answers "database is locked" at once (no busy
    handler) while another connection is switching it too: several processes or threads
    opening a new store together.
    """
    deadline, pause = time.monotonic() + BUSY_TIMEOUT_MS / 1000, 0.00005
    while True:
        try:
            attempt()
            return
        except sqlite3.OperationalError as exc:
            if not _locked(exc) or time.monotonic() > deadline:
                # as SQLAlchemy would have wrapped it: the store reports it clearly
                raise sa.exc.OperationalError(what, None, exc) from exc
        time.sleep(pause * (0.5 + random.random()))
        pause = min(pause * 2, 0.002)


def _locked(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)
