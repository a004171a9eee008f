"""End to end: send through the outbox, providers report a hard bounce and a complaint
for two recipients (by the Message-IDs of the sent messages), the next sends leave those
two out, and ``newsletter report`` shows what happened. On SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from helpers import read_outbox
from send_helpers import fill
from test_webhook_helpers import (
    WEBHOOK_ENV,
    mailgun_body,
    mailgun_post,
    postmark_post,
    webhook_app,
)

from pipeline.cli import cli
from pipeline.settings import load_settings
from subscribers.store import Store


@pytest.fixture
def env(project: Path, test_env: dict[str, str], db_env: dict[str, str]) -> dict[str, str]:
    config = str(project / "newsletter.toml")
    return {**test_env, **WEBHOOK_ENV, "NEWSLETTER_CONFIG": config, **db_env}


def run(env: dict[str, str], *args: str) -> Result:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result


def outbox_ids(project: Path) -> dict[str, str]:
    """Recipient address -> Message-ID, from the .eml files the outbox wrote."""
    found = {}
    for msg in read_outbox(project / "var" / "outbox"):
        found[msg["To"].addresses[0].addr_spec] = msg["Message-ID"]
    return found


def test_bounce_and_complaint_stop_mail_and_show_in_the_report(project: Path, env: dict) -> None:
    settings = load_settings(project / "newsletter.toml", env=env)
    with Store.from_settings(settings) as store:
        fill(store, 5, topics=("updates", "offers"))

    run(env, "send", "hip-hinge", "--yes")
    sent = outbox_ids(project)
    assert len(sent) == 5
    bounced, complained, reader = (
        "reader1@example.com",
        "reader2@example.com",
        "reader0@example.com",
    )

    with webhook_app(project, env) as hook:
        bounce = {
            "RecordType": "Bounce",
            "ID": 4323372036854775807,
            "Type": "HardBounce",
            "TypeCode": 1,
            "Name": "Hard bounce",
            "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
            "Description": "The server was unable to deliver your message.",
            "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
            "Email": bounced,
            "BouncedAt": "2026-11-23T16:33:54.9070259Z",
            "Metadata": {"message_id": sent[bounced], "campaign": "hip-hinge"},
        }
        assert postmark_post(hook.client, bounce).json == {"received": 1, "recorded": 1}
        complaint = {
            "event": "complained",
            "id": "ncV2XwymRUKbPek_MIM-Gw",
            "timestamp": 1377214260.049634,
            "recipient": complained,
            "message": {"headers": {"message-id": sent[complained].strip("<>")}},
        }
        signed = mailgun_body(complaint)
        assert mailgun_post(hook.client, signed).json["recorded"] == 1
        assert mailgun_post(hook.client, signed).status_code == 403  # a replayed token
        for record in (
            {"RecordType": "Delivery", "Recipient": reader, "DeliveredAt": "2026-11-23T16:30:00Z"},
            {"RecordType": "Open", "Recipient": reader, "ReceivedAt": "2026-11-23T16:31:00Z"},
            {
                "RecordType": "Click",
                "Recipient": reader,
                "OriginalLink": "https://hingestrength.example.com/articles/master-the-hip-hinge",
                "ReceivedAt": "2026-11-23T16:32:00Z",
            },
        ):
            record["Metadata"] = {"message_id": sent[reader]}
            assert postmark_post(hook.client, record).status_code == 200
        # Providers retry: the same bounce again changes nothing.
        assert postmark_post(hook.client, bounce).json == {"received": 1, "recorded": 0}
        assert hook.store.find(bounced).status == "bounced"
        assert hook.store.find(complained).status == "complained"

    with Store.from_settings(settings) as store:
        fill(store, 1, topics=("updates", "offers"), start=5)  # a new reader

    # Re-send with --include-new: only the new reader is mailed.
    before = len(read_outbox(project / "var" / "outbox"))
    run(env, "send", "hip-hinge", "--include-new", "--yes")
    after = read_outbox(project / "var" / "outbox")
    assert [m["To"].addresses[0].addr_spec for m in after[before:]] == ["reader5@example.com"]

    # A new campaign to the same people: the bounced and the complaining reader are left out.
    run(env, "send", "bulletproof-back-program", "--yes")
    offers = {
        m["To"].addresses[0].addr_spec
        for m in read_outbox(project / "var" / "outbox")
        if "bulletproof-back-program" in m["Message-ID"]
    }
    assert offers == {f"reader{i}@example.com" for i in (0, 3, 4, 5)}

    report = run(env, "report", "hip-hinge").output
    assert "sent 6" in report  # the existing ledger lines are still there
    assert (
        "provider events (recipients): delivered 1, bounced 1 (hard 1, soft 0), complained 1, "
        "unsubscribed 0, clicked 1"
    ) in report
    assert "opened 1 (unreliable: privacy proxies pre-fetch images" in report

    rows = {
        r["email"]: r
        for r in csv.DictReader(io.StringIO(run(env, "report", "hip-hinge", "--csv").output))
    }
    assert len(rows) == 6
    assert rows[bounced]["status"] == "sent" and rows[bounced]["last_event"] == "bounced (hard)"
    assert rows[bounced]["bounced"] == "1" and "550 5.1.1" in rows[bounced]["last_event_detail"]
    assert rows[complained]["last_event"] == "complained" and rows[complained]["complained"] == "1"
    assert (rows[reader]["delivered"], rows[reader]["opened"], rows[reader]["clicked"]) == (
        "1",
        "1",
        "1",
    )
    assert rows[reader]["last_event"] == "clicked"
    assert rows["reader5@example.com"]["last_event"] == ""

    other = run(env, "report", "bulletproof-back-program").output
    assert "provider events: none reported yet" in other
