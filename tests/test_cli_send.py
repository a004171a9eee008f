"""`newsletter send`, `campaigns` and `report` through CliRunner on the outbox provider."""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest
from click.testing import CliRunner
from send_helpers import fill

from pipeline.cli import cli
from pipeline.settings import Settings
from subscribers.store import Store


@pytest.fixture
def store(settings: Settings):
    with Store.from_settings(settings) as store:
        yield store


@pytest.fixture
def run(project: Path, test_env: dict[str, str]):
    def invoke(*args: str, input: str | None = None):  # noqa: A002
        env = {**test_env, "NEWSLETTER_CONFIG": str(project / "newsletter.toml")}
        return CliRunner().invoke(cli, list(args), env=env, input=input)

    return invoke


def outbox(settings: Settings) -> list:
    if not settings.outbox_dir.exists():
        return []
    return list(mailbox.Maildir(settings.outbox_dir, create=False))


def test_send_mails_everyone_once_and_reruns_send_nothing(run, store, settings) -> None:
    fill(store, 12)
    fill(store, 3, topics=("offers",), start=12)
    first = run("send", "hip-hinge", "--yes")
    assert first.exit_code == 0, first.output
    assert "Recipients: 12" in first.output and "Provider:   outbox" in first.output
    assert "this run sent 12, failed 0" in first.output
    mails = outbox(settings)
    assert sorted(m["To"] for m in mails) == sorted(
        f"Reader {i} <reader{i}@example.com>" for i in range(12)
    )
    second = run("send", "hip-hinge", "--yes")
    assert second.exit_code == 0
    assert "nothing left to send; 12 sent" in second.output
    assert len(outbox(settings)) == 12


def test_send_asks_first_and_refuses_without_a_terminal(run, store, settings) -> None:
    fill(store, 3)
    result = run("send", "hip-hinge")
    assert result.exit_code == 1
    assert "not sending without confirmation" in result.output and "--yes" in result.output
    assert outbox(settings) == []
    assert "no campaigns yet" in run("campaigns").output


