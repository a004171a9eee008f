"""`newsletter send` as real processes under signals: SIGKILL of a --concurrency parent
(its helpers must not outlive it, and the resume must not take batches they still hold),
Ctrl-C and SIGTERM (finish the batch in flight, print the resume command), and a second
plain send of the same campaign (refused). Every count is taken at the server."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from send_helpers import fill, readers, run_send, sink_project, start_send, wait_for

from bench.sinks import SinkProcess
from subscribers.ledger import Ledger
from subscribers.store import Store


def children_of(pid: int) -> set[int]:
    """Live processes whose parent is ``pid`` (read from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 1 and int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return False
    return fields[0] != "Z"


def test_sigkill_of_a_concurrency_parent_leaves_no_helper_and_nobody_twice(
    project: Path, tmp_path: Path
) -> None:
    n = 6000
    db = f"sqlite:///{tmp_path / 'kill.db'}"
    args = ("--concurrency", "3", "--batch-size", "50", "--rate", "1500")
    with SinkProcess("postmark") as sink:
        env = sink_project(project, sink.url, db)
        with Store(db) as store:
            fill(store, n)
        helpers_seen: list[int] = []
        for kill in range(3):
            # Killed 700 messages into each run: each parent still has work (and helpers)
            # left however slow the machine is.
            threshold = sink.received(addresses=False)["total"] + 700
            proc = start_send(env, *args)
            wait_for(lambda t=threshold: sink.received(addresses=False)["total"] >= t)
            helpers = children_of(proc.pid)
            helpers_seen.append(len(helpers))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            if kill != 1:  # no helper outlives its parent for long (it ends its batch)
                wait_for(lambda h=helpers: not any(alive(p) for p in h), timeout=15)
            # kill == 1: resume at once, while the helpers still hold their batches
        assert helpers_seen == [2, 2, 2]  # two helpers under each of the three parents
        final = run_send(env, *args)
        got = sink.received()
    assert final.returncode == 0, final.stdout + final.stderr
    assert sorted(got["to"]) == readers(n)
    assert set(got["to"].values()) == {1}, "somebody was mailed twice"
    with Store(db) as store:
        assert Ledger(store).counts(1) == {"sent": n}


def test_sigterm_and_ctrl_c_finish_the_batch_and_print_the_resume_command(
    project: Path, tmp_path: Path
) -> None:
    n = 3000
    db = f"sqlite:///{tmp_path / 'term.db'}"
    with SinkProcess("postmark") as sink:
        env = sink_project(project, sink.url, db)
        with Store(db) as store:
            fill(store, n)
        for sig, threshold in ((signal.SIGTERM, 500), (signal.SIGINT, 1500)):
            proc = start_send(env, "--batch-size", "100", "--rate", "1000")
            wait_for(lambda t=threshold: sink.received()["total"] >= t)
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 1, out + err
            assert "stopping after the batch in flight" in err
            assert "resume with: newsletter send hip-hinge --topic updates" in err
            with Store(db) as store:
                counts = Ledger(store).counts(1)
            assert "inflight" not in counts and "unknown" not in counts  # nothing in doubt
            assert counts["sent"] == sink.received()["total"] < n
        final = run_send(env)
        got = sink.received()
    assert final.returncode == 0, final.stdout + final.stderr
    assert sorted(got["to"]) == readers(n) and set(got["to"].values()) == {1}


def test_a_second_plain_send_of_the_same_campaign_is_refused(project: Path, tmp_path: Path) -> None:
    n = 2000
    db = f"sqlite:///{tmp_path / 'twice.db'}"
    with SinkProcess("postmark") as sink:
        env = sink_project(project, sink.url, db)
        with Store(db) as store:
            fill(store, n)
        first = start_send(env, "--batch-size", "50", "--rate", "500")
        wait_for(lambda: sink.received()["total"] >= 100)
        second = run_send(env)
        assert second.returncode == 1
        assert f"already being sent by process {first.pid}" in second.stderr
        out, err = first.communicate(timeout=60)
        got = sink.received()
    assert first.returncode == 0, out + err
    assert sorted(got["to"]) == readers(n) and set(got["to"].values()) == {1}


def test_helpers_stop_when_the_parent_vanishes_without_a_signal(tmp_path: Path) -> None:
    """The parent-pid watch, for when PR_SET_PDEATHSIG is not there: a helper started
    without it still stops once its parent is gone."""
    script = tmp_path / "orphan.py"
    script.write_text(
        "import os, sys, threading, time\n"
        "from pipeline.processes import watch_parent\n"
        "stop = threading.Event()\n"
        "watch_parent(os.getppid(), stop.set, every=0.05)\n"
        "print('ready', flush=True)\n"
        "sys.exit(0 if stop.wait(20) else 3)\n"
    )
    parent = subprocess.Popen(
        ["sh", "-c", f"{sys.executable} {script} & echo $!; wait"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert parent.stdout.readline().strip() == "ready"
    parent.send_signal(signal.SIGKILL)
    parent.wait(5)
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)
