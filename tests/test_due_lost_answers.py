"""A welcome-sequence step goes through the same ledger as a campaign: against a real
Postmark-shaped server process that accepts a batch and then loses the answer (reset
after reading the request, a 504 from a gateway), `due` looks the batch up and mails
every new reader the step exactly once. Counted at the server."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import Clock
from send_helpers import fill, readers, sink_project

from bench.sinks import SinkProcess
from subscribers.store import Store

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
N = 1200  # three batches of 500: the second loses its answer


def due(env: dict[str, str], when: dt.datetime) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "due", "--now", when.isoformat()],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("fault", ["reset", "504"])
def test_a_lost_answer_during_due_mails_each_reader_the_step_once(
    project: Path, tmp_path: Path, fault: str
) -> None:
    db = f"sqlite:///{tmp_path / 'due.db'}"
    args = ("--fault", fault, "--fault-every", "2", "--fault-limit", "1")
    with SinkProcess("postmark", *args) as sink:
        env = sink_project(project, sink.url, db, timeout=1.0)
        started = due(env, T0)  # the welcome sequence starts; nobody is due yet
        assert started.returncode == 0, started.stdout + started.stderr
        with Store(db, clock=Clock(T0 + dt.timedelta(minutes=1))) as store:
            fill(store, N)
        result = due(env, T0 + dt.timedelta(minutes=2))
        got = sink.received()
    assert result.returncode == 0, result.stdout + result.stderr
    assert got["faults"] == 1 and got["lookups"] >= 1
    assert sorted(got["to"]) == readers(N) and set(got["to"].values()) == {1}
