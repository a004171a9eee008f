"""Shared fixtures: a throwaway project root, settings, PostgreSQL and a real Chromium."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pipeline.settings import Settings, load_settings

if TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient

    from subscribers.store import Store

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project root with the repo's content, templates and config, and an empty var/."""
    shutil.copytree(REPO / "content", tmp_path / "content")
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    shutil.copy(REPO / "newsletter.toml", tmp_path / "newsletter.toml")
    return tmp_path


@pytest.fixture
def test_env(project: Path) -> dict[str, str]:
    """Environment for the project: no secrets, a fixed secret key, the outbox provider."""
    return {"NEWSLETTER_SECRET_KEY": "test-secret-key", "PATH": os.environ.get("PATH", "")}


@pytest.fixture
def settings(project: Path, test_env: dict[str, str]) -> Settings:
    return load_settings(project / "newsletter.toml", env=test_env)


@pytest.fixture(scope="session")
def pg_url() -> str:
    """URL of the real PostgreSQL test database; fails (not skips) in CI when unreachable."""
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(PG_URL)
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any connection failure
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL not reachable at {PG_URL}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")
    return PG_URL


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database, once as a SQLite file and once as a private PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'newsletter.db'}"
    else:
        from helpers import pg_schema

        with pg_schema(request.getfixturevalue("pg_url")) as url:
            yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Environment for the project's database: none for its own SQLite file, then the
    NEWSLETTER_DATABASE_URL of a private PostgreSQL schema."""
    if request.param == "sqlite":
        yield {}
    else:
        from helpers import pg_schema

        with pg_schema(request.getfixturevalue("pg_url")) as url:
            yield {"NEWSLETTER_DATABASE_URL": url}


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """A real headless Chromium (Debian's package) driven by Playwright."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def artifacts() -> Path:
    """Folder for screenshots and other test artifacts kept after the run."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def static_site(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``(URL, folder)`` of a plain static web server on another port (another origin)."""
    root = tmp_path / "site"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def recorder() -> object:
    """An in-memory email provider for web tests (tests/helpers.py)."""
    from helpers import RecordingProvider

    return RecordingProvider()


@pytest.fixture
def app(project: Path, test_env: dict[str, str], recorder: object) -> Iterator[Flask]:
    """The Flask app on the project's settings, rate limit off, mail to ``recorder``."""
    from subscribers.web import create_app

    env = {**test_env, "NEWSLETTER_SIGNUP_RATE_LIMIT": "0"}
    app = create_app(load_settings(project / "newsletter.toml", env=env), provider=recorder)
    yield app
    app.extensions["newsletter"].store.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def store(app: Flask) -> Store:
    """The web app's own store (test files that need a store without the app define theirs)."""
    return app.extensions["newsletter"].store
