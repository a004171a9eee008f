"""Welcome sequences and scheduled sends, with a controlled clock (``--now``), on SQLite and
PostgreSQL, through the CLI and the outbox: each step reaches each confirmed reader once,
at its delay and not before; unsubscribing stops it; `due` twice or in two processes at
once sends nothing twice; a scheduled campaign goes out only when due."""

from __future__ import annotations

import datetime as dt
import mailbox
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import Clock
from send_helpers import fill

from pipeline.cli import cli
from pipeline.settings import Settings, load_settings
from subscribers.ledger import Ledger
from subscribers.store import Store

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
WELCOME = "Welcome to Hinge Strength: start with your hips"
MISTAKES = "Three hinge mistakes I see every week"


@pytest.fixture
def env(project: Path, test_env: dict[str, str], db_url: str) -> dict[str, str]:
    return {
        **test_env,
        "NEWSLETTER_CONFIG": str(project / "newsletter.toml"),
        "NEWSLETTER_DATABASE_URL": db_url,
    }


@pytest.fixture
def cfg(env: dict[str, str]) -> Settings:
    return load_settings(Path(env["NEWSLETTER_CONFIG"]), env=env)


def run(env: dict[str, str], *args: str):  # noqa: ANN201
    result = CliRunner().invoke(cli, list(args), env=env)
    return result


def due(env: dict[str, str], when: dt.datetime, *more: str):  # noqa: ANN201
    result = run(env, "due", "--now", when.isoformat(), *more)
    assert result.exit_code == 0, result.output
    return result


def readers_at(cfg: Settings, when: dt.datetime, n: int, start: int = 0, **kw) -> list[int]:
    """``n`` readers who confirm at ``when``."""
    with Store.from_settings(cfg, clock=Clock(when)) as store:
        return fill(store, n, start=start, **kw)


def mail(cfg: Settings) -> Counter[tuple[str, str]]:
    """(address, subject) -> how many times, read from the outbox."""
    if not cfg.outbox_dir.exists():
        return Counter()
    box = mailbox.Maildir(cfg.outbox_dir, create=False)
    return Counter((m["To"].addresses[0].addr_spec, str(m["Subject"])) for m in _parsed(box))


def _parsed(box: mailbox.Maildir) -> list:
    from email import message_from_bytes, policy

    return [message_from_bytes(box.get_bytes(k), policy=policy.default) for k in box.iterkeys()]


def test_each_step_reaches_each_reader_once_at_its_delay(env, cfg) -> None:
    due(env, T0)  # the sequence starts: readers who confirm from now on are in
    readers_at(cfg, T0 - dt.timedelta(days=1), 2, start=100)  # before it started: not in
    joined = T0 + dt.timedelta(hours=1)
    readers_at(cfg, joined, 3)

    first = due(env, joined)
    assert "welcome/welcome: 3 newly due, sent 3" in first.output
    assert mail(cfg) == Counter({(f"reader{i}@example.com", WELCOME): 1 for i in range(3)})

    due(env, joined + dt.timedelta(minutes=5))  # again: nothing twice
    due(env, joined + dt.timedelta(days=3) - dt.timedelta(minutes=1))  # not before its delay
    assert sum(mail(cfg).values()) == 3

    with Store.from_settings(cfg) as store:  # reader 2 leaves: no further step
        store.unsubscribe(store.find("reader2@example.com").id, source="test")
    third = due(env, joined + dt.timedelta(days=3))
    assert "welcome/three-mistakes: 2 newly due, sent 2" in third.output
    got = mail(cfg)
    assert got == Counter(
        {
            **{(f"reader{i}@example.com", WELCOME): 1 for i in range(3)},
            **{(f"reader{i}@example.com", MISTAKES): 1 for i in range(2)},
        }
    )
    listing = run(env, "sequences")
    assert "welcome: 2 step(s)" in listing.output and "2 reader(s) in" in listing.output
    assert "welcome/welcome" in listing.output and "sent 3" in listing.output
    report = run(env, "report", "welcome/three-mistakes")
    assert report.exit_code == 0 and "sent 2" in report.output


def test_existing_readers_join_on_purpose_and_get_the_steps_from_then(env, cfg) -> None:
    readers_at(cfg, T0 - dt.timedelta(days=30), 2)
    assert run(env, "due", "--now", T0.isoformat()).exit_code == 0
    assert sum(mail(cfg).values()) == 0  # they were there before the sequence
    enrolled = run(env, "sequences", "enroll", "welcome", "--existing", "--now", T0.isoformat())
    assert enrolled.exit_code == 0 and "2 reader(s) enrolled" in enrolled.output
    due(env, T0 + dt.timedelta(minutes=1))
    assert {s for _, s in mail(cfg)} == {WELCOME}
    due(env, T0 + dt.timedelta(days=3))
    assert sorted(mail(cfg).values()) == [1, 1, 1, 1]


