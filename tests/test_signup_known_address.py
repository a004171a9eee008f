"""A signup for an address already held changes nothing until its link is followed.

Anyone can post the public form with any address. For a reader we know (pending,
active, unsubscribed, bounced) such a post changes nothing about them (name, topics,
status); it mails a confirmation link, and only following that link applies the new
choices. The reply is the same as for a new address (no enumeration). Issue 9, point 4;
on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers import RecordingProvider, confirm_link, snapshot

from pipeline.settings import load_settings
from subscribers.store import Store
from subscribers.web import create_app

BASE = "http://127.0.0.1:8000"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
EVIL = "<script>alert(1)</script> & co"


@pytest.fixture
def app(project: Path, test_env: dict[str, str], db_env: dict[str, str]) -> Iterator[Flask]:
    env = {**test_env, "NEWSLETTER_SIGNUP_RATE_LIMIT": "0", **db_env}
    provider = RecordingProvider()
    app = create_app(load_settings(project / "newsletter.toml", env=env), provider=provider)
    app.extensions["recorder"] = provider
    yield app
    app.extensions["newsletter"].store.close()


def sent_to(app: Flask, email: str) -> list:
    return app.extensions["recorder"].to(email)


def reader(store: Store) -> tuple:
    """What a signup must not change: the reader's row and topics."""
    rows = snapshot(store)
    return rows["subscribers"], rows["subscriber_topics"]


def post(client: FlaskClient, how: str, email: str, name: str, topics: list[str]) -> object:
    if how == "json":
        return client.post("/subscribe", json={"email": email, "name": name, "topics": topics})
    data = {"email": email, "name": name, "topics": topics, "topics_shown": "1"}
    return client.post("/subscribe", data=data)


def make_reader(client: FlaskClient, app: Flask, store: Store, state: str) -> int:
    """Ann, subscribed to updates, in ``state``."""
    assert post(client, "form", "ann@example.com", "Ann", ["updates"]).status_code == 200
    sid = store.find("ann@example.com").id
    if state == "pending":
        return sid
    link = confirm_link(sent_to(app, "ann@example.com")[-1].text).removeprefix(BASE)
    assert client.get(link).status_code == 200
    if state == "unsubscribed":
        store.unsubscribe(sid, source="one-click")
    elif state == "bounced":  # a status set by hand, without a suppression
        store.mark_status(sid, "bounced")
    return sid


STATES = ["pending", "active", "unsubscribed", "bounced"]


@pytest.mark.parametrize("how", ["form", "json"])
@pytest.mark.parametrize("state", STATES)
def test_a_strangers_signup_changes_nothing_and_answers_as_for_a_new_address(
    client: FlaskClient, app: Flask, store: Store, state: str, how: str
) -> None:
    sid = make_reader(client, app, store, state)
    before = reader(store)
    mails = len(sent_to(app, "ann@example.com"))
    known = post(client, how, "ann@example.com", "Mallory", ["offers"])
    new = post(client, how, "someone-new@example.com", "Mallory", ["offers"])
    assert (known.status_code, known.get_data()) == (new.status_code, new.get_data())
    after = reader(store)
    assert [r for r in after[0] if r[0] == str(sid)] == [r for r in before[0] if r[0] == str(sid)]
    assert [r for r in after[1] if r[0] == str(sid)] == [r for r in before[1] if r[0] == str(sid)]
    sub = store.get(sid)
    assert sub.name == "Ann" and sub.topics == ("updates",)
    assert len(sent_to(app, "ann@example.com")) == mails + 1  # a new confirmation link


@pytest.mark.parametrize("state", STATES)
def test_following_the_new_link_applies_the_new_choices(
    client: FlaskClient, app: Flask, store: Store, state: str
) -> None:
    sid = make_reader(client, app, store, state)
    post(client, "form", "ann@example.com", "Ann Lee", ["offers"])
    message = sent_to(app, "ann@example.com")[-1]
    assert "Hi Ann," in message.text and "Program offers" in message.text
    assert client.get(confirm_link(message.text).removeprefix(BASE)).status_code == 200
    sub = store.get(sid)
    assert (sub.name, sub.topics, sub.status) == ("Ann Lee", ("offers",), "active")
    assert [r[0] for r in store.eligible_recipients("offers")] == [sid]
    kinds = [c["kind"] for c in store.consents_for(sid)][-2:]
    assert kinds == ["signup", "confirm"]  # the request's consent, recorded once confirmed


