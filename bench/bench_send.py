"""End to end: `newsletter send` as a real process, ledger included.

- 10k and 100k subscribers to a Postmark-shaped server on 127.0.0.1 (its own process):
  messages/s for the whole command and peak RSS of the sender (flat with list size).
- SMTP to a local aiosmtpd sink, against a bare smtplib loop sending the same bytes.
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
from pathlib import Path

from bench import Row
from bench.sinks import SinkProcess
from pipeline.content import find_module, load_module
from pipeline.message import to_bytes
from pipeline.render import Recipient, compile_campaign
from pipeline.settings import load_settings
from subscribers.store import Consent, NewSubscriber, Store

REPO = Path(__file__).resolve().parent.parent
CONSENT = Consent(kind="import", source="benchmark", wording="benchmark readers")


def project(provider_lines: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix="nl-bench-"))
    shutil.copytree(REPO / "content", root / "content")
    shutil.copytree(REPO / "templates", root / "templates")
    cfg = (REPO / "newsletter.toml").read_text().replace('name = "outbox"', provider_lines)
    (root / "newsletter.toml").write_text(cfg)
    return root


def fill(root: Path, n: int, env: dict[str, str]) -> None:
    settings = load_settings(root / "newsletter.toml", env=env)
    with Store.from_settings(settings) as store:
        for start in range(0, n, 2000):
            rows = [
                NewSubscriber(f"reader{i}@example.com", f"Reader {i}", ("updates",))
                for i in range(start, min(n, start + 2000))
            ]
            store.add_many(rows, confirmed=True, consent=CONSENT)


def timed_send(root: Path, env: dict[str, str], *extra: str) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, output) of one `newsletter send --yes` process.

    Peak RSS is the process's own VmHWM, read from /proc while it runs: rusage's
    ru_maxrss would also count the pages of this (large) bench process the child
    shared between fork and exec.
    """
    cmd = [sys.executable, "-m", "pipeline", "--config", str(root / "newsletter.toml")]
    cmd += ["send", "hip-hinge", "--yes", *extra]
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    peak = [0.0]
    watcher = threading.Thread(target=_watch_peak, args=(proc.pid, peak), daemon=True)
    watcher.start()
    out, _ = proc.communicate()
    elapsed = time.perf_counter() - start
    watcher.join(1)
    if proc.returncode != 0:
        raise RuntimeError(f"send failed: {out[-500:]}")
    return elapsed, peak[0], out


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


def postmark(n: int, processes: int = 1) -> tuple[float, float, float]:
    """(whole-command msg/s, send-loop msg/s, peak RSS MB of the main process)."""
    with SinkProcess("postmark", "--count-only") as sink:
        root = project(f'name = "postmark"\napi_base_url = "{sink.url}"')
        env = {
            "POSTMARK_SERVER_TOKEN": "bench",
            "NEWSLETTER_SECRET_KEY": "bench",
            "NEWSLETTER_BASE_URL": "https://news.example.com",  # a real send needs https links
        }
        fill(root, n, env)
        elapsed, rss, out = timed_send(root, env, "--concurrency", str(processes))
        assert sink.received()["total"] == n, "the server did not get every message"
    shutil.rmtree(root, ignore_errors=True)
    return n / elapsed, n / max(loop_seconds(out), 1e-9), rss


def smtp(n: int) -> tuple[float, float]:
    """(pipeline msg/s, bare smtplib msg/s) to the same local sink."""
    with SinkProcess("smtp") as sink:
        url = f"smtp://127.0.0.1:{sink.smtp_port}"
        root = project('name = "smtp"')
        env = {
            "SMTP_URL": url,
            "NEWSLETTER_SECRET_KEY": "bench",
            "NEWSLETTER_BASE_URL": "https://news.example.com",
        }
        fill(root, n, env)
        settings = load_settings(root / "newsletter.toml", env=env)
        compiled = compile_campaign(
            load_module(find_module(settings, "hip-hinge"), settings), settings
        )
        wire = [
            to_bytes(compiled.personalize(Recipient(i, f"bare{i}@example.com", "Bare", "t")))
            for i in range(n)
        ]
        client = smtplib.SMTP("127.0.0.1", sink.smtp_port)
        start = time.perf_counter()
        for i, data in enumerate(wire):
            client.sendmail(settings.from_email, [f"bare{i}@example.com"], data)
        bare = n / (time.perf_counter() - start)
        client.quit()
        elapsed, _, out = timed_send(root, env)
        assert sink.received()["total"] == 2 * n
    shutil.rmtree(root, ignore_errors=True)
    return n / max(loop_seconds(out), 1e-9), bare


def run() -> list[Row]:
    rate_10k, loop_10k, rss_10k = postmark(10_000)
    rate_100k, loop_100k, rss_100k = postmark(100_000)
    rate_2p, _, _ = postmark(100_000, processes=2)
    pipe, bare = smtp(3000)
    return [
        Row(
            "send",
            "postmark e2e, 100k, 1 process",
            rate_100k,
            "msg/s",
            ">= 10000",
            f"whole command; send loop alone {loop_100k:,.0f}/s",
        ),
        Row(
            "send",
            "postmark e2e, 10k, 1 process",
            rate_10k,
            "msg/s",
            "",
            f"whole command; send loop alone {loop_10k:,.0f}/s",
        ),
        Row(
            "send",
            "postmark e2e, 100k, --concurrency 2",
            rate_2p,
            "msg/s",
            "",
            "whole command, 2 processes on 2 cores",
        ),
        Row("send", "peak RSS, 10k subscribers", rss_10k, "MB", "<= 150"),
        Row(
            "send",
            "peak RSS, 100k subscribers",
            rss_100k,
            "MB",
            "<= 150",
            f"{rss_100k - rss_10k:+.1f} MB vs 10k",
        ),
        Row(
            "send",
            "smtp pipeline vs bare smtplib",
            100 * pipe / bare,
            "%",
            ">= 90",
            f"{pipe:,.0f} vs {bare:,.0f} msg/s, 3k messages, aiosmtpd sink",
        ),
    ]