def test_a_step_added_later_reaches_only_readers_not_yet_past_its_delay(
    env, cfg, project: Path
) -> None:
    due(env, T0)
    readers_at(cfg, T0 + dt.timedelta(hours=1), 1, start=0)  # joined early
    due(env, T0 + dt.timedelta(days=5))  # both steps sent
    readers_at(cfg, T0 + dt.timedelta(days=5), 1, start=1)  # joined late
    step = project / "content" / "sequences" / "welcome" / "03-deadlift.md"
    step.write_text(
        "---\ntitle: Your first deadlift\ndate: 2026-12-06\nkind: update\ndelay: 2d\n---\n"
        "Time to load the hinge.\n"
    )
    note = run(env, "check", "welcome/deadlift")
    assert "new step in welcome" in note.output and "will not get it" in note.output
    due(env, T0 + dt.timedelta(days=5, hours=1))  # first seen now
    due(env, T0 + dt.timedelta(days=8))
    deadlift = [
        addr for (addr, subject), _ in mail(cfg).items() if subject == "Your first deadlift"
    ]
    assert deadlift == ["reader1@example.com"]  # reader0 had passed 2 days long before


def test_two_due_processes_at_once_send_nothing_twice(env, cfg) -> None:
    due(env, T0)
    readers_at(cfg, T0 + dt.timedelta(minutes=1), 600)
    when = (T0 + dt.timedelta(minutes=2)).isoformat()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pipeline", "due", "--now", when],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out + err
    got = mail(cfg)
    assert len(got) == 600 and set(got.values()) == {1}
    with Store.from_settings(cfg) as store:
        ledger = Ledger(store)
        campaign = ledger.campaign("welcome/welcome", "all")
        assert campaign is not None and ledger.counts(campaign.id) == {"sent": 600}


def test_a_scheduled_campaign_goes_out_only_when_due(env, cfg) -> None:
    readers_at(cfg, T0 - dt.timedelta(days=1), 4)
    at = T0 + dt.timedelta(hours=2)
    scheduled = run(env, "send", "hip-hinge", "--at", at.isoformat())
    assert scheduled.exit_code == 0 and "scheduled hip-hinge (updates)" in scheduled.output
    listing = run(env, "campaigns")
    assert "scheduled" in listing.output and "hip-hinge" in listing.output
    early = due(env, at - dt.timedelta(minutes=1))
    hinge = "Master the hip hinge — protect & strengthen your lower back"
    assert not any(s == hinge for _, s in mail(cfg)), early.output
    on_time = due(env, at + dt.timedelta(minutes=1))
    assert "scheduled campaign sent 4" in on_time.output
    due(env, at + dt.timedelta(minutes=2))
    assert Counter(s for _, s in mail(cfg))[hinge] == 4
    again = run(env, "send", "hip-hinge", "--at", (at + dt.timedelta(days=1)).isoformat())
    assert again.exit_code == 1 and "already been sent" in again.output


def test_unschedule_cancels_it(env, cfg) -> None:
    readers_at(cfg, T0 - dt.timedelta(days=1), 2)
    assert run(env, "send", "hip-hinge", "--at", "2026-12-01T10:00").exit_code == 0
    cancelled = run(env, "send", "hip-hinge", "--unschedule")
    assert cancelled.exit_code == 0 and "unscheduled hip-hinge" in cancelled.output
    due(env, T0 + dt.timedelta(days=1))
    assert not any("hip hinge" in s for _, s in mail(cfg))
    assert run(env, "send", "hip-hinge", "--unschedule").exit_code == 1  # nothing left


def test_the_sending_window_holds_steps_until_it_opens(env, cfg, project: Path) -> None:
    toml = project / "newsletter.toml"
    toml.write_text(
        toml.read_text()
        .replace("[site]\n", '[site]\ntimezone = "America/Los_Angeles"\n', 1)
        .replace("[send]\n", '[send]\nwindow = "07:00-20:00"\n', 1)
    )
    due(env, T0)  # 01:00 in Los Angeles: outside, but the sequence is not held by it
    night = dt.datetime(2026, 12, 2, 5, 0, tzinfo=dt.UTC)  # 21:00 the day before, LA
    readers_at(cfg, night, 1)
    held = due(env, night)
    assert "outside the sending window" in held.output and "2026-12-02 07:00" in held.output
    assert sum(mail(cfg).values()) == 0
    due(env, dt.datetime(2026, 12, 2, 15, 5, tzinfo=dt.UTC))  # 07:05 in LA
    assert sum(mail(cfg).values()) == 1


def test_a_killed_due_resumes_and_mails_nobody_twice(env, cfg) -> None:
    due(env, T0)
    readers_at(cfg, T0 + dt.timedelta(minutes=1), 3000)
    cfg_path = Path(env["NEWSLETTER_CONFIG"])
    cfg_path.write_text(cfg_path.read_text().replace("rate = 0", "rate = 500"))
    when = (T0 + dt.timedelta(minutes=2)).isoformat()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "due", "--now", when],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    written = cfg.outbox_dir / "new"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _files(written) < 800:
        time.sleep(0.02)
    proc.kill()  # SIGKILL mid-step: its batch in flight is left to the resume
    proc.wait(10)
    assert 800 <= _files(written) < 3000
    due(env, T0 + dt.timedelta(minutes=3))
    got = mail(cfg)
    assert len(got) == 3000 and set(got.values()) == {1}


def _files(folder: Path) -> int:
    return len(os.listdir(folder)) if folder.is_dir() else 0


def test_serves_mailer_runs_due_by_itself(env, cfg) -> None:
    """`newsletter serve` needs no cron: its mailer runs `due` every minute."""
    from subscribers.mailer import run_mailer

    due(env, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))  # the sequence started
    readers_at(cfg, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1), 2)
    rounds = iter(range(3))
    run_mailer(cfg, should_stop=lambda: next(rounds, None) is None)
    assert {s for _, s in mail(cfg)} == {WELCOME} and sum(mail(cfg).values()) == 2
