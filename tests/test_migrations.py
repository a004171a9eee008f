"""Versioned schema migrations: fresh databases, upgrades in place, failures, races."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from helpers import pg_schema
from sqlalchemy.engine import Connection

from subscribers import schema as s
from subscribers.db import make_engine
from subscribers.errors import SchemaError
from subscribers.store import Store


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


def versions(engine: sa.Engine) -> list[int]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(s.schema_version.c.version).order_by(s.schema_version.c.version)
            ).scalars()
        )


def test_a_fresh_database_gets_every_migration(engine: sa.Engine) -> None:
    assert s.migrate(engine) == list(range(1, len(s.MIGRATIONS) + 1))
    assert versions(engine) == list(range(1, len(s.MIGRATIONS) + 1))


@pytest.fixture
def live_engine(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[sa.Engine]:
    """A second, empty database of the same kind, for ``metadata.create_all``."""
    if db_url.startswith("sqlite"):
        eng = make_engine(f"sqlite:///{tmp_path / 'live.db'}")
        yield eng
        eng.dispose()
    else:
        with pg_schema(request.getfixturevalue("pg_url")) as url:
            eng = make_engine(url)
            yield eng
            eng.dispose()


def describe(engine: sa.Engine) -> dict[str, object]:
    """Everything about a database's tables that the store relies on, as reflected."""
    inspector = sa.inspect(engine)
    found: dict[str, object] = {}
    for name in sorted(inspector.get_table_names()):
        columns = {
            c["name"]: (str(c["type"]), c["nullable"], _default(c.get("default")))
            for c in inspector.get_columns(name)
        }
        foreign = _foreign_keys(engine, inspector, name)
        indexes = sorted(
            (ix["name"], tuple(ix["column_names"]), bool(ix["unique"]), _predicate(ix))
            for ix in inspector.get_indexes(name)
            if not ix.get("duplicates_constraint")
        )
        uniques = sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(name))
        checks = sorted(
            (c["name"], " ".join(c["sqltext"].split()))
            for c in inspector.get_check_constraints(name)
        )
        primary = tuple(inspector.get_pk_constraint(name)["constrained_columns"])
        found[name] = {
            "columns": columns,
            "primary key": primary,
            "foreign keys": foreign,
            "indexes": indexes,
            "unique": uniques,
            "checks": checks,
            "autoincrement": _sqlite_autoincrement(engine, name),
        }
    return found


def _predicate(index: dict[str, Any]) -> str:
    """A partial index's WHERE, as the database spells it."""
    options = index.get("dialect_options") or {}
    where = options.get("postgresql_where", options.get("sqlite_where", ""))
    return " ".join(str(where).split())


def _foreign_keys(engine: sa.Engine, inspector: sa.Inspector, table: str) -> list[tuple]:
    """(columns, referred table, referred columns, ON DELETE) of each foreign key.

    On SQLite from PRAGMA foreign_key_list: SQLAlchemy's reflection misses ON DELETE of
    a REFERENCES clause added with ALTER TABLE ADD COLUMN, which SQLite does enforce."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(f"PRAGMA foreign_key_list('{table}')").all()
        return sorted(((r[3],), r[2], (r[4],), r[6].replace("NO ACTION", "")) for r in rows)
    return sorted(
        (
            tuple(fk["constrained_columns"]),
            fk["referred_table"],
            tuple(fk["referred_columns"]),
            (fk.get("options") or {}).get("ondelete", "").upper(),
        )
        for fk in inspector.get_foreign_keys(table)
    )


def _default(value: object) -> object:
    """A reflected default, spelled the same whichever way the table was made."""
    return None if value is None else str(value).strip("()")


def _sqlite_autoincrement(engine: sa.Engine, table: str) -> bool | None:
    """SQLite: whether the table was created with AUTOINCREMENT (ids never reused)."""
    if engine.dialect.name != "sqlite":
        return None
    with engine.connect() as conn:
        sql = conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).scalar_one()
    return "AUTOINCREMENT" in sql.upper()


def test_the_schema_built_step_by_step_matches_the_live_metadata(
    engine: sa.Engine, live_engine: sa.Engine
) -> None:
    """The migrations (frozen snapshots) and the live tables describe the same schema:
    columns, types, nullability, defaults, keys, indexes, uniques, checks."""
    s.migrate(engine)
    s.metadata.create_all(live_engine)
    migrated, live = describe(engine), describe(live_engine)
    assert sorted(migrated) == sorted(live)
    for table in live:
        assert migrated[table] == live[table], table


def test_the_migrations_never_use_the_live_metadata() -> None:
    """A step that built its tables from subscribers.schema would change history
    whenever today's tables change (the first add-column migration would rewrite step 1)."""
    import ast
    import inspect

    from subscribers import migrations

    tree = ast.parse(inspect.getsource(migrations))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m and m.startswith("subscribers.schema")}
    assert "UTCDateTime" not in {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def test_migrating_again_changes_nothing(engine: sa.Engine) -> None:
    s.migrate(engine)
    assert s.migrate(engine) == []
    with engine.connect() as conn:
        assert s.current_version(conn) == s.latest_version()


def test_each_step_is_recorded_with_its_description(engine: sa.Engine) -> None:
    s.migrate(engine)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(s.schema_version).order_by("version")).all()
    assert rows[0].description.startswith("subscribers, topics, consent records")
    assert all(r.applied_at.tzinfo is not None for r in rows)


