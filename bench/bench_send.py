"""End to end: `newsletter send` as a real process, ledger included, start-up to exit.

Every send row is the whole command (start-up, compile, audience snapshot, sending,
summary) with the send loop's own figure (the summary's "in N s") beside it; each
sink runs in its own process and its CPU time is noted, to show it was not the limit.

- 100k readers on SQLite to a Postmark-shaped API (parses every batch, answers each
  recipient) answering at once, after 100 ms and after 300 ms per batch (default
  settings): the 300 ms rate against the 0 ms rate.
- 100k readers on PostgreSQL (the real server on 127.0.0.1; a fresh schema per row,
  dropped after) against SQLite, and ``--worker`` x1 / x2 on PostgreSQL.
- 1,000,000 readers on SQLite: msg/s and the sender's peak RSS (flat in list size).
- SMTP to a minimal asyncio sink: the project's send loop and a bare smtplib loop
  sending the same bytes, in alternating rounds.

Sizes are chosen so the whole of ``make bench`` stays within about 15 minutes on 2
cores; each list is written once straight into the store's tables (bench/lists.py) and
copied for each row.
"""

from __future__ import annotations

import os
import re
import shutil
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench import Row, postgres
from bench.lists import postgres_copy, postgres_list, sqlite_copy, sqlite_list
from bench.sinks import SinkProcess
from pipeline.content import find_module, load_module
from pipeline.message import to_bytes
from pipeline.render import Recipient, compile_campaign
from pipeline.settings import load_settings

REPO = Path(__file__).resolve().parent.parent
N = 100_000
SMALL = 10_000
BIG = 1_000_000
LATENCIES_MS = (0, 100, 300)
SMTP_ROUNDS, SMTP_PER_ROUND = 3, 3000
SECRETS = {
    "POSTMARK_SERVER_TOKEN": "bench",
    "NEWSLETTER_SECRET_KEY": "bench",
    "NEWSLETTER_BASE_URL": "https://news.example.com",  # a real send needs https links
}


@dataclass(frozen=True)
class Sent:
    """One `newsletter send` (or several workers together), timed from outside."""

    n: int
    seconds: float  # start-up to exit
    loop_seconds: float  # the send loop, as the summary reports it
    rss_mb: float  # the sender's peak RSS
    sink_cpu: float = 0.0  # CPU seconds the sink used meanwhile

    @property
    def rate(self) -> float:
        return self.n / self.seconds

    @property
    def loop_rate(self) -> float:
        return self.n / max(self.loop_seconds, 1e-9)

    def note(self, extra: str = "") -> str:
        sink = f"; sink busy {self.sink_cpu / self.seconds:.0%}" if self.sink_cpu else ""
        return f"whole command; send loop {self.loop_rate:,.0f}/s{sink}{extra}"


def project(provider_lines: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix="nl-bench-"))
    shutil.copytree(REPO / "content", root / "content")
    shutil.copytree(REPO / "templates", root / "templates")
    cfg = (REPO / "newsletter.toml").read_text().replace('name = "outbox"', provider_lines)
    (root / "newsletter.toml").write_text(cfg)
    return root


