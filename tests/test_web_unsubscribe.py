"""One-click unsubscribe (RFC 8058), the unsubscribe page, and preferences."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient
from helpers import RecordingProvider, snapshot, unsubscribe_url

from subscribers.models import Consent
from subscribers.store import Store
from subscribers.tokens import subscriber_token

SECRET = "test-secret-key"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture
def provider(recorder: RecordingProvider) -> RecordingProvider:
    return recorder


@pytest.fixture
def ann(store: Store) -> int:
    """An active subscriber of both topics."""
    sid = store.signup("ann@example.com", "Ann", ["updates", "offers"], Consent("signup", "t"))
    store.confirm(sid.subscriber_id, "ann@example.com", Consent("confirm", "t"))
    return sid.subscriber_id


def token(store: Store, sid: int, secret: str = SECRET) -> str:
    """The subscriber's real link token (signed over their link key)."""
    sub = store.get(sid)
    return subscriber_token(secret, sid, sub.link_key if sub else "no-such-key")


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


# ---- one-click -------------------------------------------------------------------------


def test_one_click_post_unsubscribes_at_once(client: FlaskClient, store: Store, ann: int) -> None:
    resp = client.post(f"/unsubscribe/{token(store, ann)}", data=ONE_CLICK)
    assert resp.status_code == 200
    assert store.get(ann).status == "unsubscribed"
    assert list(store.eligible_recipients("updates")) == []
    events = store.events_for(ann)
    assert events[-1]["kind"] == "unsubscribed" and events[-1]["detail"] == "one-click"


def test_one_click_is_idempotent(client: FlaskClient, store: Store, ann: int) -> None:
    client.post(f"/unsubscribe/{token(store, ann)}", data=ONE_CLICK)
    before = snapshot(store)
    resp = client.post(f"/unsubscribe/{token(store, ann)}", data=ONE_CLICK)
    assert resp.status_code == 200 and snapshot(store) == before


def test_one_click_works_as_multipart_too(client: FlaskClient, store: Store, ann: int) -> None:
    resp = client.post(
        f"/unsubscribe/{token(store, ann)}", data=ONE_CLICK, content_type="multipart/form-data"
    )
    assert resp.status_code == 200 and store.get(ann).status == "unsubscribed"


def test_one_click_unsubscribes_a_pending_subscriber(client: FlaskClient, store: Store) -> None:
    sid = store.signup("bo@example.com", "", ["updates"], Consent("signup", "t")).subscriber_id
    assert client.post(f"/unsubscribe/{token(store, sid)}", data=ONE_CLICK).status_code == 200
    assert store.get(sid).status == "unsubscribed"


def test_one_click_for_an_erased_subscriber_is_410_and_changes_nothing(
    client: FlaskClient, store: Store, ann: int
) -> None:
    old = token(store, ann)
    store.remove("ann@example.com", erase=True)
    before = snapshot(store)
    resp = client.post(f"/unsubscribe/{old}", data=ONE_CLICK)
    assert resp.status_code == 410 and "no longer valid" in resp.get_data(as_text=True)
    assert snapshot(store) == before


def test_the_url_in_the_confirmation_emails_header_works_for_one_click(
    client: FlaskClient, store: Store, provider: RecordingProvider
) -> None:
    client.post("/subscribe", data={"email": "cy@example.com"})
    [msg] = provider.sent
    assert msg.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = unsubscribe_url(msg.headers["List-Unsubscribe"]).removeprefix("http://127.0.0.1:8000")
    assert client.post(url, data=ONE_CLICK).status_code == 200
    assert store.find("cy@example.com").status == "unsubscribed"


@pytest.mark.parametrize(
    "kind",
    ["forged", "tampered", "garbage", "confirm-token", "overlong", "id only (as before link keys)"],
)
def test_bad_unsubscribe_tokens_are_400_and_change_nothing(
    client: FlaskClient, store: Store, ann: int, kind: str
) -> None:
    from subscribers.tokens import confirm_token

    bad = {
        "forged": token(store, ann, "someone-elses-key"),
        "tampered": token(store, ann)[:-2]
        + ("xx" if not token(store, ann).endswith("xx") else "yy"),
        "garbage": "%00%ff",
        "confirm-token": confirm_token(SECRET, ann, "ann@example.com", store.get(ann).link_key),
        "id only (as before link keys)": subscriber_token(SECRET, ann, ""),
        "overlong": "a" * 3000,
    }[kind]
    before = snapshot(store)
    for resp in (
        client.post(f"/unsubscribe/{bad}", data=ONE_CLICK),
        client.get(f"/unsubscribe/{bad}"),
        client.get(f"/preferences/{bad}"),
        client.post(f"/preferences/{bad}", data={"topics": "updates"}),
    ):
        assert resp.status_code == 400, resp.request.path
        assert "not valid" in resp.get_data(as_text=True)
    assert snapshot(store) == before


def test_a_non_utf8_one_click_body_is_400(client: FlaskClient, store: Store, ann: int) -> None:
    before = snapshot(store)
    resp = client.post(
        f"/unsubscribe/{token(store, ann)}",
        data=b"List-Unsubscribe=One-Click%FF",
        content_type="application/x-www-form-urlencoded",
    )
    assert resp.status_code == 400 and snapshot(store) == before


