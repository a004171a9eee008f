"""The headers every email carries, read back from the wire (the outbox's .eml files):
campaigns sent by ``newsletter send`` and confirmation emails sent by the web app.

Each rule here had a single guard before (or none): the Feedback-ID header, the token
in the mailto unsubscribe subject, and the exact case of ``List-Unsubscribe=One-Click``
(RFC 8058 and Gmail compare it byte for byte).
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import read_outbox
from send_helpers import fill

from pipeline.cli import cli
from pipeline.settings import Settings, load_settings
from subscribers.store import Store
from subscribers.tokens import subscriber_token
from subscribers.web import create_app

ONE_CLICK_LINE = b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"


def with_feedback_id(project: Path, value: str | None) -> None:
    config = project / "newsletter.toml"
    text = config.read_text()
    if value is not None:
        assert "[provider]" in text
        text = text.replace("[provider]", f'[provider]\nfeedback_id = "{value}"', 1)
    config.write_text(text)


def send_campaign(project: Path, env: dict[str, str], n: int = 3) -> dict[str, EmailMessage]:
    settings = load_settings(project / "newsletter.toml", env=env)
    with Store.from_settings(settings) as store:
        fill(store, n)
    result = CliRunner().invoke(
        cli, ["--config", str(project / "newsletter.toml"), "send", "hip-hinge", "--yes"], env=env
    )
    assert result.exit_code == 0, result.output
    return {m["To"].addresses[0].addr_spec: m for m in read_outbox(settings.outbox_dir)}


def raw_eml(settings: Settings) -> list[bytes]:
    return [p.read_bytes() for p in sorted((settings.outbox_dir / "new").iterdir())]


def confirmation_email(project: Path, env: dict[str, str]) -> EmailMessage:
    settings = load_settings(project / "newsletter.toml", env=env)
    app = create_app(settings)  # the configured provider: the outbox
    try:
        resp = app.test_client().post("/subscribe", data={"email": "new@example.com"})
        assert resp.status_code == 200
    finally:
        app.extensions["newsletter"].store.close()
    [message] = [m for m in read_outbox(settings.outbox_dir) if "new@example.com" in str(m["To"])]
    return message


# ---- Feedback-ID ---------------------------------------------------------------------


def test_feedback_id_is_on_every_campaign_email_when_configured(
    project: Path, test_env: dict[str, str]
) -> None:
    with_feedback_id(project, "hinge-strength")
    sent = send_campaign(project, test_env)
    assert {str(m["Feedback-ID"]) for m in sent.values()} == {"hip-hinge:updates:hinge-strength"}


def test_feedback_id_is_on_the_confirmation_email_too(
    project: Path, test_env: dict[str, str]
) -> None:
    with_feedback_id(project, "hinge-strength")
    assert str(confirmation_email(project, test_env)["Feedback-ID"]) == (
        "confirm:confirm:hinge-strength"
    )


def test_no_feedback_id_header_unless_configured(project: Path, test_env: dict[str, str]) -> None:
    sent = send_campaign(project, test_env, n=1)
    assert all(m["Feedback-ID"] is None for m in sent.values())
    assert confirmation_email(project, test_env)["Feedback-ID"] is None


# ---- the token in the mailto unsubscribe subject -----------------------------------------


def mailto_token(message: EmailMessage) -> str:
    header = str(message["List-Unsubscribe"])
    found = re.search(r"<mailto:[^?>]+\?subject=unsubscribe%20([A-Za-z0-9_.\-]+)>", header)
    assert found, header
    return found.group(1)


def with_inbound(project: Path) -> None:
    """A mailto is advertised only when an inbound path acts on it (provider.inbound)."""
    toml = project / "newsletter.toml"
    toml.write_text(
        toml.read_text()
        .replace("[provider]\n", '[provider]\ninbound = "postmark"\n')
        .replace("[site]\n", '[site]\nunsubscribe_email = "unsubscribe@inbound.example.com"\n')
    )


def test_each_campaign_email_names_its_reader_in_the_mailto_subject(
    project: Path, test_env: dict[str, str], settings: Settings
) -> None:
    with_inbound(project)
    sent = send_campaign(project, test_env)
    with Store.from_settings(settings) as store:
        for email, message in sent.items():
            sub = store.find(email)
            expected = subscriber_token("test-secret-key", sub.id, sub.link_key)
            assert mailto_token(message) == expected
            assert f"/unsubscribe/{expected}>" in str(message["List-Unsubscribe"])
    assert len({mailto_token(m) for m in sent.values()}) == len(sent)


def test_the_confirmation_emails_mailto_subject_names_its_reader(
    project: Path, test_env: dict[str, str], settings: Settings
) -> None:
    with_inbound(project)
    message = confirmation_email(project, test_env)
    with Store.from_settings(settings) as store:
        sub = store.find("new@example.com")
    assert mailto_token(message) == subscriber_token("test-secret-key", sub.id, sub.link_key)


# ---- List-Unsubscribe=One-Click, byte for byte -------------------------------------------


@pytest.mark.parametrize("kind", ["campaign", "confirmation"])
def test_one_click_header_has_the_exact_case_on_the_wire(
    project: Path, test_env: dict[str, str], settings: Settings, kind: str
) -> None:
    if kind == "campaign":
        send_campaign(project, test_env, n=2)
    else:
        confirmation_email(project, test_env)
    files = raw_eml(settings)
    assert files
    for raw in files:
        assert ONE_CLICK_LINE in raw  # not list-unsubscribe=one-click, not folded
        assert b"\r\nList-Unsubscribe: <http" in raw
