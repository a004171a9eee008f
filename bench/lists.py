"""Subscriber lists for the send benchmarks, filled once and copied for each row.

A list is ``n`` confirmed readers of "updates" with their consent records, written
straight into the store's tables (migrated by the store itself) in a few statements:
a million rows through ``Store.add_many`` would take minutes of the benchmark's budget.
Like after a bulk import, PostgreSQL has no statistics on them when a send starts.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from bench import postgres
from subscribers.store import Store
from subscribers.validation import email_hash

COPIED = ("subscribers", "subscriber_topics", "consents")
WORDING = "benchmark readers"


def _readers(n: int) -> Iterator[tuple[int, str, str, str]]:
    for i in range(n):
        email = f"reader{i}@example.com"
        yield i + 1, email, email_hash(email), f"Reader {i}"


@contextmanager
def sqlite_list(n: int) -> Iterator[Path]:
    """A SQLite file holding ``n`` readers; copy it (:func:`sqlite_copy`) for each send."""
    root = Path(tempfile.mkdtemp(prefix="nl-bench-list-"))
    db = root / "list.db"
    Store(f"sqlite:///{db}").close()
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    con = sqlite3.connect(db)
    try:
        with con:
            con.executemany(
                "INSERT INTO subscribers (id, email, email_hash, name, status, created_at, "
                "updated_at, confirmed_at) VALUES (?, ?, ?, ?, 'active', ?, ?, ?)",
                ((*reader, now, now, now) for reader in _readers(n)),
            )
            for sql in _rest(lambda name: f":{name}"):
                con.execute(sql, {"now": now, "wording": WORDING})
    finally:
        con.close()
    try:
        yield db
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _rest(param: Callable[[str], str]) -> list[str]:
    """Topics and consent records of every reader; ``param`` spells a placeholder."""
    return [
        "INSERT INTO subscriber_topics (subscriber_id, topic) "
        "SELECT id, 'updates' FROM subscribers",
        "INSERT INTO consents (subscriber_id, kind, source, topics, wording, created_at) "
        f"SELECT id, 'import', 'benchmark', 'updates', {param('wording')}, {param('now')} "
        "FROM subscribers",
    ]


def sqlite_copy(template: Path, root: Path) -> str:
    """A copy of the list in ``root``; returns its database URL."""
    shutil.copy(template, root / "list.db")
    return f"sqlite:///{root / 'list.db'}"


@contextmanager
def postgres_list(n: int) -> Iterator[str]:
    """A PostgreSQL schema holding ``n`` readers (dropped afterwards)."""
    with postgres.fresh_schema() as url:
        Store(url).close()
        ids, emails, hashes, names = (list(column) for column in zip(*_readers(n), strict=True))
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO subscribers (id, email, email_hash, name, status, created_at, "
                "updated_at, confirmed_at) SELECT i, e, h, nm, 'active', %(now)s, %(now)s, "
                "%(now)s FROM unnest(%(ids)s::integer[], %(emails)s::varchar[], "
                "%(hashes)s::varchar[], %(names)s::varchar[]) AS r(i, e, h, nm)",
                {"ids": ids, "emails": emails, "hashes": hashes, "names": names, "now": now},
            )
            for sql in _rest(lambda name: f"%({name})s"):
                conn.exec_driver_sql(sql, {"now": now, "wording": WORDING})
            _sequences(conn)
        engine.dispose()
        yield url


@contextmanager
def postgres_copy(template_url: str) -> Iterator[str]:
    """A fresh schema (migrated by the store) with the template's readers copied in."""
    source = sa.engine.make_url(template_url).query["options"].partition("=")[2]
    with postgres.fresh_schema() as url:
        Store(url).close()
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            for table in COPIED:
                conn.exec_driver_sql(f'INSERT INTO {table} SELECT * FROM "{source}".{table}')
            _sequences(conn)
        engine.dispose()
        yield url


def _sequences(conn: sa.Connection) -> None:
    for table in ("subscribers", "consents"):
        conn.exec_driver_sql(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
        )
