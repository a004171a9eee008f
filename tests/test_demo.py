"""`make demo` from a fresh project folder: signups through the form, send, outbox."""

from __future__ import annotations

import email
import email.policy
import mailbox
import subprocess
import sys
from pathlib import Path


def test_demo_tells_the_whole_story(project: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.demo"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "HTTP 500" not in result.stdout and "Traceback" not in result.stderr
    outbox = project / "var" / "demo" / "outbox"
    mails = [
        email.message_from_bytes(m.as_bytes(), policy=email.policy.default)
        for m in mailbox.Maildir(outbox, create=False)
    ]
    subjects = sorted(m["Subject"] for m in mails)
    assert len([s for s in subjects if "Confirm your subscription" in s]) == 4
    assert len([s for s in subjects if "hip hinge" in s]) == 3
    assert f"messages are in the outbox Maildir {outbox}" in result.stdout
    assert "this run sent 3, failed 0" in result.stdout
    archive = project / "var" / "demo" / "archive"
    assert f"archive: 1 issue in {archive}" in result.stdout
    assert "Master the Hip Hinge" in (archive / "hip-hinge" / "index.html").read_text()
    again = subprocess.run(
        [sys.executable, "-m", "pipeline.demo"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0 and "this run sent 3" in again.stdout  # starts afresh