# ---- the unsubscribe page --------------------------------------------------------------


def test_get_shows_a_button_and_does_not_unsubscribe(
    client: FlaskClient, store: Store, ann: int
) -> None:
    before = snapshot(store)
    resp = client.get(f"/unsubscribe/{token(store, ann)}")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert 'id="unsubscribe"' in html and 'name="List-Unsubscribe" value="One-Click"' in html
    assert 'value="updates"' in html and 'value="offers"' in html  # the topic choices
    assert snapshot(store) == before  # a link scanner's GET changes nothing
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["Cache-Control"] == "no-store"


def test_the_page_button_unsubscribes(client: FlaskClient, store: Store, ann: int) -> None:
    html = client.get(f"/unsubscribe/{token(store, ann)}").get_data(as_text=True)
    action = re.search(r'<form method="post" action="http://127.0.0.1:8000([^"]+)"', html).group(1)
    resp = client.post(action, data=ONE_CLICK)
    assert resp.status_code == 200 and "You are unsubscribed" in resp.get_data(as_text=True)
    assert store.get(ann).status == "unsubscribed"


def test_unsubscribe_page_for_an_unknown_subscriber_is_410(
    client: FlaskClient, store: Store
) -> None:
    resp = client.get(f"/unsubscribe/{token(store, 999)}")
    assert resp.status_code == 410
    assert "This link is no longer valid" in resp.get_data(as_text=True)


# ---- preferences -----------------------------------------------------------------------


def test_preferences_page_shows_current_choices(
    client: FlaskClient, store: Store, ann: int
) -> None:
    html = client.get(f"/preferences/{token(store, ann)}").get_data(as_text=True)
    assert html.count("checked") == 2 and 'value="Ann"' in html and 'name="csrf"' in html


def test_preferences_change_topics_and_name(client: FlaskClient, store: Store, ann: int) -> None:
    page = client.get(f"/preferences/{token(store, ann)}").get_data(as_text=True)
    resp = client.post(
        f"/preferences/{token(store, ann)}",
        data={"csrf": csrf_of(page), "topics": ["offers"], "name": "Ann Lee"},
    )
    assert resp.status_code == 200 and 'id="saved"' in resp.get_data(as_text=True)
    sub = store.get(ann)
    assert (sub.topics, sub.name, sub.status) == (("offers",), "Ann Lee", "active")


def test_unchecking_everything_unsubscribes_and_checking_again_resubscribes(
    client: FlaskClient, store: Store, ann: int
) -> None:
    csrf = csrf_of(client.get(f"/preferences/{token(store, ann)}").get_data(as_text=True))
    client.post(f"/preferences/{token(store, ann)}", data={"csrf": csrf})
    assert store.get(ann).status == "unsubscribed"
    client.post(f"/preferences/{token(store, ann)}", data={"csrf": csrf, "topics": ["updates"]})
    sub = store.get(ann)
    assert sub.status == "active" and sub.topics == ("updates",)


VALID_CSRF = object()
PREF_BAD = {
    "no csrf": {"topics": ["offers"]},
    "forged csrf": {"topics": ["offers"], "csrf": "abc.def"},
    "unknown topic": {"topics": ["gossip"], "csrf": VALID_CSRF},
    "CR/LF in name": {
        "topics": ["offers"],
        "name": "Ann\r\nBcc: x@example.net",
        "csrf": VALID_CSRF,
    },
    "overlong name": {"topics": ["offers"], "name": "x" * 200, "csrf": VALID_CSRF},
}


@pytest.mark.parametrize("fields", PREF_BAD.values(), ids=PREF_BAD.keys())
def test_bad_preference_changes_are_400_and_change_nothing(
    client: FlaskClient, store: Store, ann: int, fields: dict[str, object]
) -> None:
    csrf = csrf_of(client.get(f"/preferences/{token(store, ann)}").get_data(as_text=True))
    data = {k: (csrf if v is VALID_CSRF else v) for k, v in fields.items()}
    before = snapshot(store)
    resp = client.post(f"/preferences/{token(store, ann)}", data=data)
    assert resp.status_code == 400
    assert "Traceback" not in resp.get_data(as_text=True)
    assert snapshot(store) == before


def test_a_csrf_token_only_works_for_its_own_subscriber(
    client: FlaskClient, store: Store, ann: int
) -> None:
    bo = store.signup("bo@example.com", "", ["updates"], Consent("signup", "t")).subscriber_id
    csrf_bo = csrf_of(client.get(f"/preferences/{token(store, bo)}").get_data(as_text=True))
    before = snapshot(store)
    resp = client.post(
        f"/preferences/{token(store, ann)}", data={"csrf": csrf_bo, "topics": "offers"}
    )
    assert resp.status_code == 400 and snapshot(store) == before


def test_preferences_for_an_unknown_subscriber_is_410(client: FlaskClient, store: Store) -> None:
    resp = client.get(f"/preferences/{token(store, 999)}", headers={"Accept": "application/json"})
    assert resp.status_code == 410
    assert resp.json["error"]["message"] == "this link is no longer valid"
