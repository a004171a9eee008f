"""A link identifies one person for good, on SQLite and PostgreSQL.

Ids are never reused (SQLite AUTOINCREMENT, a PostgreSQL sequence) and every link is
signed over the reader's own random link key: after ``subscribers remove --erase`` the
erased reader's unsubscribe, preferences and confirmation links answer "this link is
no longer valid" and change nothing, whoever signs up next (issue 9, point 3).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from helpers import RecordingProvider, confirm_link, read_outbox, snapshot

from pipeline.cli import cli
from pipeline.settings import load_settings
from subscribers import schema as s
from subscribers.db import make_engine
from subscribers.models import Consent
from subscribers.store import Store
from subscribers.tokens import subscriber_token
from subscribers.validation import email_hash
from subscribers.web import create_app

SECRET = "test-secret-key"
BASE = "http://127.0.0.1:8000"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
JSON = {"Accept": "application/json"}


@pytest.fixture
def env(test_env: dict[str, str], db_env: dict[str, str]) -> dict[str, str]:
    return {**test_env, "NEWSLETTER_SIGNUP_RATE_LIMIT": "0", **db_env}


@pytest.fixture
def app(project: Path, env: dict[str, str]) -> Iterator[Flask]:
    provider = RecordingProvider()
    app = create_app(load_settings(project / "newsletter.toml", env=env), provider=provider)
    app.extensions["recorder"] = provider
    yield app
    app.extensions["newsletter"].store.close()


def join(client: FlaskClient, app: Flask, email: str, name: str) -> dict[str, str]:
    """Sign up through the form and confirm; returns the links of the confirmation email."""
    assert client.post("/subscribe", data={"email": email, "name": name}).status_code == 200
    message = app.extensions["recorder"].to(email)[-1]
    confirm = confirm_link(message.text).removeprefix(BASE)
    assert client.get(confirm).status_code == 200
    unsubscribe = re.search(r"<(http[^>]+/unsubscribe/[^>]+)>", message.headers["List-Unsubscribe"])
    token = unsubscribe.group(1).rsplit("/", 1)[1]
    return {
        "confirm": confirm,
        "unsubscribe": f"/unsubscribe/{token}",
        "preferences": f"/preferences/{token}",
        "token": token,
    }


def erase(store: Store, email: str) -> None:
    assert store.remove(email, erase=True) is True


# ---- ids are never reused ------------------------------------------------------------------


def test_the_id_of_an_erased_reader_is_never_given_again(store: Store) -> None:
    consent = Consent("signup", "t")
    first = store.signup("a@example.com", "", ["updates"], consent).subscriber_id
    newest = store.signup("b@example.com", "", ["updates"], consent).subscriber_id
    erase(store, "b@example.com")  # the highest id: SQLite used to hand it out again
    again = store.signup("c@example.com", "", ["updates"], consent).subscriber_id
    assert again > newest > first
    erase(store, "c@example.com")
    later = store.signup("d@example.com", "", ["updates"], consent).subscriber_id
    assert later > again


def test_every_reader_gets_a_random_link_key_never_reused(store: Store) -> None:
    consent = Consent("signup", "t")
    keys = set()
    for n in range(20):
        sid = store.signup(f"r{n}@example.com", "", ["updates"], consent).subscriber_id
        keys.add(store.get(sid).link_key)
    erase(store, "r19@example.com")
    sid = store.signup("r20@example.com", "", ["updates"], consent).subscriber_id
    keys.add(store.get(sid).link_key)
    assert len(keys) == 21 and all(len(k) == 22 for k in keys)
    assert "link_key" not in repr(store.get(sid))  # never in logs or tracebacks


# ---- an erased reader's links --------------------------------------------------------------


def test_an_erased_readers_links_control_nobody(
    client: FlaskClient, app: Flask, store: Store
) -> None:
    """The case from the issue: Ann (the newest reader) is erased, Bo signs up; Ann's
    old links must neither show Bo's data nor unsubscribe him."""
    ann = join(client, app, "ann@example.com", "Ann")
    erase(store, "ann@example.com")
    join(client, app, "bo@example.com", "Bo Secret-Name")
    before = snapshot(store)
    answers = [
        client.get(ann["unsubscribe"]),
        client.post(ann["unsubscribe"], data=ONE_CLICK),  # RFC 8058 one-click
        client.get(ann["preferences"]),
        client.post(ann["preferences"], data={"topics": "offers", "name": "Mallory"}),
        client.get(ann["confirm"]),
    ]
    for resp in answers:
        body = resp.get_data(as_text=True)
        assert resp.status_code == 410, (resp.request.method, resp.request.path, body)
        assert "no longer valid" in body
        assert "bo@example.com" not in body and "Bo Secret-Name" not in body
    assert snapshot(store) == before
    assert store.find("bo@example.com").status == "active"


