"""Running a send as processes: signals, helper processes, heartbeats and the progress bar.

``commands_send`` decides *what* to send; this module keeps the processes honest while
it goes out:

- Ctrl-C or SIGTERM finishes the batch in flight, records it and stops (a second
  Ctrl-C stops at once; the batch is then recorded ``unknown``), so a resume knows
  exactly where things stand.
- ``--concurrency N`` helpers are started so that they die with this process (a
  parent-death signal and a watch on the parent pid), each as its own run in the
  ledger with a heartbeat; the resume never takes a batch whose holder still lives.
- A main run waits for batches that live processes hold before it reports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from pipeline.errors import PipelineError
from pipeline.processes import die_with_parent, limit_malloc_arenas, watch_parent
from pipeline.send import Sender, Tally, heartbeat

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar

    from subscribers.ledger import Ledger

HEARTBEAT_SECONDS = 5.0
DONE = ("sent", "failed", "skipped", "retry", "unknown")


@dataclass
class RunResult:
    tally: Tally
    elapsed: float
    error: PipelineError | None = None  # the provider refused, or answers were lost
    stopped: bool = False  # Ctrl-C / SIGTERM: stopped after the batch in flight


@contextmanager
def stop_on_signals(
    stop: threading.Event, on_stop: Callable[[], None] = lambda: None
) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` (the send finishes its batch and returns); a second
    SIGINT raises KeyboardInterrupt. Only in the main thread, where Python allows it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        stop.set()
        click.secho(
            "\nstopping after the batch in flight (Ctrl-C again to stop at once)",
            fg="yellow",
            err=True,
        )
        on_stop()

    old = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def run_main(
    sender: Sender,
    ledger: Ledger,
    remaining: int,
    helper_args: list[str] | None,
    helpers: int,
    *,
    wait_for_others: bool,
) -> RunResult:
    """This process's run, with a progress bar, helpers, heartbeat and signals."""
    limit_malloc_arenas()  # before any lane thread starts
    start = time.monotonic()
    result = RunResult(sender.tally, 0.0)
    procs: list[subprocess.Popen[str]] = []

    def stop_helpers() -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    with (
        stop_on_signals(sender.stop, stop_helpers),
        heartbeat(ledger, sender.run_id, HEARTBEAT_SECONDS),
        click.progressbar(
            length=max(remaining, 1),
            label="sending",
            show_eta=True,
            show_pos=True,
            file=sys.stderr,
            item_show_func=lambda _: progress_label(sender, start),
        ) as bar,
    ):
        try:
            if helper_args is None:
                sender.progress = bar.update
                sender.run()
            else:
                sender.run(drain=False)  # in-flight batches first, before any helper claims
                procs = start_helpers(helper_args, helpers)
                _with_helpers(sender, ledger, procs, bar)
            if wait_for_others and not sender.stop.is_set():
                _wait_for_holders(sender, ledger)
        except PipelineError as exc:
            result.error = exc
        finally:
            stop_helpers()
            ledger.finish_run(sender.run_id)
    result.elapsed = time.monotonic() - start
    result.stopped = sender.stop.is_set() and result.error is None
    return result


def run_child(sender: Sender, ledger: Ledger) -> None:
    """A --concurrency helper: drain the campaign until told to stop or orphaned, then
    print the tally as JSON (the last line of stdout) for the parent to merge."""
    limit_malloc_arenas()
    watch = watch_parent(os.getppid(), sender.stop.set)
    try:
        with stop_on_signals(sender.stop), heartbeat(ledger, sender.run_id, HEARTBEAT_SECONDS):
            sender.run(recover=False)
    finally:
        watch.set()
        ledger.finish_run(sender.run_id)
        click.echo(json.dumps(sender.tally.as_dict()))


def start_helpers(args: list[str], n: int) -> list[subprocess.Popen[str]]:
    """``n`` helper processes that get SIGTERM when this process dies, however it dies."""
    return [
        subprocess.Popen(args, stdout=subprocess.PIPE, text=True, preexec_fn=die_with_parent)  # noqa: PLW1509 - only prctl
        for _ in range(n)
    ]


def _with_helpers(
    sender: Sender, ledger: Ledger, procs: list[subprocess.Popen[str]], bar: ProgressBar[Any]
) -> None:
    """Run this process on the same queue as the helpers; merge their tallies."""
    done = threading.Event()
    poller = threading.Thread(target=_follow, args=(ledger, sender.campaign_id, bar, done))
    poller.start()
    try:
        sender.run(recover=False)
    finally:
        outputs = [p.communicate()[0] for p in procs]
        done.set()
        poller.join()
    for proc, out in zip(procs, outputs, strict=True):
        last = out.strip().splitlines()[-1] if out.strip() else "{}"
        sender.tally.merge(json.loads(last) if last.startswith("{") else {})
        if proc.returncode:
            click.secho(f"a sending process stopped (exit {proc.returncode})", fg="red", err=True)


def _wait_for_holders(sender: Sender, ledger: Ledger, poll: float = 0.5) -> None:
    """Wait while live processes (helpers of an earlier run, workers) hold batches of this
    campaign; then take over whatever a dead one left, and settle it."""
    said = False
    while held := ledger.live_holders(sender.campaign_id, exclude=sender.run_id):
        if not said:
            click.echo(f"waiting for {held} recipient(s) in flight with other processes", err=True)
            said = True
        if sender.stop.wait(poll):
            return
    if said:
        sender.run()


def _follow(ledger: Ledger, campaign_id: int, bar: ProgressBar[Any], done: threading.Event) -> None:
    """Move the progress bar by what every process has recorded in the ledger, once a
    second (the count reads the campaign's ledger rows: a million of them on a big list)."""

    def finished() -> int:
        counts = ledger.counts(campaign_id)
        return sum(counts.get(s, 0) for s in DONE)

    base = finished()
    while not done.wait(1.0):
        bar.update(finished() - base - bar.pos)


def progress_label(sender: Sender, start: float) -> str:
    """``4,210 msg/s, 5 in flight, 312 ms`` beside the progress bar."""
    tally = sender.tally
    elapsed = time.monotonic() - start
    done = tally.sent + tally.failed + tally.retry + tally.skipped + tally.unknown
    if not (elapsed > 0 and done):
        return ""
    label = f"{done / elapsed:,.0f} msg/s"
    window = sender.window
    if window.cap > 1:
        label += f", {window.limit} in flight"
    median = window.stats.median_ms()
    return f"{label}, {median:,.0f} ms" if median else label
