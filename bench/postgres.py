"""The real PostgreSQL server for the benchmarks' PostgreSQL rows (127.0.0.1 only).

``BENCH_DATABASE_URL`` overrides the database (default: the test database on
127.0.0.1:5432). Each row gets a fresh schema of its own, dropped afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from tests.helpers import pg_schema

URL = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def reachable() -> bool:
    engine = sa.create_engine(URL)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A database URL whose connections use a new, empty schema (dropped afterwards)."""
    with pg_schema(URL) as url:
        yield url
