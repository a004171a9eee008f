"""A hard bounce during a send suppresses the address: the whole path, for real.

``newsletter send`` through a real SMTP server (aiosmtpd on 127.0.0.1) that refuses one
recipient with "550 5.1.1 user unknown": the send records the failure, writes the
suppression, marks the reader bounced, and later sends leave them out. A policy refusal
(550 without "address does not exist") fails that message but suppresses nobody.
This is the second, independent guard of the suppression write in ``pipeline/send.py``
(the first drives the send loop with an in-memory provider).
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from send_helpers import fill
from smtp_server import Sink, smtp_server

from pipeline.cli import cli
from pipeline.settings import load_settings
from subscribers.ledger import Ledger
from subscribers.store import Store

UNKNOWN = "550 5.1.1 <reader1@example.com>: Recipient address rejected: User unknown"
POLICY = "550 5.7.1 <reader2@example.com>: Message refused by local policy"


def test_a_hard_bounce_during_a_send_suppresses_the_address(
    project: Path, test_env: dict[str, str]
) -> None:
    sink = Sink(refuse={"reader1@example.com": UNKNOWN, "reader2@example.com": POLICY})
    with smtp_server(sink) as (host, port):
        env = {
            **test_env,
            "NEWSLETTER_PROVIDER": "smtp",
            "SMTP_URL": f"smtp://{host}:{port}",
            "NEWSLETTER_CONFIG": str(project / "newsletter.toml"),
            "NEWSLETTER_BASE_URL": "https://news.hingestrength.example.com",  # pipeline.guard
        }
        settings = load_settings(project / "newsletter.toml", env=env)
        with Store.from_settings(settings) as store:
            fill(store, 4, topics=("updates", "offers"))
        result = CliRunner().invoke(cli, ["send", "hip-hinge", "--yes"], env=env)
        assert "sent 2, failed 2" in result.output, result.output
        received = sorted(r.rcpt_tos[0] for r in sink.received)
        assert received == ["reader0@example.com", "reader3@example.com"]

        with Store.from_settings(settings) as store:
            assert store.suppression_reason("reader1@example.com") == "bounced"
            assert store.find("reader1@example.com").status == "bounced"
            assert store.suppression_reason("reader2@example.com") is None  # policy only
            assert store.find("reader2@example.com").status == "active"
            ledger = Ledger(store)
            campaign = ledger.campaign("hip-hinge", "updates")
            assert ledger.counts(campaign.id) == {"sent": 2, "failed": 2}

        # The next campaign leaves the suppressed address out, and only it.
        sink.received.clear()
        later = CliRunner().invoke(cli, ["send", "bulletproof-back-program", "--yes"], env=env)
        assert "Recipients: 3" in later.output, later.output
        assert "reader1@example.com" not in {r.rcpt_tos[0] for r in sink.received}
