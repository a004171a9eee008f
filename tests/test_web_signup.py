"""POST /subscribe (form and JSON), the hosted page, and GET /confirm/<token>."""

from __future__ import annotations

import time
from pathlib import Path

import itsdangerous.timed
import pytest
from flask.testing import FlaskClient
from helpers import (
    RecordingProvider,
    confirm_link,
    pg_schema,
    read_outbox,
    snapshot,
    text_part,
    unsubscribe_url,
)

from pipeline.errors import PipelineError
from pipeline.providers.base import Status
from pipeline.settings import Settings, load_settings
from subscribers.models import Consent
from subscribers.store import Store
from subscribers.tokens import confirm_token
from subscribers.web import create_app

SITE = "https://hingestrength.example.com"
BASE = "http://127.0.0.1:8000"


def make_settings(project: Path, env: dict[str, str], **extra: str) -> Settings:
    return load_settings(
        project / "newsletter.toml", env={**env, "NEWSLETTER_SIGNUP_RATE_LIMIT": "0", **extra}
    )


@pytest.fixture
def provider(recorder: RecordingProvider) -> RecordingProvider:
    return recorder


def signup(client: FlaskClient, **fields: object) -> object:
    data = {"email": "ann@example.com", "name": "Ann", "topics": ["updates", "offers"]}
    data.update(fields)
    return client.post("/subscribe", data=data, headers={"User-Agent": "TestBrowser/1.0"})


def path_of(url: str) -> str:
    return url.removeprefix(BASE)


# ---- the hosted page -------------------------------------------------------------------


def test_hosted_page_shows_the_form(client: FlaskClient) -> None:
    resp = client.get("/subscribe")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert 'action="/subscribe"' in html  # back to where the page came from
    for field in ('name="email"', 'name="name"', 'value="updates"', 'value="offers"'):
        assert field in html
    assert 'name="website"' in html  # the honeypot
    assert "<script" not in html
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_hosted_page_keeps_a_next_url_only_on_the_site(client: FlaskClient) -> None:
    good = client.get(f"/subscribe?next={SITE}/thanks").get_data(as_text=True)
    assert f'name="next" value="{SITE}/thanks"' in good
    bad = client.get("/subscribe?next=https://evil.example.net/").get_data(as_text=True)
    assert 'name="next"' not in bad


# ---- signing up ------------------------------------------------------------------------


def test_form_signup_stores_pending_with_consent_and_mails_a_confirmation(
    client: FlaskClient, store: Store, provider: RecordingProvider
) -> None:
    resp = signup(client, email="Ann.Lee@Example.COM", topics=["updates"])
    assert resp.status_code == 200
    assert "Check your inbox" in resp.get_data(as_text=True)
    sub = store.find("ann.lee@example.com")
    assert (sub.email, sub.name, sub.status, sub.topics) == (
        "Ann.Lee@example.com",
        "Ann",
        "pending",
        ("updates",),
    )
    [consent] = store.consents_for(sub.id)
    assert consent["source"] == "article" and consent["ip"] == "127.0.0.1"
    assert consent["user_agent"] == "TestBrowser/1.0"
    assert consent["wording"].startswith(
        "If you want to be notified of new content updates and program offers, fill out the form"
    )
    [msg] = provider.to("Ann.Lee@example.com")
    assert confirm_link(msg.text).startswith(f"{BASE}/confirm/")
    assert msg.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert unsubscribe_url(msg.headers["List-Unsubscribe"]).startswith(f"{BASE}/unsubscribe/")
    assert "mailto:" not in msg.headers["List-Unsubscribe"]  # no inbound path configured


def test_topics_default_to_all(client: FlaskClient, store: Store) -> None:
    client.post("/subscribe", data={"email": "bo@example.com"})
    assert store.find("bo@example.com").topics == ("offers", "updates")


