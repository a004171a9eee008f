"""`newsletter due` as a real process: 10,000 readers who just confirmed enter the welcome
sequence, and its first step goes to a Postmark-shaped server (its own process) through
the ledger. Messages/s of the whole command (start-up, registering the sequence, adding
the due readers to the step's queue, sending), with the machine's load beside it."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time

from bench import Row
from bench.bench_send import project
from bench.sinks import SinkProcess
from pipeline.settings import load_settings
from subscribers.models import Consent, NewSubscriber
from subscribers.store import Store

CONSENT = Consent(kind="import", source="benchmark", wording="benchmark readers")
N = 10_000


def run() -> list[Row]:
    with SinkProcess("postmark", "--count-only") as sink:
        root = project(f'name = "postmark"\napi_base_url = "{sink.url}"')
        env = {
            **os.environ,
            "POSTMARK_SERVER_TOKEN": "bench",
            "NEWSLETTER_SECRET_KEY": "bench",
            "NEWSLETTER_BASE_URL": "https://news.example.com",  # a real provider's guard
            "NEWSLETTER_CONFIG": str(root / "newsletter.toml"),
        }
        start_at = dt.datetime.now(dt.UTC)
        cmd = [sys.executable, "-m", "pipeline", "due", "--now"]
        subprocess.run([*cmd, start_at.isoformat()], env=env, check=True, capture_output=True)
        settings = load_settings(root / "newsletter.toml", env=env)
        with Store.from_settings(settings) as store:
            for first in range(0, N, 2000):
                rows = [
                    NewSubscriber(f"reader{i}@example.com", f"Reader {i}", ("updates",))
                    for i in range(first, min(N, first + 2000))
                ]
                store.add_many(rows, confirmed=True, consent=CONSENT)
        when = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)).isoformat()
        began = time.perf_counter()
        done = subprocess.run([*cmd, when], env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - began
        assert done.returncode == 0, done.stdout + done.stderr
        assert sink.received()["total"] == N, "the server did not get every message"
    shutil.rmtree(root, ignore_errors=True)
    return [
        Row(
            "due",
            "10k readers enter a sequence, step 1",
            N / elapsed,
            "msg/s",
            ">= 5000",
            "whole command, Postmark sink",
        )
    ]
