"""Send runs: the processes that send a campaign, and whether each is still alive.

Every claim names its run as ``holder``; a batch is taken over only when its holder is
dead: on this host, its process is gone; elsewhere, its heartbeat is older than the
lease. The SQL behind :meth:`Ledger.start_run`, :meth:`Ledger.runs` and the liveness
checks of :meth:`Ledger.recover`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from pipeline.errors import SendError
from pipeline.processes import host_name, process_alive
from subscribers import schema as s

r = s.send_runs
HEARTBEAT = dt.timedelta(seconds=5)  # how often a live run says so
LEASE = dt.timedelta(seconds=30)  # a run silent this long (on another host) is dead


@dataclass(frozen=True)
class Run:
    """One process that sends (or sent) a campaign."""

    id: str
    campaign_id: int
    role: str  # main | helper | worker
    provider: str
    host: str
    pid: int
    proc_start: str
    started_at: dt.datetime
    heartbeat_at: dt.datetime
    finished_at: dt.datetime | None

    def alive(self, now: dt.datetime, lease: dt.timedelta = LEASE) -> bool:
        """Whether this run may still be sending: same host, its process lives; other
        host, it beat within the lease. A finished run is dead."""
        if self.finished_at is not None:
            return False
        if self.host == host_name():
            return process_alive(self.pid, self.proc_start)
        return now - self.heartbeat_at < lease


def run_from_row(row: sa.Row) -> Run:
    return Run(
        row.id,
        row.campaign_id,
        row.role,
        row.provider,
        row.host,
        row.pid,
        row.proc_start,
        row.started_at,
        row.heartbeat_at,
        row.finished_at,
    )


def runs_by_id(conn: sa.Connection, ids: set[str]) -> dict[str, Run]:
    if not ids:
        return {}
    return {row.id: run_from_row(row) for row in conn.execute(sa.select(r).where(r.c.id.in_(ids)))}


def live_runs(conn: sa.Connection, campaign_id: int, now: dt.datetime) -> list[Run]:
    """The campaign's unfinished runs that are still alive."""
    query = sa.select(r).where(r.c.campaign_id == campaign_id, r.c.finished_at.is_(None))
    return [run for run in map(run_from_row, conn.execute(query)) if run.alive(now)]


def already_sending(run: Run, now: dt.datetime) -> SendError:
    """The error for a second main run while ``run`` sends the campaign."""
    since = int((now - run.started_at).total_seconds())
    return SendError(
        f"this campaign is already being sent by process {run.pid} on {run.host} "
        f"(started {since}s ago)",
        hint="wait for it to finish (or stop it with Ctrl-C) and run the same command "
        "again; to share a campaign between processes use --concurrency N, or --worker "
        "on PostgreSQL",
    )