def test_dry_run_renders_everything_and_sends_nothing(run, store, settings) -> None:
    fill(store, 7)
    result = run("send", "hip-hinge", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "dry run: rendered 7 message(s)" in result.output and "nothing sent" in result.output
    assert outbox(settings) == []
    assert "no campaigns yet" in run("campaigns").output


def test_test_send_mails_one_sample_and_records_nothing(run, store, settings) -> None:
    fill(store, 5)
    result = run("send", "hip-hinge", "--test-to", "Me@Example.COM")
    assert result.exit_code == 0, result.output
    (mail,) = outbox(settings)
    assert mail["To"] == "Me@example.com"
    assert mail["Subject"].startswith("[TEST] ")
    assert "no campaigns yet" in run("campaigns").output


def test_test_send_rejects_a_bad_address(run, settings) -> None:
    result = run("send", "hip-hinge", "--test-to", "not-an-address")
    assert result.exit_code == 1
    assert "error:" in result.output and "Traceback" not in result.output
    assert outbox(settings) == []


def test_include_new_mails_only_later_subscribers(run, store, settings) -> None:
    fill(store, 4)
    assert run("send", "hip-hinge", "--yes").exit_code == 0
    fill(store, 2, start=4)
    plain = run("send", "hip-hinge", "--yes")
    assert "Use --include-new for later subscribers" in plain.output
    later = run("send", "hip-hinge", "--yes", "--include-new")
    assert later.exit_code == 0, later.output
    assert "2 new subscriber(s) added" in later.output
    assert sorted(m["To"] for m in outbox(settings))[-2:] == [
        "Reader 4 <reader4@example.com>",
        "Reader 5 <reader5@example.com>",
    ]
    assert len(outbox(settings)) == 6


def test_nobody_to_send_to(run) -> None:
    result = run("send", "hip-hinge", "--yes")
    assert result.exit_code == 1
    assert "nobody to send to" in result.output


def test_send_refuses_a_module_with_errors(run, project: Path, store) -> None:
    fill(store, 2)
    (project / "content" / "bad.md").write_text(
        "---\ntitle: T\ndate: 2026-01-01\nkind: update\n---\n![](images/missing.png)\n"
    )
    result = run("send", "bad", "--yes")
    assert result.exit_code == 1
    assert "has 2 error(s)" in result.output and "newsletter check bad" in result.output


def test_unknown_topic(run) -> None:
    result = run("send", "hip-hinge", "--topic", "gossip", "--yes")
    assert result.exit_code == 1 and "unknown topic 'gossip'" in result.output


def test_worker_needs_postgresql(run, store) -> None:
    fill(store, 2)
    result = run("send", "hip-hinge", "--worker", "--yes")
    assert result.exit_code == 1 and "--worker needs PostgreSQL" in result.output


def test_campaigns_and_report(run, store) -> None:
    fill(store, 6)
    store.suppress("reader2@example.com", "complained", source="test")
    assert run("send", "hip-hinge", "--yes").exit_code == 0
    listing = run("campaigns")
    assert listing.exit_code == 0
    line = next(li for li in listing.output.splitlines() if li.startswith("hip-hinge"))
    assert line.split()[1] == "updates" and line.split()[4:] == ["5", "0", "0", "0"]
    report = run("report", "hip-hinge")
    assert report.exit_code == 0
    assert "sent 5" in report.output and "total 5" in report.output
    assert run("report", "nope").exit_code == 1


def test_report_names_the_provider_of_each_run(run, store, project: Path) -> None:
    fill(store, 6)
    assert run("send", "hip-hinge", "--yes", "--batch-size", "2", "--rate", "0").exit_code == 0
    fill(store, 2, start=6)
    cfg = project / "newsletter.toml"
    public = 'base_url = "https://news.hingestrength.example.com"'  # the guard wants https
    cfg.write_text(
        cfg.read_text()
        .replace('name = "outbox"', 'name = "smtp"')
        .replace('base_url = "http://127.0.0.1:8000"', public)
    )
    # smtp without SMTP_URL: refused before anything is touched
    refused = run("send", "hip-hinge", "--yes", "--include-new")
    assert refused.exit_code == 1 and "SMTP_URL" in refused.output
    cfg.write_text(cfg.read_text().replace('name = "smtp"', 'name = "outbox"'))
    assert run("send", "hip-hinge", "--yes", "--include-new").exit_code == 0
    report = run("report", "hip-hinge")
    runs = [line for line in report.output.splitlines() if line.strip().startswith("run ")]
    assert len(runs) == 2, report.output  # the refused attempt never became a run
    assert "via outbox" in runs[0] and "sent 6" in runs[0]
    assert "via outbox" in runs[1] and "sent 2" in runs[1]


def test_no_campaign_is_created_when_the_provider_is_not_ready(run, store, project: Path) -> None:
    fill(store, 3)
    cfg = project / "newsletter.toml"
    cfg.write_text(
        cfg.read_text()
        .replace('name = "outbox"', 'name = "postmark"')
        .replace('base_url = "http://127.0.0.1:8000"', 'base_url = "https://news.example.com"')
    )
    result = run("send", "hip-hinge", "--yes")
    assert result.exit_code == 1 and "POSTMARK_SERVER_TOKEN" in result.output
    listing = run("campaigns")
    assert "no campaigns yet" in listing.output


def test_report_counts_lost_answers_by_how_they_were_settled(run, store, settings) -> None:
    from subscribers.ledger import Ledger

    fill(store, 4)
    assert run("send", "hip-hinge", "--yes").exit_code == 0
    ledger = Ledger(store)
    with store.write() as conn:  # as a run that reconciled two and re-sent one would leave it
        from subscribers.schema import deliveries as d

        conn.execute(d.update().where(d.c.subscriber_id.in_([1, 2])).values(doubt="reconciled"))
        conn.execute(d.update().where(d.c.subscriber_id == 3).values(doubt="resent"))
        conn.execute(d.update().where(d.c.subscriber_id == 4).values(status="unknown"))
    assert ledger.doubts(1) == {"reconciled": 2, "resent": 1, "unknown": 1}
    report = run("report", "hip-hinge")
    assert (
        "lost answers: 2 reconciled (the provider had them), 1 re-sent, 0 skipped by choice, "
        "1 still in doubt" in report.output
    )
