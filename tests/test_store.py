"""The subscriber store, run against a real SQLite file and the real PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from helpers import Clock, pg_schema, snapshot

from pipeline.errors import ConfigError
from subscribers import schema as s
from subscribers.db import normalise_url
from subscribers.errors import Conflict, DatabaseUnavailable, InvalidInput, NotFound
from subscribers.models import Consent, NewSubscriber
from subscribers.store import Store
from subscribers.validation import email_hash

SIGNUP = Consent("signup", "article", "If you want ... fill out the form", "203.0.113.7", "UA/1")
CONFIRM = Consent("confirm", "confirmation link", ip="203.0.113.8", user_agent="UA/2")
PREFS = Consent("preferences", "preferences page")
IMPORT = Consent("import", "import:list.csv", "webinar signup sheet")


@pytest.fixture
def clock() -> Clock:
    return Clock(dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC))


@pytest.fixture
def store(db_url: str, clock: Clock) -> Iterator[Store]:
    with Store(db_url, clock=clock) as st:
        yield st


def confirm_latest(store: Store, email: str) -> None:
    """Follow the link of the latest queued confirmation email for ``email``."""
    _claim, items = store.claim_confirmations(limit=1000)
    [item] = [i for i in items if i.email == email]
    store.confirm(item.subscriber_id, email, CONFIRM, request_id=item.request_id)


def active(store: Store, email: str, topics: tuple[str, ...] = ("updates", "offers")) -> int:
    outcome = store.signup(email, "", list(topics), SIGNUP)
    assert outcome.subscriber_id is not None
    store.confirm(outcome.subscriber_id, email, CONFIRM)
    return outcome.subscriber_id


# ---- signup and uniqueness -------------------------------------------------------------


def test_signup_stores_a_pending_subscriber_with_consent_and_event(store: Store) -> None:
    outcome = store.signup("Ann.Lee@Example.COM", "Ann", ["updates"], SIGNUP)
    assert (outcome.action, outcome.send_confirmation) == ("new", True)
    sub = store.get(outcome.subscriber_id)
    assert sub is not None
    assert (sub.email, sub.name, sub.status, sub.topics) == (
        "Ann.Lee@example.com",
        "Ann",
        "pending",
        ("updates",),
    )
    assert sub.created_at.tzinfo is not None and sub.confirmed_at is None
    [consent] = store.consents_for(sub.id)
    assert consent["kind"] == "signup" and consent["source"] == "article"
    assert consent["ip"] == "203.0.113.7" and consent["user_agent"] == "UA/1"
    assert consent["wording"].startswith("If you want") and consent["topics"] == "updates"
    assert [e["kind"] for e in store.events_for(sub.id)] == ["confirmation_queued"]
    assert store.queued_confirmations() == 1


def test_address_is_unique_regardless_of_case(store: Store) -> None:
    first = store.signup("ann@example.com", "", ["updates"], SIGNUP)
    second = store.signup("ANN@EXAMPLE.COM", "", ["offers"], SIGNUP)
    assert first.subscriber_id == second.subscriber_id
    assert store.count() == 1
    assert store.find("Ann@Example.Com").topics == ("updates",)  # until confirmed
    confirm_latest(store, "ann@example.com")
    assert store.find("Ann@Example.Com").topics == ("offers",)


def test_international_domain_is_one_subscriber_in_either_spelling(store: Store) -> None:
    first = store.signup("leser@bücher.de", "", ["updates"], SIGNUP)
    second = store.signup("leser@xn--bcher-kva.de", "", ["updates"], SIGNUP)
    assert first.subscriber_id == second.subscriber_id
    assert store.get(first.subscriber_id).email == "leser@bücher.de"


@pytest.mark.parametrize(
    ("email", "name", "topics", "field"),
    [
        ("not-an-address", "", ["updates"], "email"),
        (
            "a" * 60 + "@" + "b" * 60 + "." + "c" * 60 + "." + "d" * 60 + "." + "e" * 60 + ".com",
            "",
            ["updates"],
            "email",
        ),
        ("a" * 400 + "@example.com", "", ["updates"], "email"),
        ("ann@example.com\r\nBcc: x@example.net", "", ["updates"], "email"),
        ("ann@example.com", "Ann\r\nBcc: x@example.net", ["updates"], "name"),
        ("ann@example.com", "Ann\x1b[31m", ["updates"], "name"),
        ("ann@example.com", "x" * 101, ["updates"], "name"),
        ("ann@example.com", "", ["gossip"], "topic"),
    ],
    ids=["syntax", "over-254", "over-320", "crlf-email", "crlf-name", "escape", "long", "topic"],
)
def test_bad_signup_input_is_refused_and_changes_nothing(
    store: Store, email: str, name: str, topics: list[str], field: str
) -> None:
    before = snapshot(store)
    with pytest.raises(InvalidInput) as info:
        store.signup(email, name, topics, SIGNUP)
    assert info.value.field == field
    assert snapshot(store) == before


# ---- confirmation ----------------------------------------------------------------------


def test_confirm_activates_once_and_repeated_clicks_change_nothing(store: Store) -> None:
    sid = store.signup("ann@example.com", "", ["updates"], SIGNUP).subscriber_id
    sub, changed = store.confirm(sid, "ann@example.com", CONFIRM)
    assert changed and sub.status == "active" and sub.confirmed_at is not None
    before = snapshot(store)
    again, changed = store.confirm(sid, "ANN@example.com", CONFIRM)
    assert not changed and again.status == "active"
    assert snapshot(store) == before
    kinds = [c["kind"] for c in store.consents_for(sid)]
    assert kinds == ["signup", "confirm"]
    assert store.consents_for(sid)[1]["ip"] == "203.0.113.8"


def test_confirm_refuses_unknown_ids_and_other_addresses(store: Store) -> None:
    sid = store.signup("ann@example.com", "", ["updates"], SIGNUP).subscriber_id
    before = snapshot(store)
    with pytest.raises(NotFound):
        store.confirm(sid + 100, "ann@example.com", CONFIRM)
    with pytest.raises(NotFound):
        store.confirm(sid, "bob@example.com", CONFIRM)
    assert snapshot(store) == before


def test_an_old_confirmation_link_cannot_resubscribe_a_leaver(store: Store) -> None:
    sid = store.signup("ann@example.com", "", ["updates"], SIGNUP).subscriber_id
    store.unsubscribe(sid, source="one-click")
    with pytest.raises(Conflict):
        store.confirm(sid, "ann@example.com", CONFIRM)
    assert store.get(sid).status == "unsubscribed"


def test_signing_up_again_after_leaving_needs_a_new_confirmation(store: Store) -> None:
    sid = active(store, "ann@example.com")
    store.unsubscribe(sid, source="one-click")
    outcome = store.signup("ann@example.com", "", ["offers"], SIGNUP)
    assert (outcome.action, outcome.send_confirmation) == ("resend", True)
    assert store.get(sid).status == "unsubscribed"  # nothing changes until confirmed
    assert list(store.eligible_recipients("offers")) == []
    confirm_latest(store, "ann@example.com")
    assert [r[0] for r in store.eligible_recipients("offers")] == [sid]


def test_repeat_signup_of_an_active_subscriber_changes_nothing_until_confirmed(
    store: Store,
) -> None:
    sid = active(store, "ann@example.com", ("updates",))
    before = snapshot(store)["subscribers"], snapshot(store)["subscriber_topics"]
    outcome = store.signup("ann@example.com", "Mallory", ["offers"], SIGNUP)
    assert (outcome.action, outcome.send_confirmation) == ("resend", True)
    sub = store.get(sid)
    assert (sub.name, sub.topics, sub.status) == ("", ("updates",), "active")
    assert (snapshot(store)["subscribers"], snapshot(store)["subscriber_topics"]) == before
    confirm_latest(store, "ann@example.com")  # the reader followed the new link
    sub = store.get(sid)
    assert (sub.name, sub.topics, sub.status) == ("Mallory", ("offers",), "active")


def test_confirmation_emails_per_address_are_capped(store: Store, clock: Clock) -> None:
    actions = [store.signup("ann@example.com", "", ["updates"], SIGNUP).action for _ in range(7)]
    assert actions == ["new", "resend", "resend", "resend", "resend", "capped", "capped"]
    clock.advance(hours=1, seconds=1)
    assert store.signup("ann@example.com", "", ["updates"], SIGNUP).action == "resend"


# ---- the confirmation queue ------------------------------------------------------------


def test_signups_queue_confirmations_that_a_mailer_claims_under_a_lease(
    store: Store, clock: Clock
) -> None:
    a = store.signup("a@example.com", "Ann", ["updates"], SIGNUP).subscriber_id
    b = store.signup("b@example.com", "", ["updates", "offers"], SIGNUP).subscriber_id
    claim, items = store.claim_confirmations(limit=10)
    assert [(i.subscriber_id, i.email, i.name, i.topics) for i in items] == [
        (a, "a@example.com", "Ann", ("updates",)),
        (b, "b@example.com", "", ("offers", "updates")),
    ]
    assert store.claim_confirmations()[1] == []  # leased
    store.confirmations_sent(claim, [a])
    clock.advance(minutes=3)  # the lease ran out: b was never reported, so it comes back
    claim2, items = store.claim_confirmations()
    assert [i.subscriber_id for i in items] == [b]
    store.confirmations_sent(claim2, [b])
    assert store.queued_confirmations() == 0
    assert store.events_for(a)[-1]["kind"] == "confirmation_sent"


def test_failed_confirmations_back_off_then_give_up(store: Store, clock: Clock) -> None:
    sid = store.signup("a@example.com", "", ["updates"], SIGNUP).subscriber_id
    for attempt in range(8):
        claim, items = store.claim_confirmations()
        assert [i.subscriber_id for i in items] == [sid], attempt
        retried = store.confirmation_failed(claim, sid, "HTTP 503", retry=True)
        assert retried is (attempt < 7)
        assert store.claim_confirmations()[1] == []  # not due yet
        clock.advance(hours=1, seconds=1)
    assert store.queued_confirmations() == 0
    last = store.events_for(sid)[-1]
    assert (last["kind"], last["detail"]) == ("confirmation_failed", "HTTP 503")


def test_a_permanent_failure_is_not_retried(store: Store) -> None:
    sid = store.signup("a@example.com", "", ["updates"], SIGNUP).subscriber_id
    claim, _ = store.claim_confirmations()
    assert store.confirmation_failed(claim, sid, "invalid address", retry=False) is False
    assert store.queued_confirmations() == 0


def test_queued_confirmations_for_leavers_and_suppressed_are_dropped(store: Store) -> None:
    a = store.signup("a@example.com", "", ["updates"], SIGNUP).subscriber_id
    store.signup("b@example.com", "", ["updates"], SIGNUP)
    c = store.signup("c@example.com", "", ["updates"], SIGNUP).subscriber_id
    store.unsubscribe(a, source="one-click")
    store.suppress("b@example.com", "complained")
    _, items = store.claim_confirmations()
    assert [i.subscriber_id for i in items] == [c]
    assert store.queued_confirmations() == 1


def test_a_new_request_replaces_a_claimed_one(store: Store) -> None:
    sid = store.signup("a@example.com", "", ["updates"], SIGNUP).subscriber_id
    claim, _ = store.claim_confirmations()
    store.signup("a@example.com", "", ["offers"], SIGNUP)  # signs up again meanwhile
    store.confirmations_sent(claim, [sid])  # the old batch must not unqueue the new request
    _, items = store.claim_confirmations()
    assert [(i.subscriber_id, i.topics) for i in items] == [(sid, ("offers",))]


def test_claims_can_be_limited_to_some_subscribers(store: Store) -> None:
    store.signup("a@example.com", "", ["updates"], SIGNUP)
    b = store.signup("b@example.com", "", ["updates"], SIGNUP).subscriber_id
    _, items = store.claim_confirmations(ids=[b])
    assert [i.subscriber_id for i in items] == [b]
    assert store.queued_confirmations() == 2


# ---- unsubscribe and preferences -------------------------------------------------------


def test_unsubscribe_is_immediate_and_idempotent(store: Store, clock: Clock) -> None:
    sid = active(store, "ann@example.com")
    sub = store.unsubscribe(sid, source="one-click")
    assert sub.status == "unsubscribed" and sub.unsubscribed_at == clock.now
    before = snapshot(store)
    clock.advance(minutes=5)
    assert store.unsubscribe(sid, source="one-click").unsubscribed_at == sub.unsubscribed_at
    assert snapshot(store) == before
    assert store.unsubscribe(sid + 1000, source="one-click") is None


def test_preferences_change_topics_and_name(store: Store) -> None:
    sid = active(store, "ann@example.com")
    sub = store.update_preferences(sid, topics=["offers"], name="Ann B", consent=PREFS)
    assert (sub.topics, sub.name, sub.status) == (("offers",), "Ann B", "active")
    assert [r[0] for r in store.eligible_recipients("updates")] == []


def test_choosing_no_topics_unsubscribes_and_choosing_again_resubscribes(store: Store) -> None:
    sid = active(store, "ann@example.com")
    assert store.update_preferences(sid, topics=[], consent=PREFS).status == "unsubscribed"
    sub = store.update_preferences(sid, topics=["updates"], consent=PREFS)
    assert sub.status == "active" and sub.topics == ("updates",)
    assert store.consents_for(sid)[-1]["kind"] == "preferences"


def test_preferences_never_resubscribe_a_suppressed_address(store: Store) -> None:
    sid = active(store, "ann@example.com")
    store.suppress("ann@example.com", "complained")
    before = snapshot(store)
    with pytest.raises(Conflict):
        store.update_preferences(sid, topics=["updates"], consent=PREFS)
    assert snapshot(store) == before


# ---- suppression -----------------------------------------------------------------------


def test_suppressed_addresses_get_no_mail_and_do_not_resubscribe_silently(store: Store) -> None:
    sid = active(store, "ann@example.com")
    assert store.suppress("ANN@example.com", "bounced", source="postmark") is True
    assert store.suppress("ann@example.com", "bounced") is False
    assert store.get(sid).status == "bounced"
    assert list(store.eligible_recipients("updates")) == []
    before = snapshot(store)
    outcome = store.signup("ann@example.com", "", ["updates"], SIGNUP)
    assert (outcome.action, outcome.send_confirmation) == ("suppressed", False)
    after = snapshot(store)
    assert after["subscribers"] == before["subscribers"]
    assert after["consents"] == before["consents"]
    with pytest.raises(Conflict):
        store.confirm(sid, "ann@example.com", CONFIRM)


def test_suppression_keeps_only_a_hash(store: Store) -> None:
    store.suppress("stranger@example.com", "manual")
    assert store.suppression_reason("Stranger@Example.com") == "manual"
    rows = snapshot(store)["suppressions"]
    assert len(rows) == 1 and "stranger" not in str(rows)
    assert rows[0][0] == email_hash("stranger@example.com")


# ---- the send pipeline's queries -------------------------------------------------------


def test_eligible_recipients_streams_confirmed_topic_subscribers_in_id_order(store: Store) -> None:
    ids = [active(store, f"reader{i}@example.com") for i in range(7)]
    offers_only = active(store, "offers@example.com", ("offers",))
    store.signup("pending@example.com", "", ["updates"], SIGNUP)
    store.unsubscribe(ids[1], source="one-click")
    store.suppress("reader2@example.com", "complained")
    store.mark_status(ids[3], "bounced")
    got = store.eligible_recipients("updates", page_size=2)
    assert iter(got) is got  # a generator: pages are read as the caller goes
    expected = [i for i in ids if i not in (ids[1], ids[2], ids[3])]
    assert [r[0] for r in got] == expected
    first = next(store.eligible_recipients("updates"))
    assert first == (ids[0], "reader0@example.com", "", store.get(ids[0]).link_key)
    assert len(first[3]) == 22  # every new row gets its own random link key
    assert offers_only in {r[0] for r in store.eligible_recipients("offers")}


def test_still_eligible_rechecks_a_batch(store: Store) -> None:
    a, b, c = (active(store, f"{n}@example.com") for n in "abc")
    store.unsubscribe(b, source="one-click")
    store.suppress("c@example.com", "bounced")
    assert store.still_eligible([a, b, c, 9999], "updates") == {a}
    assert store.still_eligible([], "updates") == set()
    with pytest.raises(InvalidInput):
        store.still_eligible([a], "gossip")


def test_mark_status_by_id_or_email(store: Store) -> None:
    sid = store.signup("ann@example.com", "", ["updates"], SIGNUP).subscriber_id
    assert store.mark_status(sid, "active", reason="admin") is True
    assert store.get(sid).confirmed_at is not None
    assert store.mark_status("ANN@example.com", "complained") is True
    assert store.get(sid).status == "complained"
    assert store.mark_status("nobody@example.com", "bounced") is False
    with pytest.raises(InvalidInput):
        store.mark_status(sid, "deleted")


# ---- administration --------------------------------------------------------------------


def test_add_many_reports_added_existing_and_suppressed(store: Store) -> None:
    active(store, "old@example.com")
    store.suppress("gone@example.com", "bounced")
    rows = [
        NewSubscriber("new@example.com", "New", ("offers",), line=2),
        NewSubscriber("OLD@example.com", "", (), line=3),
        NewSubscriber("gone@example.com", "", (), line=4),
    ]
    before = snapshot(store)
    dry = store.add_many(rows, confirmed=True, consent=IMPORT, dry_run=True)
    assert [r.outcome for r in dry] == ["added", "exists", "suppressed"]
    assert snapshot(store) == before
    results = store.add_many(rows, confirmed=True, consent=IMPORT)
    assert [r.outcome for r in results] == ["added", "exists", "suppressed"]
    new = store.get(results[0].subscriber_id)
    assert (new.status, new.topics, new.name) == ("active", ("offers",), "New")
    assert store.consents_for(new.id)[0]["wording"] == "webinar signup sheet"


def test_import_never_resubscribes_a_leaver(store: Store) -> None:
    sid = active(store, "ann@example.com")
    store.unsubscribe(sid, source="one-click")
    [result] = store.add_many([NewSubscriber("ann@example.com")], confirmed=True, consent=IMPORT)
    assert result.outcome == "exists" and store.get(sid).status == "unsubscribed"


def test_remove_unsubscribes_and_erase_forgets_all_but_a_hash(store: Store) -> None:
    sid = active(store, "ann@example.com")
    other = active(store, "bob@example.com")
    assert store.remove("ann@example.com") is True
    assert store.get(sid).status == "unsubscribed"
    assert store.remove("ann@example.com", erase=True) is True
    assert store.get(sid) is None and store.consents_for(sid) == [] and store.events_for(sid) == []
    tables = snapshot(store)
    assert "ann@example.com" not in str(tables)
    assert [row[0] for row in tables["suppressions"]] == [email_hash("ann@example.com")]
    assert store.get(other) is not None
    assert store.signup("ann@example.com", "", ["updates"], SIGNUP).action == "suppressed"
    assert store.count() == 1


def test_export_holds_everything_about_a_subscriber(store: Store) -> None:
    sid = active(store, "ann@example.com", ("updates",))
    [record] = list(store.export_records(email="ANN@example.com"))
    assert record["id"] == sid and record["status"] == "active" and record["topics"] == ["updates"]
    assert [c["kind"] for c in record["consents"]] == ["signup", "confirm"]
    assert record["consents"][0]["ip"] == "203.0.113.7"
    assert "confirmed" in [e["kind"] for e in record["events"]]
    assert record["suppressed"] is False
    assert len(list(store.export_records())) == 1


def test_stats_counts_by_status_and_topic(store: Store, clock: Clock) -> None:
    active(store, "a@example.com", ("updates",))
    active(store, "b@example.com")
    store.signup("c@example.com", "", ["offers"], SIGNUP)
    clock.advance(days=8)
    stats = store.stats()
    assert stats.total == 3 and stats.by_status["active"] == 2 and stats.by_status["pending"] == 1
    assert stats.active_by_topic == {"updates": 2, "offers": 1}
    assert stats.pending_expired == 1 and stats.signups_7d == 0


def test_iter_subscribers_filters_and_pages(store: Store) -> None:
    for i in range(5):
        active(store, f"r{i}@example.com", ("updates",) if i % 2 else ("offers",))
    got = list(store.iter_subscribers(topic="updates", page_size=1))
    assert [s.email for s in got] == ["r1@example.com", "r3@example.com"]
    assert len(list(store.iter_subscribers(status="active", page_size=2))) == 5
    assert store.count("active") == 5


# ---- engine details --------------------------------------------------------------------


def test_sqlite_runs_in_wal_with_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 'var' / 'n.db'}") as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    assert (tmp_path / "var" / "n.db").is_file()


def test_plain_postgresql_urls_use_psycopg_3() -> None:
    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    with pytest.raises(ConfigError):
        normalise_url("mysql://u@h/db")
    with pytest.raises(ConfigError):
        normalise_url("not a url")


@pytest.mark.postgres
def test_plain_postgresql_url_reaches_the_real_server(pg_url: str) -> None:
    with pg_schema(pg_url) as url:
        plain = url.replace("postgresql+psycopg://", "postgresql://")
        with Store(plain) as store:
            assert store.dialect == "postgresql"
            assert store.signup("a@example.com", "", ["updates"], SIGNUP).action == "new"


def test_an_unreachable_database_is_a_clear_error() -> None:
    with pytest.raises(DatabaseUnavailable, match="unavailable"):
        Store("postgresql://postgres@127.0.0.1:1/nothing")


def test_timestamps_are_stored_as_utc(store: Store) -> None:
    sid = store.signup("ann@example.com", "", ["updates"], SIGNUP).subscriber_id
    with store.engine.connect() as conn:
        raw = conn.execute(sa.select(s.subscribers.c.created_at)).scalar_one()
    assert raw.tzinfo == dt.UTC
    assert store.get(sid).created_at == dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