def test_the_gone_answer_is_json_for_json_clients(
    client: FlaskClient, app: Flask, store: Store
) -> None:
    ann = join(client, app, "ann@example.com", "Ann")
    erase(store, "ann@example.com")
    resp = client.post(ann["unsubscribe"], data=ONE_CLICK, headers=JSON)
    assert resp.status_code == 410
    assert resp.json["error"]["message"] == "this link is no longer valid"


def test_a_link_for_a_reused_id_is_refused_by_its_key(
    client: FlaskClient, app: Flask, store: Store
) -> None:
    """Defence in depth: should an id ever be handed out again (a restored backup, a
    sequence reset by hand), the old link still fails: it is signed over another key."""
    ann = join(client, app, "ann@example.com", "Ann")
    ann_id = store.find("ann@example.com").id
    erase(store, "ann@example.com")
    with store.engine.begin() as conn:  # force the old id onto a new reader
        conn.execute(
            s.subscribers.insert().values(
                id=ann_id,
                email="bo@example.com",
                email_hash="b0" * 32,
                name="Bo",
                status="active",
                created_at=sa.func.now(),
                updated_at=sa.func.now(),
                link_key="bo-own-random-key-xxxxx",
            )
        )
    before = snapshot(store)
    for resp in (
        client.get(ann["unsubscribe"]),
        client.post(ann["unsubscribe"], data=ONE_CLICK),
        client.get(ann["preferences"]),
        client.get(ann["confirm"]),
    ):
        body = resp.get_data(as_text=True)
        assert resp.status_code == 400 and "not valid" in body and "Bo" not in body
    assert snapshot(store) == before


def test_a_links_still_work_for_the_reader_they_belong_to(
    client: FlaskClient, app: Flask, store: Store
) -> None:
    ann = join(client, app, "ann@example.com", "Ann")
    join(client, app, "bo@example.com", "Bo")
    assert "Ann" in client.get(ann["preferences"]).get_data(as_text=True)
    assert client.post(ann["unsubscribe"], data=ONE_CLICK).status_code == 200
    assert store.find("ann@example.com").status == "unsubscribed"
    assert store.find("bo@example.com").status == "active"


def test_forging_a_link_needs_the_secret_key(client: FlaskClient, app: Flask, store: Store) -> None:
    join(client, app, "ann@example.com", "Ann")
    sub = store.find("ann@example.com")
    forged = subscriber_token("not-our-secret", sub.id, sub.link_key)  # even knowing the key
    assert client.post(f"/unsubscribe/{forged}", data=ONE_CLICK).status_code == 400
    assert store.find("ann@example.com").status == "active"


# ---- the links in a campaign ---------------------------------------------------------------