def test_unticking_every_topic_is_an_error_not_all(client: FlaskClient, store: Store) -> None:
    before = snapshot(store)
    resp = client.post("/subscribe", data={"email": "bo@example.com", "topics_shown": "1"})
    assert resp.status_code == 400 and "choose at least one topic" in resp.get_data(as_text=True)
    resp = client.post("/subscribe", json={"email": "bo@example.com", "topics": []})
    assert resp.status_code == 400 and resp.json["error"]["field"] == "topics"
    assert snapshot(store) == before


def test_json_signup_answers_202_with_cors_for_the_site(
    client: FlaskClient, store: Store, provider: RecordingProvider
) -> None:
    resp = client.post(
        "/subscribe",
        json={"email": "cy@example.com", "name": "Cy", "topics": ["offers"]},
        headers={"Origin": SITE},
    )
    assert resp.status_code == 202
    assert resp.json["status"] == "pending"
    assert resp.headers["Access-Control-Allow-Origin"] == SITE
    assert "Origin" in resp.headers["Vary"]
    assert store.find("cy@example.com").topics == ("offers",)
    assert len(provider.to("cy@example.com")) == 1


def test_cors_is_only_for_the_sites_origin(client: FlaskClient) -> None:
    resp = client.post(
        "/subscribe", json={"email": "cy@example.com"}, headers={"Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_preflight_from_the_site_is_allowed(client: FlaskClient) -> None:
    headers = {
        "Origin": SITE,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    resp = client.options("/subscribe", headers=headers)
    assert resp.status_code in (200, 204)
    assert resp.headers["Access-Control-Allow-Origin"] == SITE
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    assert resp.headers["Access-Control-Allow-Headers"].lower() == "content-type"
    other = client.options("/subscribe", headers={**headers, "Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_form_signup_redirects_to_next_on_the_site_only(client: FlaskClient) -> None:
    resp = signup(client, next=f"{SITE}/articles/hip-hinge?subscribed=1")
    assert resp.status_code == 303
    assert resp.headers["Location"] == f"{SITE}/articles/hip-hinge?subscribed=1"
    for evil in ("https://evil.example/", "//evil.example/", "javascript:alert(1)", f"{SITE}.evil"):
        resp = signup(client, email="bo@example.com", next=evil)
        assert resp.status_code == 200, evil
        assert "Location" not in resp.headers


def test_the_reply_is_the_same_for_new_pending_active_and_suppressed(
    client: FlaskClient, store: Store
) -> None:
    def reply(email: str) -> tuple[int, str]:
        resp = signup(client, email=email)
        return resp.status_code, resp.get_data(as_text=True)

    def reply_json(email: str) -> tuple[int, object]:
        resp = client.post("/subscribe", json={"email": email})
        return resp.status_code, resp.json

    new = reply("new@example.com")
    pending = reply("new@example.com")
    sid = store.find("new@example.com").id
    store.confirm(sid, "new@example.com", Consent("confirm", "test"))
    already = reply("new@example.com")
    store.suppress("gone@example.com", "bounced")
    suppressed = reply("gone@example.com")
    assert new == pending == already == suppressed
    json_replies = {str(reply_json(e)) for e in ("x@example.com", "new@example.com")}
    assert len(json_replies) == 1


def test_a_second_signup_sends_a_fresh_link(
    client: FlaskClient, provider: RecordingProvider
) -> None:
    signup(client)
    time.sleep(1.05)  # itsdangerous timestamps have one-second resolution
    signup(client)
    first, second = (confirm_link(m.text) for m in provider.to("ann@example.com"))
    assert first != second


def test_suppressed_and_active_addresses_get_no_email(
    client: FlaskClient, store: Store, provider: RecordingProvider
) -> None:
    store.suppress("gone@example.com", "complained")
    signup(client, email="gone@example.com")
    assert provider.to("gone@example.com") == []
    assert store.find("gone@example.com") is None


def test_the_honeypot_stores_nothing_and_looks_like_success(
    client: FlaskClient, store: Store, provider: RecordingProvider
) -> None:
    before = snapshot(store)
    resp = signup(client, website="http://spam.example")
    assert resp.status_code == 200 and "Check your inbox" in resp.get_data(as_text=True)
    assert snapshot(store) == before and provider.sent == []


# ---- bad input: a clear 4xx, and the store unchanged ----------------------------------

BAD_FIELDS = {
    "invalid address": {"email": "ann(at)example.com"},
    "empty address": {"email": "  "},
    "overlong address": {"email": "a" * 64 + "@" + ("b" * 60 + ".") * 4 + "com"},
    "huge address": {"email": "a" * 1000 + "@example.com"},
    "header injection in address": {"email": "ann@example.com\r\nBcc: all@example.net"},
    "CR/LF in name": {"name": "Ann\r\nBcc: all@example.net"},
    "LF in name": {"name": "Ann\nLee"},
    "NUL in name": {"name": "Ann\x00"},
    "escape in name": {"name": "Ann\x1b[2J"},
    "line separator in name": {"name": "Ann\u2028Lee"},
    "bidi override in name": {"name": "Ann\u202eeeL"},
    "overlong name": {"name": "N" * 101},
    "unknown topic": {"topics": ["updates", "gossip"]},
    "unknown form": {"form": "somewhere-else"},
}


@pytest.mark.parametrize("fields", BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_bad_form_input_is_400_and_changes_nothing(
    client: FlaskClient, store: Store, provider: RecordingProvider, fields: dict[str, object]
) -> None:
    before = snapshot(store)
    resp = signup(client, **fields)
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    assert 'class="error"' in html and "<form" in html  # the form again, with the message
    assert "Traceback" not in html
    assert snapshot(store) == before and provider.sent == []


@pytest.mark.parametrize("fields", BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_bad_json_input_is_a_400_json_error_and_changes_nothing(
    client: FlaskClient, store: Store, fields: dict[str, object]
) -> None:
    before = snapshot(store)
    body = {"email": "ann@example.com", "name": "Ann", **fields}
    resp = client.post("/subscribe", json=body, headers={"Origin": SITE})
    assert resp.status_code == 400
    assert resp.json["error"]["status"] == 400 and resp.json["error"]["message"]
    assert resp.headers["Access-Control-Allow-Origin"] == SITE  # the page can read the error
    assert snapshot(store) == before


@pytest.mark.parametrize(
    "body",
    [
        {"email": 42},
        {"email": "ann@example.com", "name": ["x"]},
        {"email": "a@b.co", "topics": 3},
        {"email": "a@b.co", "topics": {"updates": True}},
        {"email": "a@b.co", "form": ["article"]},
        {"email": "a@b.co", "form": {"id": 1}},
        {"email": None},
    ],
    ids=["number", "list-name", "number-topics", "dict-topics", "list-form", "dict-form", "null"],
)
def test_json_fields_of_the_wrong_type_are_400(
    client: FlaskClient, store: Store, body: dict[str, object]
) -> None:
    before = snapshot(store)
    assert client.post("/subscribe", json=body).status_code == 400
    assert snapshot(store) == before


def test_unknown_topic_error_names_the_field(client: FlaskClient) -> None:
    resp = client.post("/subscribe", json={"email": "a@example.com", "topics": ["gossip"]})
    assert resp.json["error"]["field"] == "topics"
    assert "gossip" in resp.json["error"]["message"]


def test_names_may_be_international(client: FlaskClient, store: Store) -> None:
    assert signup(client, email="zoe@example.com", name="  Zoë  O’Brien ").status_code == 200
    assert store.find("zoe@example.com").name == "Zoë O’Brien"
    assert signup(client, email="anna@bücher.de", name="Анна").status_code == 200
    assert store.find("anna@xn--bcher-kva.de").name == "Анна"


def test_rate_limit_per_ip_is_429_with_retry_after(
    project: Path, test_env: dict[str, str], provider: RecordingProvider
) -> None:
    settings = make_settings(project, test_env, NEWSLETTER_SIGNUP_RATE_LIMIT="3/60")
    app = create_app(settings, provider=provider)
    client = app.test_client()
    codes = [signup(client, email=f"r{i}@example.com").status_code for i in range(4)]
    assert codes == [200, 200, 200, 429]
    resp = client.post("/subscribe", json={"email": "r9@example.com"})
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1
    assert resp.json["error"]["status"] == 429
    other = client.post(
        "/subscribe", data={"email": "r8@example.com"}, environ_base={"REMOTE_ADDR": "10.0.0.9"}
    )
    assert other.status_code == 200
    assert app.extensions["newsletter"].store.count() == 4


def test_behind_a_trusted_proxy_the_client_ip_is_the_forwarded_one(
    project: Path, test_env: dict[str, str], provider: RecordingProvider
) -> None:
    settings = make_settings(project, test_env, NEWSLETTER_TRUSTED_PROXIES="1")
    app = create_app(settings, provider=provider)
    headers = {"X-Forwarded-For": "198.51.100.23"}
    app.test_client().post("/subscribe", data={"email": "ip@example.com"}, headers=headers)
    store = app.extensions["newsletter"].store
    assert store.consents_for(store.find("ip@example.com").id)[0]["ip"] == "198.51.100.23"
    with pytest.raises(PipelineError, match="NEWSLETTER_TRUSTED_PROXIES"):
        create_app(make_settings(project, test_env, NEWSLETTER_TRUSTED_PROXIES="yes"))


def test_a_provider_failure_is_a_friendly_503_and_keeps_the_signup(
    client: FlaskClient, store: Store, provider: RecordingProvider
) -> None:
    provider.fail_with = Status.FAILED
    resp = signup(client)
    assert resp.status_code == 503
    html = resp.get_data(as_text=True)
    assert "try again" in html and "Traceback" not in html and "provider said no" not in html
    sub = store.find("ann@example.com")
    assert sub.status == "pending"
    assert "confirmation_failed" in [e["kind"] for e in store.events_for(sub.id)]


# ---- confirming ------------------------------------------------------------------------


def test_the_confirmation_link_activates_and_repeated_clicks_are_fine(
    client: FlaskClient, store: Store, provider: RecordingProvider
) -> None:
    signup(client)
    link = path_of(confirm_link(provider.sent[-1].text))
    resp = client.get(link)
    assert resp.status_code == 200
    assert "You're subscribed" in resp.get_data(as_text=True)
    sub = store.find("ann@example.com")
    assert sub.status == "active" and sub.confirmed_at is not None
    before = snapshot(store)
    again = client.get(link)
    assert again.status_code == 200 and "You're subscribed" in again.get_data(as_text=True)
    assert snapshot(store) == before
    assert [r[0] for r in store.eligible_recipients("updates")] == [sub.id]


def _token_from(
    days_ago: float,
    secret: str,
    sid: int,
    email: str,
    monkeypatch: pytest.MonkeyPatch,
    link_key: str,
) -> str:
    past = time.time() - days_ago * 86400
    with monkeypatch.context() as m:
        m.setattr(itsdangerous.timed.time, "time", lambda: past)
        return confirm_token(secret, sid, email, link_key)


def test_confirmation_links_expire_after_7_days(
    client: FlaskClient, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    signup(client)
    sub = store.find("ann@example.com")
    key = sub.link_key
    fresh = _token_from(6.9, "test-secret-key", sub.id, "ann@example.com", monkeypatch, key)
    stale = _token_from(7.1, "test-secret-key", sub.id, "ann@example.com", monkeypatch, key)
    before = snapshot(store)
    resp = client.get(f"/confirm/{stale}")
    assert resp.status_code == 400 and "expired" in resp.get_data(as_text=True)
    assert snapshot(store) == before
    assert client.get(f"/confirm/{fresh}").status_code == 200


@pytest.mark.parametrize(
    "kind",
    ["tampered", "forged", "garbage", "overlong", "other-address", "other-key", "before-keys"],
)
def test_bad_confirmation_tokens_are_4xx_and_change_nothing(
    client: FlaskClient, store: Store, provider: RecordingProvider, kind: str
) -> None:
    signup(client)
    sub = store.find("ann@example.com")
    sid, key = sub.id, sub.link_key
    good = confirm_link(provider.sent[-1].text).rsplit("/", 1)[1]
    token = {
        "tampered": good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"),
        "forged": confirm_token("someone-elses-key", sid, "ann@example.com", key),
        "garbage": "not-a-token",
        "overlong": "x" * 5000,
        "other-address": confirm_token("test-secret-key", sid, "mallory@example.com", key),
        "other-key": confirm_token("test-secret-key", sid, "ann@example.com", "another-key"),
        "before-keys": confirm_token("test-secret-key", sid, "ann@example.com", ""),
    }[kind]
    before = snapshot(store)
    resp = client.get(f"/confirm/{token}")
    assert 400 <= resp.status_code < 500
    assert "Traceback" not in resp.get_data(as_text=True)
    assert snapshot(store) == before


def test_default_provider_writes_the_confirmation_to_the_outbox_maildir(
    project: Path, test_env: dict[str, str]
) -> None:
    settings = make_settings(project, test_env)
    app = create_app(settings)  # provider from settings: the outbox
    resp = app.test_client().post("/subscribe", data={"email": "dee@example.com"})
    assert resp.status_code == 200
    [msg] = read_outbox(settings.outbox_dir)
    assert msg["To"] == "dee@example.com"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert confirm_link(text_part(msg)).startswith(f"{BASE}/confirm/")


# ---- queue mode: the mailer sends ---------------------------------------------------------


def test_queue_mode_answers_at_once_and_the_mailer_sends(
    project: Path, test_env: dict[str, str], provider: RecordingProvider
) -> None:
    app = create_app(make_settings(project, test_env), provider=provider, confirmations="queue")
    sv = app.extensions["newsletter"]
    assert signup(app.test_client()).status_code == 200
    assert provider.sent == [] and sv.store.queued_confirmations() == 1
    result = sv.sender.drain()
    assert result.sent == [sv.store.find("ann@example.com").id]
    assert confirm_link(provider.sent[0].text).startswith(f"{BASE}/confirm/")
    assert sv.store.queued_confirmations() == 0


def test_queue_mode_hides_a_provider_outage_and_retries_later(
    project: Path, test_env: dict[str, str], provider: RecordingProvider
) -> None:
    app = create_app(make_settings(project, test_env), provider=provider, confirmations="queue")
    sv = app.extensions["newsletter"]
    provider.fail_with, provider.retryable = Status.FAILED, True
    assert signup(app.test_client()).status_code == 200
    result = sv.sender.drain()
    assert result.retrying == [sv.store.find("ann@example.com").id] and provider.sent == []
    assert sv.store.queued_confirmations() == 1  # due again after the backoff


def test_the_mailer_drains_the_queue_into_the_outbox(
    project: Path, test_env: dict[str, str]
) -> None:
    from subscribers.mailer import run_mailer

    settings = make_settings(project, test_env)
    app = create_app(settings, confirmations="queue")
    client, store = app.test_client(), app.extensions["newsletter"].store
    for i in range(3):
        signup(client, email=f"m{i}@example.com")
    assert read_outbox(settings.outbox_dir) == []
    run_mailer(settings, should_stop=lambda: store.queued_confirmations() == 0)
    assert sorted(m["To"] for m in read_outbox(settings.outbox_dir)) == [
        "Ann <m0@example.com>",
        "Ann <m1@example.com>",
        "Ann <m2@example.com>",
    ]


def test_an_unknown_confirmation_mode_is_refused(settings: Settings) -> None:
    with pytest.raises(PipelineError, match="inline"):
        create_app(settings, confirmations="later")


@pytest.mark.postgres
def test_signup_and_confirm_on_postgresql(
    project: Path, test_env: dict[str, str], pg_url: str, provider: RecordingProvider
) -> None:
    with pg_schema(pg_url) as url:
        settings = make_settings(project, test_env, NEWSLETTER_DATABASE_URL=url)
        app = create_app(settings, provider=provider)
        client = app.test_client()
        assert signup(client).status_code == 200
        assert client.get(path_of(confirm_link(provider.sent[-1].text))).status_code == 200
        store = app.extensions["newsletter"].store
        assert store.dialect == "postgresql"
        assert store.find("ann@example.com").status == "active"
        store.close()
