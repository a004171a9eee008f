"""The studio's pages and endpoints through Flask's test client: what they show, what
they refuse, and that the only write is a test send that records nothing."""

from __future__ import annotations

import email
import json
import mailbox
import re
from collections.abc import Iterator
from email import policy
from pathlib import Path

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from pipeline.settings import Settings, load_settings
from pipeline.studio import Workspace, create_app
from pipeline.studio.security import Guard
from subscribers.models import Consent, NewSubscriber
from subscribers.store import Store

HINGE = "2026-11-23-hip-hinge.md"


@pytest.fixture
def workspace(settings: Settings) -> Iterator[Workspace]:
    ws = Workspace(settings)
    yield ws
    ws.close()


@pytest.fixture
def app(workspace: Workspace) -> Flask:
    return create_app(workspace, Guard("127.0.0.1"))


def csrf(app: Flask) -> str:
    return app.extensions["studio.guard"].token


def outbox(settings: Settings) -> list:
    if not settings.outbox_dir.exists():
        return []
    box = mailbox.Maildir(settings.outbox_dir, factory=None, create=False)
    return [
        email.message_from_bytes(box.get_bytes(key), policy=policy.default)
        for key in box.iterkeys()
    ]


def page(client: FlaskClient, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.text
    return response.text


# ---- index -------------------------------------------------------------------------------


def test_index_lists_every_module_newest_first_with_its_check_result(
    client: FlaskClient, settings: Settings
) -> None:
    long = settings.content_dir / "2026-12-01-long-subject.md"
    long.write_text(
        "---\ntitle: " + "A very long subject line that keeps going " * 3 + "\n"
        "date: 2026-12-01\nkind: update\n---\nBody with a [bad link](/about).\n"
    )
    (settings.content_dir / "2026-12-05-broken.md").write_text("---\ntitle: [oops\n---\nBody\n")
    html = page(client, "/")
    rows = html.split("<tr data-key=")[1:]
    assert [r.split('"')[1] for r in rows] == [
        "broken",
        "long-subject",
        "hip-hinge",
        "bulletproof-back-program",
        "welcome/three-mistakes",  # the sequence's steps, under their own heading
        "welcome/welcome",
    ]
    assert "<h1>Sequence: welcome <small>2</small></h1>" in html
    assert '<a href="/m/hip-hinge">Master the Hip Hinge' in rows[2]
    assert re.search(r">\d\d\.\d KB<", rows[2]) and 'class="count ok">ok' in rows[2]
    assert "update" in rows[2] and "updates" in rows[2] and "2026-11-23" in rows[2]
    assert '"count error">1 error<' in rows[1] and '"count warning">1 warning<' in rows[1]
    assert '"count error">1 error<' in rows[0] and "2026-12-05-broken.md:3" in rows[0]
    assert all("draft" in r for r in rows)  # nothing sent; no store needed for that


def test_index_says_what_was_sent(client: FlaskClient, settings: Settings) -> None:
    from subscribers.ledger import Ledger

    with Store.from_settings(settings) as store:
        Ledger(store).open_campaign(
            slug="hip-hinge", topic="updates", subject="s", content_hash="h", provider="outbox"
        )
    html = page(client, "/")
    hinge = html.split('<tr data-key="hip-hinge"')[1].split("</tr>")[0]
    assert "sent 0 (" in hinge
    offer = html.split('<tr data-key="bulletproof-back-program"')[1].split("</tr>")[0]
    assert "draft" in offer


def test_a_sequence_step_has_its_page(client: FlaskClient) -> None:
    html = page(client, "/m/welcome/welcome")
    assert "Welcome to Hinge Strength: start with your hips" in html
    assert "Thanks for confirming" in html  # the text tab


def test_template_problems_show_on_the_index(client: FlaskClient, settings: Settings) -> None:
    base = settings.templates_dir / "email" / "base.txt.j2"
    base.write_text(base.read_text() + "\n{% if %}\n")
    html = page(client, "/")
    assert "Template problems" in html and "base.txt.j2:" in html


# ---- module page ---------------------------------------------------------------------------


def test_module_page_shows_the_email_inbox_row_clip_meter_and_checks(
    client: FlaskClient,
) -> None:
    html = page(client, "/m/hip-hinge")
    assert '<iframe class="email" src="/email/hip-hinge?' in html
    assert 'sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox"' in html
    assert '<span class="from">Coach Sam at Hinge Strength</span>' in html
    assert "Master the hip hinge — protect &amp; strengthen your lower back" in html
    assert '<span class="snippet">Learning to hinge from the hips puts lifting stress' in html
    kb = float(re.search(r'<meter[^>]* value="([\d.]+)"', html).group(1))
    assert 10 < kb < 60 and "KB of 102 KB" in html and "Gmail shows it whole" in html
    assert "newsletter check hip-hinge</code> passes" in html
    assert "Hi Sample," in html  # the text tab
    assert "Subject: Master the hip hinge" in html and "List-Unsubscribe-Post:" in html
    for control in ("Phone", "Desktop", "Light", "Dark", "Inverted", "HTML", "Text", "Source"):
        assert f">{control}</button>" in html


def test_check_messages_link_to_the_editor(settings: Settings, test_env: dict) -> None:
    config = settings.config_path
    config.write_text(config.read_text() + '\n[studio]\neditor = "vscode"\n')
    path = settings.content_dir / HINGE
    path.write_text(path.read_text().replace("(https://", "(/relative-", 1))
    ws = Workspace(load_settings(config, env=test_env))
    try:
        html = page(create_app(ws).test_client(), "/m/hip-hinge")
    finally:
        ws.close()
    line = next(
        n for n, text in enumerate(path.read_text().splitlines(), 1) if "(/relative-" in text
    )
    assert f'href="vscode://file/{path.resolve()}:{line}">content/{HINGE}:{line}</a>' in html
    assert "is not http(s) or mailto" in html


def test_without_an_editor_links_open_the_studios_file_view(client: FlaskClient) -> None:
    html = page(client, "/m/hip-hinge")
    assert 'href="/file?path=' in html
    view = page(client, "/file?path=" + html.split('href="/file?path=')[1].split('"')[0])
    assert 'id="L3"' in view and "date: 2026-11-23" in view


def test_file_view_shows_only_content_templates_and_settings(
    client: FlaskClient, settings: Settings
) -> None:
    assert client.get(f"/file?path={settings.content_dir / HINGE}").status_code == 200
    assert client.get(f"/file?path={settings.config_path}").status_code == 200
    for outside in ("/etc/passwd", f"{settings.content_dir}/../newsletter.toml.bak", "x"):
        assert client.get(f"/file?path={outside}").status_code == 404


def test_a_broken_module_shows_file_line_and_how_to_fix(
    client: FlaskClient, settings: Settings
) -> None:
    path = settings.content_dir / HINGE
    path.write_text(path.read_text().replace("kind: update", "kind: newsletter"))
    html = page(client, "/m/hip-hinge")
    assert f"content/{HINGE}:4</a>: kind: expected one of update, offer" in html
    assert 'class="hit">   4 | kind: newsletter' in html
    assert '<iframe class="email"' not in html and 'data-state="failure"' in html
    assert client.get("/email/hip-hinge").status_code == 409


def test_an_unknown_module_is_a_404_page(client: FlaskClient) -> None:
    response = client.get("/m/nothing-here")
    assert response.status_code == 404
    assert "No content module &#39;nothing-here&#39;" in response.text


def test_readers_change_the_rendering(client: FlaskClient) -> None:
    tricky = page(client, "/m/hip-hinge?reader=tricky&tab=text")
    assert "Hi &lt;Ava&gt;," in tricky  # the text part, escaped once for the page
    frame = client.get("/email/hip-hinge?reader=tricky").text
    assert "Hi &lt;Ava&gt;," in frame and "<Ava>" not in frame
    assert "Hi there," in client.get("/email/hip-hinge?reader=no-name").text
    offers = page(client, "/m/hip-hinge?reader=topic-offers")
    assert "(<code>--topic offers</code>)" in offers and "subscribed to Program offers" in offers


def test_a_real_subscriber_is_read_from_the_store_and_never_changed(
    client: FlaskClient, settings: Settings
) -> None:
    with Store.from_settings(settings) as store:
        store.add_many(
            [NewSubscriber("ann@example.com", "Ann Lee", ("offers",))],
            confirmed=True,
            consent=Consent("admin", "test"),
        )
        before = store.export_records(email="ann@example.com")
        before = list(before)
    html = page(client, "/m/hip-hinge?reader=subscriber&email=Ann@Example.com")
    assert "As <strong>Ann Lee</strong> &lt;ann@example.com&gt;" in html
    assert "would not reach them: they are not subscribed to &#39;updates&#39;" in html
    assert "Hi Ann," in html
    offer = page(client, "/m/bulletproof-back-program?reader=subscriber&email=ann@example.com")
    assert "A send of this module reaches them." in offer
    missing = page(client, "/m/hip-hinge?reader=subscriber&email=nobody@example.com")
    assert "no subscriber nobody@example.com in the store" in missing and "Hi Sample," in missing
    with Store.from_settings(settings) as store:
        assert list(store.export_records(email="ann@example.com")) == before


def test_a_missing_store_is_not_created(client: FlaskClient, settings: Settings) -> None:
    html = page(client, "/m/hip-hinge?reader=subscriber&email=ann@example.com")
    assert "no subscriber store yet" in html
    assert not (settings.var_dir / "newsletter.db").exists()


# ---- the email frame, media -------------------------------------------------------------------


def test_email_frame_is_script_free_and_comes_light_or_dark(
    client: FlaskClient, settings: Settings
) -> None:
    base = settings.templates_dir / "email" / "base.mjml.j2"
    dark_rule = "@media (prefers-color-scheme: dark) { .masthead a { color: #fafafa !important; } }"
    base.write_text(base.read_text().replace("</mj-style>", dark_rule + "\n    </mj-style>"))
    light = client.get("/email/hip-hinge?scheme=light")
    dark = client.get("/email/hip-hinge?scheme=dark")
    assert "script-src" not in light.headers["Content-Security-Policy"]
    assert "default-src 'none'" in light.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in light.headers["Content-Security-Policy"]
    assert "@media (not (min-width: 0px)) { .masthead a { color: #fafafa" in light.text
    assert "@media (min-width: 0px) { .masthead a { color: #fafafa" in dark.text
    note = page(client, "/m/hip-hinge?theme=dark")
    assert 'data-dark-styles="yes"' in note and 'data-theme="dark"' in note


def test_images_under_content_are_served_locally_and_nothing_else(
    client: FlaskClient, settings: Settings
) -> None:
    image = client.get("/media/images/hip-hinge.png")
    assert image.status_code == 200 and image.mimetype == "image/png"
    assert image.data == (settings.content_dir / "images" / "hip-hinge.png").read_bytes()
    (settings.content_dir / "images" / "logo.svg").write_text("<svg onload='alert(1)'/>")
    for bad in ("images/logo.svg", "../newsletter.toml", HINGE, "images/missing.png"):
        assert client.get(f"/media/{bad}").status_code == 404


def test_eml_download_is_the_message_as_sent(client: FlaskClient) -> None:
    response = client.get("/eml/hip-hinge?reader=no-name")
    assert response.mimetype == "message/rfc822"
    assert 'filename="hip-hinge.eml"' in response.headers["Content-Disposition"]
    assert response.data.startswith(b"From: Coach Sam") and b"\r\n\r\n" in response.data


# ---- security: hosts, methods, the test send -------------------------------------------


def test_requests_for_another_host_name_are_refused(client: FlaskClient) -> None:
    assert client.get("/", headers={"Host": "127.0.0.1:8025"}).status_code == 200
    assert client.get("/", headers={"Host": "[::1]:8025"}).status_code == 200
    rebound = client.get("/", headers={"Host": "attacker.example:8025"})
    assert rebound.status_code == 400 and "127.0.0.1 and localhost only" in rebound.text


def test_pages_forbid_framing_and_inline_scripts(client: FlaskClient) -> None:
    headers = client.get("/m/hip-hinge").headers
    assert headers["X-Frame-Options"] == "DENY"
    assert "script-src 'self';" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


def test_the_only_write_endpoint_is_the_test_send(app: Flask) -> None:
    writes = {
        rule.rule
        for rule in app.url_map.iter_rules()
        if set(rule.methods or ()) - {"GET", "HEAD", "OPTIONS"}
    }
    assert writes == {"/send-test/<path:key>"}


def test_send_test_mails_one_marked_message_and_records_nothing(
    app: Flask, client: FlaskClient, settings: Settings
) -> None:
    response = client.post(
        "/send-test/hip-hinge",
        data={"to": "Me@Example.COM", "csrf": csrf(app)},
        headers={"Accept": "application/json", "Origin": "http://localhost"},
    )
    assert response.status_code == 200, response.text
    answer = json.loads(response.text)
    assert answer["ok"] and "test message sent to Me@example.com via outbox" in answer["message"]
    (mail,) = outbox(settings)
    assert mail["Subject"] == "[TEST] Master the hip hinge — protect & strengthen your lower back"
    assert mail["To"] == "Me@example.com"
    assert not (settings.var_dir / "newsletter.db").exists()  # no campaign, no ledger


def test_send_test_as_a_topic_reader_sends_to_that_topic(
    app: Flask, client: FlaskClient, settings: Settings
) -> None:
    response = client.post(
        "/send-test/hip-hinge?reader=topic-offers",
        data={"to": "me@example.com", "csrf": csrf(app)},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200
    (mail,) = outbox(settings)
    assert "<offers.hingestrength.example.com>" in mail["List-Id"]


@pytest.mark.parametrize(
    ("headers", "token", "why"),
    [
        ({}, None, "token is missing"),
        ({}, "forged", "token is missing or out of date"),
        ({"Origin": "https://evil.example"}, "good", "requests from https://evil.example"),
        ({"Origin": "null"}, "good", "requests from null"),
        ({"Sec-Fetch-Site": "cross-site"}, "good", "a cross-site request"),
        ({"Sec-Fetch-Site": "same-site"}, "good", "a same-site request"),
    ],
)
def test_send_test_refuses_cross_site_and_tokenless_posts(
    app: Flask, client: FlaskClient, settings: Settings, headers: dict, token: str | None, why: str
) -> None:
    data = {"to": "victim@example.com"}
    if token:
        data["csrf"] = csrf(app) if token == "good" else token
    response = client.post("/send-test/hip-hinge", data=data, headers=headers)
    assert response.status_code == 403
    assert why in response.text
    assert outbox(settings) == []


def test_send_test_with_a_bad_address_says_so(app: Flask, client: FlaskClient) -> None:
    response = client.post(
        "/send-test/hip-hinge",
        data={"to": "not-an-address", "csrf": csrf(app)},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 400
    assert "not-an-address" in json.loads(response.text)["message"]


def test_send_test_refuses_a_module_with_errors(
    app: Flask, client: FlaskClient, settings: Settings
) -> None:
    path = settings.content_dir / HINGE
    path.write_text(path.read_text().replace("(https://", "(/relative-", 1))
    response = client.post(
        "/send-test/hip-hinge",
        data={"to": "me@example.com", "csrf": csrf(app)},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 422
    assert "error(s), first:" in json.loads(response.text)["message"]
    assert outbox(settings) == []


@responses.activate
def test_send_test_shows_the_providers_answer(project: Path, test_env: dict) -> None:
    responses.post(
        "https://api.postmarkapp.com/email/batch",
        status=401,
        json={"ErrorCode": 10, "Message": "Bad or missing Server API token."},
    )
    env = {**test_env, "NEWSLETTER_PROVIDER": "postmark", "POSTMARK_SERVER_TOKEN": "pm-wrong"}
    ws = Workspace(load_settings(project / "newsletter.toml", env=env))
    app = create_app(ws)
    try:
        response = app.test_client().post(
            "/send-test/hip-hinge",
            data={"to": "me@example.com", "csrf": csrf(app)},
            headers={"Accept": "application/json"},
        )
    finally:
        ws.close()
    message = json.loads(response.text)["message"]
    assert response.status_code == 502
    assert "HTTP 401" in message and "Bad or missing Server API token." in message
    assert "pm-wrong" not in message
    sent = json.loads(responses.calls[0].request.body)
    assert sent[0]["Subject"].startswith("[TEST] ")


def test_no_js_send_test_form_gets_a_page_with_the_answer(app: Flask, client: FlaskClient) -> None:
    response = client.post("/send-test/hip-hinge", data={"to": "me@example.com", "csrf": csrf(app)})
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert "test message sent to me@example.com" in response.text
    assert 'href="/m/hip-hinge?reader=sample">Back to the module' in response.text


# ---- settings follow newsletter.toml ---------------------------------------------------


def test_a_broken_config_is_shown_and_the_last_good_settings_kept(
    workspace: Workspace, client: FlaskClient, settings: Settings
) -> None:
    config = settings.config_path
    good = config.read_text()
    config.write_text(good.replace('name = "Hinge Strength"', 'name = "Hinge Strength'))
    workspace.changed([config])
    html = page(client, "/m/hip-hinge")
    assert "not valid TOML" in html and "keeps the last good settings" in html
    assert "Coach Sam at Hinge Strength" in html  # still rendered
    config.write_text(good.replace('name = "Hinge Strength"', 'name = "Hip Strength"'))
    workspace.changed([config])
    html = page(client, "/")
    assert "not valid TOML" not in html and "Hip Strength <span>studio</span>" in html
