"""`newsletter send` as real processes against a Postmark-shaped server on 127.0.0.1:
killed with SIGKILL mid-campaign and run again, and three workers sharing one campaign
on the real PostgreSQL. Every count is taken at the server."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from helpers import pg_schema
from send_helpers import NEWSLETTER, fill, sink_project, start_send, wait_for

from bench.sinks import SinkProcess
from pipeline.settings import load_settings
from subscribers.ledger import Ledger
from subscribers.store import Store


def test_kill_9_mid_campaign_then_resume(project: Path, tmp_path: Path) -> None:
    n, batch = 3000, 100
    db = f"sqlite:///{tmp_path / 'kill.db'}"
    with SinkProcess("postmark") as sink:
        env = sink_project(project, sink.url, db)
        with Store(db) as store:
            fill(store, n)
        proc = start_send(env, "--batch-size", str(batch), "--rate", "3000")
        wait_for(lambda: sink.received()["total"] >= 900)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        at_kill = sink.received()["total"]
        assert at_kill < n, "the send finished before it could be killed"
        again = subprocess.run(
            [*NEWSLETTER, "send", "hip-hinge", "--yes"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert again.returncode == 0, again.stdout + again.stderr
        got = sink.received()
    assert sorted(got["to"]) == sorted(f"Reader {i} <reader{i}@example.com>" for i in range(n))
    assert set(got["to"].values()) == {1}, "the batch in flight was settled by a lookup"
    assert "resuming: " in again.stdout
    with Store(db) as store:
        assert Ledger(store).counts(1) == {"sent": n}


@pytest.mark.postgres
def test_three_workers_share_one_campaign_on_postgresql(project: Path, pg_url: str) -> None:
    n = 3000
    with pg_schema(pg_url) as db, SinkProcess("postmark") as sink:
        env = sink_project(project, sink.url, db)
        settings = load_settings(project / "newsletter.toml", env=env)
        with Store.from_settings(settings) as store:
            fill(store, n)
        workers = [start_send(env, "--worker", "--batch-size", "50") for _ in range(3)]
        outputs = [w.communicate(timeout=180) for w in workers]
        for worker, (out, err) in zip(workers, outputs, strict=True):
            assert worker.returncode == 0, out + err
        got = sink.received()
        with Store.from_settings(settings) as store:
            counts = Ledger(store).counts(1)
    assert got["total"] == n
    assert sorted(got["to"]) == sorted(f"Reader {i} <reader{i}@example.com>" for i in range(n))
    assert set(got["to"].values()) == {1}  # each recipient exactly once, across 3 processes
    sent_by = [int(out.split("this run sent ")[1].split(",")[0]) for out, _ in outputs]
    assert sum(sent_by) == n and min(sent_by) > 0, sent_by  # all three did work
    assert counts == {"sent": n}


def test_throttled_provider_loses_nothing_and_duplicates_nothing(
    project: Path, tmp_path: Path
) -> None:
    n = 1000
    db = f"sqlite:///{tmp_path / 'throttle.db'}"
    with SinkProcess("postmark", "--throttle-every", "3") as sink:
        env = sink_project(project, sink.url, db)
        with Store(db) as store:
            fill(store, n)
        result = subprocess.run(
            [*NEWSLETTER, "send", "hip-hinge", "--yes", "--batch-size", "100"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        got = sink.received()
    assert result.returncode == 0, result.stdout + result.stderr
    assert got["requests"] > n // 100  # some requests were answered 429 and retried
    assert got["total"] == n and set(got["to"].values()) == {1}


def test_concurrency_two_processes_on_sqlite(project: Path, tmp_path: Path) -> None:
    n = 4000
    db = f"sqlite:///{tmp_path / 'two.db'}"
    with SinkProcess("postmark") as sink:
        env = sink_project(project, sink.url, db)
        with Store(db) as store:
            fill(store, n)
        result = subprocess.run(
            [
                *NEWSLETTER,
                "send",
                "hip-hinge",
                "--yes",
                "--concurrency",
                "2",
                "--batch-size",
                "100",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        got = sink.received()
    assert result.returncode == 0, result.stdout + result.stderr
    assert got["total"] == n and set(got["to"].values()) == {1}
    assert f"this run sent {n}, failed 0" in result.stdout  # the helper's share is counted