def test_an_older_database_upgrades_in_place_and_keeps_its_data(
    db_url: str, engine: sa.Engine
) -> None:
    # A database written by the first release (schema version 1) ...
    assert s.migrate(engine, s.MIGRATIONS[:1]) == [1]
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO subscribers (id, email, email_hash, name, status, created_at, updated_at,"
            " confirmed_at) VALUES (7, 'ann@example.com', :h, 'Ann', 'active', :t, :t, :t)"
        ), {"h": "ab" * 32, "t": "2025-01-02 03:04:05"})  # fmt: skip
        conn.execute(sa.text("INSERT INTO subscriber_topics VALUES (7, 'updates')"))
    # ... opened by today's code: upgraded on open, data intact.
    with Store(db_url) as store:
        assert versions(store.engine) == list(range(1, len(s.MIGRATIONS) + 1))
        ann = store.get(7)
        assert (ann.email, ann.name, ann.status, ann.topics) == (
            "ann@example.com",
            "Ann",
            "active",
            ("updates",),
        )
        assert [r[0] for r in store.eligible_recipients("updates")] == [7]


def test_adding_a_migration_is_appending_a_function(engine: sa.Engine) -> None:
    s.migrate(engine)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO subscribers (email, email_hash, name, status, created_at, updated_at)"
            " VALUES ('bo@example.com', :h, 'Bo', 'pending', :t, :t)"
        ), {"h": "cd" * 32, "t": "2025-01-02 03:04:05"})  # fmt: skip

    def _999_webhook_events(conn: Connection) -> None:
        """webhook events (a later issue's migration)"""
        md = sa.MetaData()
        sa.Table("webhook_events", md, sa.Column("id", sa.String(100), primary_key=True))
        md.create_all(conn)
        conn.execute(sa.text("ALTER TABLE subscribers ADD COLUMN source VARCHAR(50)"))

    later = [*s.MIGRATIONS, _999_webhook_events]
    assert s.migrate(engine, later) == [len(later)]
    inspector = sa.inspect(engine)
    assert inspector.has_table("webhook_events")
    assert "source" in {c["name"] for c in inspector.get_columns("subscribers")}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT name FROM subscribers")).scalars().all() == ["Bo"]


def test_a_failing_step_rolls_back_and_leaves_the_previous_version(engine: sa.Engine) -> None:
    s.migrate(engine)

    def _999_broken(conn: Connection) -> None:
        """creates a table, then fails"""
        conn.execute(sa.text("CREATE TABLE half_done (id INTEGER)"))
        conn.execute(sa.text("SELECT * FROM no_such_table"))

    with pytest.raises(SchemaError, match="migration .* failed"):
        s.migrate(engine, [*s.MIGRATIONS, _999_broken])
    assert versions(engine) == list(range(1, len(s.MIGRATIONS) + 1))
    assert not sa.inspect(engine).has_table("half_done")  # transactional DDL, SQLite too


def test_a_database_newer_than_the_code_is_refused_clearly(db_url: str, engine: sa.Engine) -> None:
    s.migrate(engine)
    with engine.begin() as conn:
        conn.execute(
            s.schema_version.insert().values(
                version=99, description="from the future", applied_at=sa.func.now()
            )
        )
    with pytest.raises(SchemaError, match="newer than this code") as info:
        Store(db_url)
    assert "upgrade newsletter-pipeline" in str(info.value)


def test_workers_starting_together_apply_each_step_once(db_url: str) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def open_store() -> None:
        try:
            start.wait()
            Store(db_url).close()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    eng = make_engine(db_url)
    try:
        assert versions(eng) == list(range(1, len(s.MIGRATIONS) + 1))
    finally:
        eng.dispose()


OPEN_WHEN_TOLD = """
import sys, time
from pathlib import Path
from subscribers.store import Store
ready, go, url = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
ready.touch()
deadline = time.monotonic() + 30
while not go.exists():
    if time.monotonic() > deadline:
        sys.exit("never told to go")
    time.sleep(0.001)
Store(url).close()
"""


def test_processes_opening_a_new_sqlite_store_together_all_succeed(tmp_path: Path) -> None:
    """The first open switches the file to WAL and migrates it: six processes at once."""
    import subprocess
    import sys
    import time

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_WHEN_TOLD, str(tmp_path / f"ready{n}"), str(go), url],
            stderr=subprocess.PIPE,
        )
        for n in range(6)
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready{n}").exists() for n in range(6)):
        assert time.monotonic() < deadline, "the processes did not start"
        time.sleep(0.01)
    go.touch()
    errors = [p.communicate(timeout=60)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    eng = make_engine(url)
    try:
        assert versions(eng) == list(range(1, len(s.MIGRATIONS) + 1))
    finally:
        eng.dispose()
