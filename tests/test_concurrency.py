"""Many signups at once: each stored once, no "database is locked", no 5xx.

In-process threads against SQLite and PostgreSQL, and a real `newsletter serve` with two
worker processes writing the same SQLite file.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import (
    RecordingProvider,
    free_port,
    pg_schema,
    running_server,
    set_base_url,
    wait_for_outbox,
)

from pipeline.settings import load_settings
from subscribers.store import Store
from subscribers.web import create_app

THREADS = 16
PER_THREAD = 15


def hammer(worker: Callable[[int], list[int]], threads: int = THREADS) -> Counter[int]:
    """Run ``worker(n)`` in ``threads`` threads released together; count the statuses."""
    statuses: Counter[int] = Counter()
    errors: list[BaseException] = []
    start = threading.Barrier(threads)
    lock = threading.Lock()

    def run(n: int) -> None:
        try:
            start.wait()
            got = worker(n)
            with lock:
                statuses.update(got)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    pool = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert errors == []
    return statuses


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_concurrent_signups_in_threads_are_each_stored_once(
    backend: str,
    project: Path,
    test_env: dict[str, str],
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {**test_env, "NEWSLETTER_SIGNUP_RATE_LIMIT": "0"}
    pg = pg_schema(request.getfixturevalue("pg_url")) if backend == "postgres" else None
    with pg or contextlib.nullcontext() as url:
        if url:
            env["NEWSLETTER_DATABASE_URL"] = url
        provider = RecordingProvider()
        app = create_app(load_settings(project / "newsletter.toml", env=env), provider=provider)
        store: Store = app.extensions["newsletter"].store

        def worker(n: int) -> list[int]:
            client = app.test_client()
            codes = []
            for i in range(PER_THREAD):
                email = f"t{n}-{i}@example.com"
                codes.append(client.post("/subscribe", data={"email": email}).status_code)
                # every thread also signs up the same address, in mixed case
                shared = "Same@Example.com" if i % 2 else "same@example.com"
                codes.append(client.post("/subscribe", json={"email": shared}).status_code)
            return codes

        with caplog.at_level(logging.ERROR):
            statuses = hammer(worker)
        assert statuses == {200: THREADS * PER_THREAD, 202: THREADS * PER_THREAD}
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert store.count() == THREADS * PER_THREAD + 1
        assert store.find("same@example.com") is not None
        distinct = {m.to_email.lower() for m in provider.sent}
        assert len(distinct) == THREADS * PER_THREAD + 1
        store.close()


def test_two_server_processes_share_one_sqlite_file(
    project: Path, test_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    config = project / "newsletter.toml"
    set_base_url(config, f"http://127.0.0.1:{port}")
    env = {**test_env, "NEWSLETTER_SIGNUP_RATE_LIMIT": "0"}
    log = tmp_path / "serve.log"

    def worker(n: int) -> list[int]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)  # keep-alive
        codes = []
        for i in range(25):
            body = urllib.parse.urlencode({"email": f"p{n}-{i}@example.com", "topics": "updates"})
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            conn.request("POST", "/subscribe", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            codes.append(resp.status)
        conn.close()
        return codes

    settings = load_settings(config, env=env)
    with running_server(config, env, port=port, workers=2, threads=4, log=log):
        statuses = hammer(worker, threads=12)
        mails = wait_for_outbox(settings.outbox_dir, 12 * 25, timeout=60)
    assert statuses == {200: 12 * 25}, log.read_text()
    text = log.read_text()
    assert "database is locked" not in text and "Traceback" not in text
    with Store.from_settings(settings) as store:
        assert store.count() == 12 * 25
        assert store.queued_confirmations() == 0
    assert len({m["To"] for m in mails}) == 12 * 25  # the mailer sent each one, once
