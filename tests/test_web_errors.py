"""Error handling: friendly HTML pages, JSON for JSON clients, never a trace."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from helpers import snapshot

from pipeline.errors import ConfigError
from subscribers.errors import DatabaseUnavailable
from subscribers.store import Store
from subscribers.web import MAX_BODY

FORM = "application/x-www-form-urlencoded"
JSON = {"Accept": "application/json"}


def assert_friendly(resp: object, status: int) -> str:
    assert resp.status_code == status
    body = resp.get_data(as_text=True)
    assert resp.mimetype == "text/html"
    assert "<h1>" in body and "Traceback" not in body and 'File "' not in body
    return body


def test_healthz(client: FlaskClient) -> None:
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.json == {"status": "ok"}


def test_healthz_is_503_when_the_database_is_down(
    client: FlaskClient, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down() -> None:
        raise DatabaseUnavailable("the subscriber database is unavailable: connection refused")

    monkeypatch.setattr(store, "ping", down)
    resp = client.get("/healthz", headers=JSON)
    assert resp.status_code == 503 and resp.json["error"]["status"] == 503
    assert "refused" not in resp.get_data(as_text=True)  # no internals to visitors


def test_unknown_page_is_a_friendly_404(client: FlaskClient) -> None:
    assert_friendly(client.get("/wp-admin.php"), 404)
    resp = client.get("/nothing", headers=JSON)
    assert resp.status_code == 404 and resp.json["error"]["status"] == 404


def test_wrong_method_is_405_with_allow(client: FlaskClient) -> None:
    resp = client.delete("/subscribe")
    assert_friendly(resp, 405)
    assert "POST" in resp.headers["Allow"]
    assert client.post("/healthz").status_code == 405
    assert client.put("/confirm/abc").status_code == 405


def test_oversized_bodies_are_413_and_change_nothing(client: FlaskClient, store: Store) -> None:
    before = snapshot(store)
    big = b"email=ann%40example.com&name=" + b"x" * (MAX_BODY + 1)
    assert_friendly(client.post("/subscribe", data=big, content_type=FORM), 413)
    resp = client.post(
        "/subscribe", data=b'{"email": "' + b"x" * MAX_BODY + b'"}', content_type="application/json"
    )
    assert resp.status_code == 413 and resp.json["error"]["status"] == 413
    assert snapshot(store) == before


def test_a_chunked_body_without_length_is_capped_too(client: FlaskClient, store: Store) -> None:
    import io

    before = snapshot(store)
    body = io.BytesIO(b"email=a%40example.com&name=" + b"y" * (MAX_BODY * 2))
    resp = client.post(
        "/subscribe",
        input_stream=body,
        content_type=FORM,
        headers={"Transfer-Encoding": "chunked"},
    )
    assert resp.status_code in (400, 413)
    assert snapshot(store) == before


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"email=ann@example.com&name=\xff\xfe", FORM),
        (b"email=ann%40example.com&name=Ann%FF", FORM),
        (b"email=%C3%28@example.com", FORM),
        (b'{"email": "ann@example.com", "name": "\xff"}', "application/json"),
    ],
    ids=["raw-bytes", "percent-escaped", "bad-sequence", "json"],
)
def test_non_utf8_bodies_are_400_and_change_nothing(
    client: FlaskClient, store: Store, body: bytes, content_type: str
) -> None:
    before = snapshot(store)
    resp = client.post("/subscribe", data=body, content_type=content_type)
    assert resp.status_code == 400
    assert "UTF-8" in resp.get_data(as_text=True)
    assert snapshot(store) == before


def test_non_utf8_multipart_is_400(client: FlaskClient, store: Store) -> None:
    boundary = "XyZ"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="email"\r\n\r\n'.encode()
        + b"ann\xff@example.com\r\n"
        + f"--{boundary}--\r\n".encode()
    )
    before = snapshot(store)
    resp = client.post(
        "/subscribe", data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    assert resp.status_code == 400 and snapshot(store) == before


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'"ann@example.com"', b""],
    ids=["broken", "array", "str", "empty"],
)
def test_malformed_json_is_a_400_json_error(client: FlaskClient, body: bytes) -> None:
    resp = client.post("/subscribe", data=body, content_type="application/json")
    assert resp.status_code == 400 and resp.json["error"]["message"]


def test_unsupported_content_type_is_415(client: FlaskClient) -> None:
    resp = client.post("/subscribe", data="email=a@example.com", content_type="text/plain")
    assert_friendly(resp, 415)


def test_too_many_form_fields_is_400(client: FlaskClient) -> None:
    body = "&".join(f"f{i}=x" for i in range(200)).encode()
    assert client.post("/subscribe", data=body, content_type=FORM).status_code == 400


def test_an_unexpected_error_is_a_generic_500_without_details(
    client: FlaskClient, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(store, "signup", boom)
    body = assert_friendly(client.post("/subscribe", data={"email": "a@example.com"}), 500)
    assert "secret internal detail" not in body and "RuntimeError" not in body
    resp = client.post("/subscribe", json={"email": "a@example.com"})
    assert resp.status_code == 500 and "secret" not in resp.get_data(as_text=True)


def test_a_server_side_pipeline_error_is_500_without_details(
    client: FlaskClient, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def misconfigured(*args: object, **kwargs: object) -> None:
        raise ConfigError("POSTMARK_SERVER_TOKEN missing")

    monkeypatch.setattr(store, "signup", misconfigured)
    body = assert_friendly(client.post("/subscribe", data={"email": "a@example.com"}), 500)
    assert "POSTMARK" not in body


def test_database_down_during_signup_is_503(
    client: FlaskClient, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def locked(*args: object, **kwargs: object) -> None:
        raise DatabaseUnavailable("database is locked")

    monkeypatch.setattr(store, "signup", locked)
    body = assert_friendly(client.post("/subscribe", data={"email": "a@example.com"}), 503)
    assert "locked" not in body


def test_error_pages_escape_what_visitors_send(client: FlaskClient) -> None:
    resp = client.post("/subscribe", data={"email": "<script>alert(1)</script>@x.com"})
    body = resp.get_data(as_text=True)
    assert resp.status_code == 400 and "<script>alert(1)</script>" not in body


def test_security_headers_on_every_page(client: FlaskClient) -> None:
    for resp in (client.get("/subscribe"), client.get("/nope")):
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