def timed_send(root: Path, env: dict[str, str], *extra: str) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, output) of one `newsletter send --yes` process."""
    (done,) = timed_sends(root, env, 1, *extra)
    return done


def timed_sends(
    root: Path, env: dict[str, str], processes: int, *extra: str
) -> list[tuple[float, float, str]]:
    """``processes`` `newsletter send --yes` started together: (seconds, peak RSS in MB,
    output) of each.

    Peak RSS is each process's own VmHWM, read from /proc while it runs: rusage's
    ru_maxrss would also count the pages of this (large) bench process the child
    shared between fork and exec.
    """
    cmd = [sys.executable, "-m", "pipeline", "--config", str(root / "newsletter.toml")]
    cmd += ["send", "hip-hinge", "--yes", *extra]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            cmd,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(processes)
    ]
    peaks = [[0.0] for _ in procs]
    watchers = [
        threading.Thread(target=_watch_peak, args=(p.pid, peak), daemon=True)
        for p, peak in zip(procs, peaks, strict=True)
    ]
    for watcher in watchers:
        watcher.start()
    done = []
    for proc, peak, watcher in zip(procs, peaks, watchers, strict=True):
        out, _ = proc.communicate()
        elapsed = time.perf_counter() - start
        watcher.join(1)
        if proc.returncode != 0:
            raise RuntimeError(f"send failed: {out[-500:]}")
        done.append((elapsed, peak[0], out))
    return done


def _watch_peak(pid: int, peak: list[float]) -> None:
    """Keep the last VmHWM (kB, a high-water mark) of ``pid`` until it exits."""
    status = Path(f"/proc/{pid}/status")
    while True:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak[0] = max(peak[0], int(line.split()[1]) / 1024)
        except (OSError, ValueError):
            return
        time.sleep(0.05)


def loop_seconds(out: str) -> float:
    found = re.search(r"suppressed \d+, in ([\d.]+)(s| min)", out)
    return float(found.group(1)) * (60 if found and found.group(2) == " min" else 1) if found else 0


# ---- the rows ------------------------------------------------------------------------


def postmark(db_url: str, n: int, *extra: str, latency_ms: int = 0, processes: int = 1) -> Sent:
    """Send to ``n`` readers of ``db_url`` through a Postmark-shaped sink."""
    args = ["--count-only", "--latency", str(latency_ms)]
    with SinkProcess("postmark", *args) as sink:
        root = project(f'name = "postmark"\napi_base_url = "{sink.url}"')
        env = {**SECRETS, "NEWSLETTER_DATABASE_URL": db_url}
        cpu = sink.cpu_seconds()
        runs = timed_sends(root, env, processes, *extra)
        cpu = sink.cpu_seconds() - cpu
        got = sink.received(addresses=False)
        assert got["total"] == n and got["most_to_one"] == 1, f"the sink got {got}"
    shutil.rmtree(root, ignore_errors=True)
    seconds = max(r[0] for r in runs)
    loop = max(loop_seconds(r[2]) for r in runs)
    return Sent(n, seconds, loop, max(r[1] for r in runs), cpu)


def sqlite_postmark(template: Path, n: int, **kwargs: int) -> Sent:
    root = Path(tempfile.mkdtemp(prefix="nl-bench-db-"))
    try:
        return postmark(sqlite_copy(template, root), n, **kwargs)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def latency_rows(template: Path) -> tuple[list[Row], Sent]:
    sent = {ms: sqlite_postmark(template, N, latency_ms=ms) for ms in LATENCIES_MS}
    rows = [
        Row(
            "send",
            f"{N:,} readers, API answers in {ms} ms",
            s.rate,
            "msg/s",
            ">= 10000" if ms == 0 else "",
            s.note(", SQLite, default settings"),
        )
        for ms, s in sent.items()
    ]
    slowest = LATENCIES_MS[-1]
    rows.append(
        Row(
            "send",
            f"{slowest} ms per batch vs 0 ms, {N:,} readers",
            sent[slowest].rate / sent[0].rate,
            "x",
            ">= 0.70",
            "whole command; the API's latency hidden by batches in flight",
        )
    )
    return rows, sent[0]


def postgres_rows(sqlite: Sent) -> list[Row]:
    if not postgres.reachable():
        return [Row("send", f"{N:,} readers, PostgreSQL", 0, "msg/s", "", "not reachable")]
    rows = []
    with postgres_list(N) as template:
        with postgres_copy(template) as url:
            pg = postmark(url, N)
        with postgres_copy(template) as url:
            one = postmark(url, N, "--worker")
        with postgres_copy(template) as url:
            two = postmark(url, N, "--worker", processes=2)
    rows.append(Row("send", f"{N:,} readers, PostgreSQL", pg.rate, "msg/s", "", pg.note()))
    rows.append(
        Row(
            "send",
            f"PostgreSQL vs SQLite, {N:,} readers",
            pg.rate / sqlite.rate,
            "x",
            ">= 0.70",
            f"whole command, {pg.rate:,.0f} vs {sqlite.rate:,.0f} msg/s",
        )
    )
    for k, s in ((1, one), (2, two)):
        rows.append(
            Row("send", f"{N:,} readers, PostgreSQL, --worker x{k}", s.rate, "msg/s", "", s.note())
        )
    return rows


def size_rows() -> list[Row]:
    with sqlite_list(SMALL) as template:
        small = sqlite_postmark(template, SMALL)
    with sqlite_list(BIG) as template:
        big = sqlite_postmark(template, BIG)
    return [
        Row("send", f"{BIG:,} readers, SQLite", big.rate, "msg/s", "", big.note()),
        Row("send", f"peak RSS, {SMALL:,} readers", small.rss_mb, "MB", "<= 150"),
        Row(
            "send",
            f"peak RSS, {BIG:,} readers",
            big.rss_mb,
            "MB",
            "<= 150",
            f"{big.rss_mb - small.rss_mb:+.1f} MB vs {SMALL:,}",
        ),
    ]


def smtp(per_round: int, rounds: int) -> tuple[float, float, float]:
    """(project send-loop msg/s, bare smtplib msg/s, project whole-command msg/s) to a
    fast SMTP sink, in alternating rounds of ``per_round`` messages of the same bytes."""
    with SinkProcess("smtp-fast") as sink, sqlite_list(per_round) as template:
        root = project('name = "smtp"')
        env = {**SECRETS, "SMTP_URL": f"smtp://127.0.0.1:{sink.smtp_port}"}
        settings = load_settings(root / "newsletter.toml", env=env)
        wire = _same_bytes(settings, per_round)
        project_loop = bare = whole = 0.0
        for _ in range(rounds):
            db = Path(tempfile.mkdtemp(prefix="nl-bench-db-"))
            elapsed, _, out = timed_send(
                root, {**env, "NEWSLETTER_DATABASE_URL": sqlite_copy(template, db)}
            )
            shutil.rmtree(db, ignore_errors=True)
            project_loop += loop_seconds(out)
            whole += elapsed
            bare += _bare_smtplib(sink.smtp_port, settings.from_email, wire)
        assert sink.received()["total"] == 2 * rounds * per_round
    shutil.rmtree(root, ignore_errors=True)
    n = rounds * per_round
    return n / max(project_loop, 1e-9), n / bare, n / whole


def _same_bytes(settings: object, n: int) -> list[tuple[str, bytes]]:
    """The messages the project sends, personalised for readers like those in the list."""
    compiled = compile_campaign(
        load_module(find_module(settings, "hip-hinge"), settings),  # type: ignore[arg-type]
        settings,  # type: ignore[arg-type]
    )
    return [
        (
            f"bare{i}@example.com",
            to_bytes(
                compiled.personalize(Recipient(i, f"bare{i}@example.com", f"Reader {i}", "t"))
            ),
        )
        for i in range(n)
    ]


def _bare_smtplib(port: int, sender: str, wire: list[tuple[str, bytes]]) -> float:
    """Seconds for a bare smtplib loop: one connection, sendmail per message."""
    start = time.perf_counter()
    client = smtplib.SMTP("127.0.0.1", port)
    for to, data in wire:
        client.sendmail(sender, [to], data)
    client.quit()
    return time.perf_counter() - start


def smtp_rows() -> list[Row]:
    loop, bare, whole = smtp(SMTP_PER_ROUND, SMTP_ROUNDS)
    return [
        Row(
            "send",
            "smtp send loop vs bare smtplib",
            loop / bare,
            "x",
            ">= 0.90",
            f"{loop:,.0f} vs {bare:,.0f} msg/s (whole command {whole:,.0f}/s), fast asyncio "
            f"sink, {SMTP_ROUNDS} alternating rounds of {SMTP_PER_ROUND:,}",
        )
    ]


def run() -> list[Row]:
    with sqlite_list(N) as template:
        rows, at_once = latency_rows(template)
    return rows + postgres_rows(at_once) + size_rows() + smtp_rows()
