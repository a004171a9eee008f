"""The mailer: sends queued confirmation emails, beside the web workers of `newsletter serve`,
and runs ``newsletter due`` every minute (sequence steps, scheduled campaigns), so a
running site needs no cron job.

A signup only writes its row and a queue entry (one short transaction) and answers; this
process drains the queue in provider-sized batches. That keeps a slow or failing email
API out of the request path (a failed batch is retried with backoff), and on a small
machine the workers get the CPU first: the mailer runs at a lower priority (nice).
Queue entries are leased, so nothing is lost when the mailer is killed mid-batch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable

from pipeline.settings import Settings
from subscribers.confirmation import ConfirmationSender, Links
from subscribers.store import Store

log = logging.getLogger("newsletter.mailer")
IDLE_SLEEP = 0.2  # seconds between looks at an empty queue
ERROR_SLEEP = 5.0
NICENESS = 19  # the lowest priority: signups first, emails with the spare CPU
DUE_EVERY = 60.0  # seconds between runs of `newsletter due`


def run_mailer(settings: Settings, *, should_stop: Callable[[], bool]) -> None:
    """Drain the confirmation queue until ``should_stop()``; never raises for a bad batch."""
    with Store.from_settings(settings) as store:
        sender = ConfirmationSender(settings, store, Links(settings, settings.secret_key()))
        next_due = time.monotonic()
        try:
            while not should_stop():
                if time.monotonic() >= next_due:
                    _run_due(settings, store)
                    next_due = time.monotonic() + DUE_EVERY
                time.sleep(_one_round(sender))
        finally:
            sender.close()


def _run_due(settings: Settings, store: Store) -> None:
    """``newsletter due``, logged; a failure is retried at the next minute."""
    import datetime as dt

    from pipeline.due import run_due

    try:
        report = run_due(settings, store, now=dt.datetime.now(dt.UTC), echo=log.info)
    except Exception:  # noqa: BLE001 - the database or provider may be away; keep going
        log.exception("mailer: newsletter due failed")
        return
    for problem in report.problems:
        log.warning("mailer: due: %s", problem)


def _one_round(sender: ConfirmationSender) -> float:
    """Send one batch; how long to sleep before the next."""
    try:
        result = sender.drain()
    except Exception:  # noqa: BLE001 - the database may be away; keep the mailer alive
        log.exception("mailer: could not drain the confirmation queue")
        return ERROR_SLEEP
    if result.errors:
        log.warning("mailer: %d not sent: %s", len(result.errors), result.errors[0])
    return 0.0 if result.claimed else IDLE_SLEEP


def start_mailer(settings: Settings) -> int:
    """Fork the mailer (before gunicorn starts any thread); returns its pid.

    A bare fork rather than multiprocessing: gunicorn's workers are forks of the same
    master, and must not inherit a multiprocessing child registry to join at exit.
    """
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child never returns into the caller's stack
        code = 0
        try:
            _child(settings, parent)
        except BaseException:  # noqa: BLE001 - report, then leave without unwinding
            log.exception("mailer stopped")
            code = 1
        finally:
            os._exit(code)
    return pid


def stop_mailer(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM (the mailer finishes its batch), then SIGKILL after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # already reaped (gunicorn reaps every child)
            return
        if done:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _child(settings: Settings, parent: int) -> None:
    stopping = {"now": False}

    def stop(*_: object) -> None:
        stopping["now"] = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the master, which stops us
    os.nice(NICENESS)
    logging.basicConfig(level=logging.INFO, format="[mailer] %(levelname)s %(message)s")
    run_mailer(settings, should_stop=lambda: stopping["now"] or os.getppid() != parent)