def test_a_sent_campaigns_links_are_the_readers_own(
    project: Path, env: dict[str, str], app: Flask, client: FlaskClient, store: Store
) -> None:
    """Through the real send (outbox): the List-Unsubscribe URL, the mailto subject and
    the body link carry the token signed over the reader's key, and it works."""
    join(client, app, "ann@example.com", "Ann")
    join(client, app, "bo@example.com", "Bo")
    toml = project / "newsletter.toml"  # an inbound path: the mailto is advertised too
    toml.write_text(
        toml.read_text()
        .replace("[provider]\n", '[provider]\ninbound = "postmark"\n')
        .replace("[site]\n", '[site]\nunsubscribe_email = "unsubscribe@inbound.example.com"\n')
    )
    result = CliRunner().invoke(
        cli, ["--config", str(project / "newsletter.toml"), "send", "hip-hinge", "--yes"], env=env
    )
    assert result.exit_code == 0, result.output
    sent = {m["To"].addresses[0].addr_spec: m for m in read_outbox(project / "var" / "outbox")}
    ann = store.find("ann@example.com")
    token = subscriber_token(SECRET, ann.id, ann.link_key)
    header = str(sent["ann@example.com"]["List-Unsubscribe"])
    assert f"/unsubscribe/{token}>" in header
    assert f"?subject=unsubscribe%20{token}>" in header  # the mailto names the reader too
    html = sent["ann@example.com"].get_body(preferencelist=("html",)).get_content()
    assert f"/unsubscribe/{token}" in html and f"/preferences/{token}" in html
    assert client.post(f"/unsubscribe/{token}", data=ONE_CLICK).status_code == 200
    assert store.find("ann@example.com").status == "unsubscribed"
    assert store.find("bo@example.com").status == "active"


# ---- a database from before link keys -----------------------------------------------------


def test_upgrading_keeps_old_links_working_and_stops_id_reuse(
    project: Path, env: dict[str, str]
) -> None:
    """A version-4 database: its readers keep working links (key "" = signed over the id,
    as emails already sent say), children rows survive the table rebuild, and from now
    on an erased id is never handed out again."""
    url = env.get("NEWSLETTER_DATABASE_URL") or f"sqlite:///{project / 'var' / 'newsletter.db'}"
    engine = make_engine(url)
    s.migrate(engine, s.MIGRATIONS[:4])
    with engine.begin() as conn:
        for sid in (1, 2, 3):
            conn.execute(sa.text(
                "INSERT INTO subscribers (id, email, email_hash, name, status, created_at,"
                " updated_at, confirmed_at) VALUES (:id, :e, :h, :n, 'active', :t, :t, :t)"
            ), {"id": sid, "e": f"r{sid}@example.com", "h": email_hash(f"r{sid}@example.com"),
                "n": f"R{sid}", "t": "2025-01-02 03:04:05"})  # fmt: skip
            conn.execute(
                sa.text("INSERT INTO subscriber_topics VALUES (:id, 'updates')"), {"id": sid}
            )
        conn.execute(sa.text(
            "INSERT INTO confirmation_queue (subscriber_id, due_at, attempts, last_error)"
            " VALUES (2, '2025-01-02 03:04:05', 0, '')"
        ))  # fmt: skip
    engine.dispose()
    app = create_app(load_settings(project / "newsletter.toml", env=env), provider=None)
    store: Store = app.extensions["newsletter"].store
    try:
        assert [r[3] for r in store.eligible_recipients("updates")] == ["", "", ""]
        assert store.queued_confirmations() == 1 and store.get(2).topics == ("updates",)
        legacy = subscriber_token(SECRET, 3, "")  # what emails sent before upgrading hold
        resp = app.test_client().post(f"/unsubscribe/{legacy}", data=ONE_CLICK)
        assert resp.status_code == 200 and store.get(3).status == "unsubscribed"
        erase(store, "r3@example.com")
        new = store.signup("new@example.com", "", ["updates"], Consent("signup", "t"))
        assert new.subscriber_id > 3 and len(store.get(new.subscriber_id).link_key) == 22
        gone = app.test_client().get(f"/preferences/{legacy}")
        assert gone.status_code == 410
    finally:
        store.close()