def test_a_signup_without_a_name_keeps_the_name(
    client: FlaskClient, app: Flask, store: Store
) -> None:
    sid = make_reader(client, app, store, "active")
    post(client, "json", "ann@example.com", "", ["updates", "offers"])
    client.get(confirm_link(sent_to(app, "ann@example.com")[-1].text).removeprefix(BASE))
    assert (store.get(sid).name, store.get(sid).topics) == ("Ann", ("offers", "updates"))


def test_a_used_or_withdrawn_link_cannot_undo_a_later_choice(
    client: FlaskClient, app: Flask, store: Store
) -> None:
    sid = make_reader(client, app, store, "active")
    post(client, "form", "ann@example.com", "Mallory", ["offers"])  # a stranger's
    strangers = confirm_link(sent_to(app, "ann@example.com")[-1].text).removeprefix(BASE)
    post(client, "form", "ann@example.com", "Ann", ["updates", "offers"])  # Ann's own
    own = confirm_link(sent_to(app, "ann@example.com")[-1].text).removeprefix(BASE)
    assert client.get(own).status_code == 200
    before = snapshot(store)
    assert client.get(strangers).status_code == 200  # "you are subscribed": nothing to do
    assert client.get(own).status_code == 200  # a repeated click changes nothing either
    assert snapshot(store) == before
    assert store.get(sid).name == "Ann"
    store.unsubscribe(sid, source="one-click")
    before = snapshot(store)
    resp = client.get(strangers)  # after leaving, an old link never resubscribes
    assert resp.status_code == 409 and "no longer valid" in resp.get_data(as_text=True)
    assert snapshot(store) == before


def test_leaving_withdraws_a_pending_request(client: FlaskClient, app: Flask, store: Store) -> None:
    sid = make_reader(client, app, store, "active")
    post(client, "form", "ann@example.com", "Mallory", ["offers"])
    link = confirm_link(sent_to(app, "ann@example.com")[-1].text).removeprefix(BASE)
    unsubscribe = sent_to(app, "ann@example.com")[-1].headers["List-Unsubscribe"]
    url = unsubscribe.split("<", 1)[1].split(">", 1)[0].removeprefix(BASE)
    assert client.post(url, data=ONE_CLICK).status_code == 200
    assert client.get(link).status_code == 409
    assert store.get(sid).status == "unsubscribed" and store.get(sid).name == "Ann"


def test_a_suppressed_address_gets_the_same_answer_and_no_email(
    client: FlaskClient, app: Flask, store: Store
) -> None:
    make_reader(client, app, store, "active")
    store.suppress("ann@example.com", "complained")
    mails = len(sent_to(app, "ann@example.com"))
    before = snapshot(store)["subscribers"]
    known = post(client, "json", "ann@example.com", "Mallory", ["offers"])
    new = post(client, "json", "fresh@example.com", "Mallory", ["offers"])
    assert (known.status_code, known.json) == (new.status_code, new.json)
    assert len(sent_to(app, "ann@example.com")) == mails
    after = [r for r in snapshot(store)["subscribers"] if "fresh@example.com" not in r]
    assert after == before


def test_repeated_signups_for_a_known_address_are_capped(
    client: FlaskClient, app: Flask, store: Store
) -> None:
    make_reader(client, app, store, "active")
    for _ in range(8):
        assert post(client, "form", "ann@example.com", "Mallory", ["offers"]).status_code == 200
    # 5 confirmation emails an hour per address (the first signup's included); the
    # other posts are answered the same and mail nothing
    assert len(sent_to(app, "ann@example.com")) == 5
    assert store.get(store.find("ann@example.com").id).name == "Ann"


# ---- the name in the confirmation email is escaped (issue 9, point 10) -------------------


@pytest.mark.parametrize("known", [False, True], ids=["new address", "known address"])
def test_the_confirmation_email_escapes_the_name_typed_into_the_form(
    client: FlaskClient, app: Flask, store: Store, known: bool
) -> None:
    if known:
        make_reader(client, app, store, "active")
    post(client, "form", "ann@example.com", EVIL, ["updates"])
    message = sent_to(app, "ann@example.com")[-1]
    assert "<script>" not in message.html
    assert "Hi &lt;script&gt;alert(1)&lt;/script&gt;," in message.html
    assert "Hi <script>alert(1)</script>," in message.text  # plain text is not HTML
