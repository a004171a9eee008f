"""`newsletter doctor --online`: a harmless API call per provider, answered by a local
server shaped like the provider's documented replies (``provider.api_base_url``), a
real aiosmtpd for SMTP, and the real web app for the one-click unsubscribe POST."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_server import api_server
from dns_server import dns_server
from helpers import RecordingProvider
from smtp_server import Sink, password_check, smtp_server
from test_doctor import DOMAIN, GOOD_ZONE, POSTMARK_ENV, SECRET, SITE, run_doctor, write_config
from werkzeug.serving import make_server

from pipeline.settings import load_settings
from subscribers.web import create_app

TOKEN = "pm-server-token"


def online(config: Path, env: dict[str, str]) -> dict[str, str]:
    with dns_server(GOOD_ZONE) as (server, _):
        _, found = run_doctor(config, env, "--dns-server", server, "--online")
    return found


def provider_config(tmp_path: Path, base: str, lines: str, site: str = SITE) -> Path:
    return write_config(tmp_path, f'{lines}\napi_base_url = "{base}"\nmax_retries = 0', site)


# ---- credentials -----------------------------------------------------------------------


def postmark_routes(stream_type: str = "Broadcasts") -> dict:
    def server(headers: dict[str, str]) -> tuple[int, Any]:
        if headers.get("x-postmark-server-token") != TOKEN:
            return 401, {"ErrorCode": 10, "Message": "Bad or missing Server API token."}
        return 200, {"ID": 1, "Name": "Hinge Strength", "ApiTokens": [TOKEN]}

    def stream(headers: dict[str, str]) -> tuple[int, Any]:
        return 200, {"ID": "broadcast", "ServerID": 1, "MessageStreamType": stream_type}

    return {("GET", "/server"): server, ("GET", "/message-streams/broadcast"): stream}


def test_postmark_token_accepted(tmp_path: Path) -> None:
    with api_server(postmark_routes()) as (base, seen):
        found = online(provider_config(tmp_path, base, 'name = "postmark"'), POSTMARK_ENV)
    assert found["credentials"] == (
        "ok: Postmark accepts the token (server 'Hinge Strength', stream 'broadcast')"
    )
    assert seen == ["GET /server", "GET /message-streams/broadcast"]  # nothing sent


def test_postmark_token_refused(tmp_path: Path) -> None:
    env = {**POSTMARK_ENV, "POSTMARK_SERVER_TOKEN": "wrong"}
    with api_server(postmark_routes()) as (base, _):
        found = online(provider_config(tmp_path, base, 'name = "postmark"'), env)
    assert found["credentials"].startswith(
        "error: postmark refused them (HTTP 401: Bad or missing Server API token.); check "
        "POSTMARK_SERVER_TOKEN"
    )


def test_postmark_missing_or_transactional_stream(tmp_path: Path) -> None:
    routes = postmark_routes()
    del routes[("GET", "/message-streams/broadcast")]
    with api_server(routes) as (base, _):
        missing = online(provider_config(tmp_path, base, 'name = "postmark"'), POSTMARK_ENV)
    assert missing["credentials"].startswith(
        "error: token accepted (server 'Hinge Strength') but Postmark has no message stream"
    )
    with api_server(postmark_routes("Transactional")) as (base, _):
        wrong = online(provider_config(tmp_path, base, 'name = "postmark"'), POSTMARK_ENV)
    assert wrong["credentials"].startswith("warning: token accepted; stream 'broadcast' is Trans")


def bearer(key: str, body: Any) -> Any:
    def route(headers: dict[str, str]) -> tuple[int, Any]:
        if headers.get("authorization") != f"Bearer {key}":
            return 401, {"errors": [{"field": None, "message": "authorization required"}]}
        return 200, body

    return route


@pytest.mark.parametrize(
    ("scopes", "expected"),
    [
        (["mail.send", "user.profile.read"], "ok: SendGrid accepts the key (scope mail.send)"),
        (["user.profile.read"], "error: SendGrid knows the key but it may not send"),
    ],
)
def test_sendgrid_scopes(tmp_path: Path, scopes: list[str], expected: str) -> None:
    routes = {("GET", "/v3/scopes"): bearer("SG.key", {"scopes": scopes})}
    env = {"NEWSLETTER_SECRET_KEY": SECRET, "SENDGRID_API_KEY": "SG.key"}
    with api_server(routes) as (base, _):
        found = online(provider_config(tmp_path, base, 'name = "sendgrid"'), env)
    assert found["credentials"].startswith(expected)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("active", f"ok: Mailgun accepts the key; mg.{DOMAIN} is active"),
        ("unverified", f"error: Mailgun knows mg.{DOMAIN} but its state is 'unverified'"),
    ],
)
def test_mailgun_domain_state(tmp_path: Path, state: str, expected: str) -> None:
    import base64

    good = "Basic " + base64.b64encode(b"api:key-mg").decode()

    def domain(headers: dict[str, str]) -> tuple[int, Any]:
        if headers.get("authorization") != good:
            return 401, {"message": "Invalid private key"}
        return 200, {"domain": {"name": f"mg.{DOMAIN}", "state": state}}

    routes = {("GET", f"/v3/domains/mg.{DOMAIN}"): domain}
    env = {"NEWSLETTER_SECRET_KEY": SECRET, "MAILGUN_API_KEY": "key-mg"}
    lines = f'name = "mailgun"\nmailgun_domain = "mg.{DOMAIN}"'
    with api_server(routes) as (base, _):
        found = online(provider_config(tmp_path, base, lines), env)
    assert found["credentials"].startswith(expected)


def test_mailgun_unknown_domain(tmp_path: Path) -> None:
    env = {"NEWSLETTER_SECRET_KEY": SECRET, "MAILGUN_API_KEY": "key-mg"}
    lines = f'name = "mailgun"\nmailgun_domain = "mg.{DOMAIN}"'
    with api_server({}) as (base, _):
        found = online(provider_config(tmp_path, base, lines), env)
    assert found["credentials"].startswith(f"error: Mailgun has no domain mg.{DOMAIN} in this")


@pytest.mark.parametrize(
    ("account", "expected"),
    [
        (
            {"SendingEnabled": True, "ProductionAccessEnabled": True},
            "ok: SES accepts the keys; sending enabled in eu-west-1",
        ),
        (
            {"SendingEnabled": True, "ProductionAccessEnabled": False},
            "error: SES accepts the keys but the account is in the sandbox in eu-west-1",
        ),
        ({"SendingEnabled": False}, "error: SES accepts the keys but sending is disabled"),
    ],
)
def test_ses_account(tmp_path: Path, account: dict, expected: str) -> None:
    def route(headers: dict[str, str]) -> tuple[int, Any]:
        signed = headers.get("authorization", "").startswith(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"
        )
        if not signed:
            return 403, {"message": "Missing Authentication Token"}
        return 200, {"SendQuota": {"Max24HourSend": 50000.0}, **account}

    env = {
        "NEWSLETTER_SECRET_KEY": SECRET,
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
    }
    lines = 'name = "ses"\nses_region = "eu-west-1"'
    with api_server({("GET", "/v2/email/account"): route}) as (base, _):
        found = online(provider_config(tmp_path, base, lines), env)
    assert found["credentials"].startswith(expected)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("verified", f"ok: Resend accepts the key; {DOMAIN} is verified"),
        ("pending", f"error: Resend accepts the key but {DOMAIN} is pending"),
    ],
)
def test_resend_domain(tmp_path: Path, status: str, expected: str) -> None:
    body = {"data": [{"id": "d91cd9bd", "name": DOMAIN, "status": status, "region": "us-east-1"}]}
    env = {"NEWSLETTER_SECRET_KEY": SECRET, "RESEND_API_KEY": "re_key"}
    with api_server({("GET", "/domains"): bearer("re_key", body)}) as (base, _):
        found = online(provider_config(tmp_path, base, 'name = "resend"'), env)
    assert found["credentials"].startswith(expected)


def test_resend_sending_only_key(tmp_path: Path) -> None:
    def restricted(headers: dict[str, str]) -> tuple[int, Any]:
        message = "This API key is restricted to only send emails"
        return 401, {"statusCode": 401, "message": message, "name": "restricted_api_key"}

    env = {"NEWSLETTER_SECRET_KEY": SECRET, "RESEND_API_KEY": "re_key"}
    with api_server({("GET", "/domains"): restricted}) as (base, _):
        found = online(provider_config(tmp_path, base, 'name = "resend"'), env)
    assert (
        found["credentials"]
        == "ok: Resend accepts the key (a sending-only key: domains not visible)"
    )


@pytest.mark.parametrize(
    ("password", "expected"),
    [
        ("s3cret", "ok: 127.0.0.1:{port} accepts the connection as coach; warning: no TLS"),
        ("wrong", "error: 127.0.0.1:{port} refused the login: check the user and password"),
    ],
)
def test_smtp_login(tmp_path: Path, password: str, expected: str) -> None:
    auth = {"authenticator": password_check("coach", "s3cret"), "auth_require_tls": False}
    with smtp_server(Sink(), **auth) as (host, port):
        env = {
            "NEWSLETTER_SECRET_KEY": SECRET,
            "SMTP_URL": f"smtp://coach:{password}@{host}:{port}",
        }
        found = online(write_config(tmp_path, 'name = "smtp"'), env)
    assert found["credentials"] == expected.format(port=port)


def test_unreachable_api(tmp_path: Path) -> None:
    config = provider_config(tmp_path, "http://127.0.0.1:9", 'name = "postmark"')
    found = online(config, POSTMARK_ENV)
    assert found["credentials"].startswith("error: could not reach http://127.0.0.1:9 (")


# ---- the one-click unsubscribe POST -------------------------------------------------------


@pytest.fixture
def web(tmp_path: Path) -> Iterator[str]:
    """The real web app on 127.0.0.1 (werkzeug, a free port); yields its base URL."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    settings = load_settings(write_config(app_dir), env={"NEWSLETTER_SECRET_KEY": SECRET})
    app = create_app(settings, provider=RecordingProvider())
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        app.extensions["newsletter"].store.close()


def site_at(base: str) -> str:
    return SITE.replace(f"https://news.{DOMAIN}", base)


def test_one_click_post_answers(tmp_path: Path, web: str) -> None:
    found = online(write_config(tmp_path, 'name = "outbox"', site_at(web)), POSTMARK_ENV)
    # the probe's link names nobody: answered like an erased reader's link, nobody unsubscribed
    assert found["one-click unsubscribe"] == f"ok: POST {web}/unsubscribe/<token> answers 410"


def test_one_click_nobody_listening(tmp_path: Path) -> None:
    found = online(
        write_config(tmp_path, 'name = "outbox"', site_at("http://127.0.0.1:9")), POSTMARK_ENV
    )
    assert found["one-click unsubscribe"].startswith(
        "error: POST http://127.0.0.1:9/unsubscribe/<token> got no answer (ConnectionError)"
    )


def test_one_click_redirect_is_an_error(tmp_path: Path) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.send_response(301)
            self.send_header("Location", "https://www.example.com/unsubscribe")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        found = online(write_config(tmp_path, 'name = "outbox"', site_at(base)), POSTMARK_ENV)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert found["one-click unsubscribe"].startswith(
        f"error: POST {base}/unsubscribe/<token> redirects (HTTP 301 to https://www.example.com"
    )
