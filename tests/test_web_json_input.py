"""Absurd JSON to the web app is a 400 with a clear JSON error, never a 500, and changes
nothing: huge numbers, NaN and Infinity, deep nesting, lone surrogates, wrong types.
The signup form on SQLite and PostgreSQL; the webhooks too (Postmark: basic auth only,
so anyone holding its URL can post any body)."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from helpers import RecordingProvider, snapshot
from test_webhook_helpers import POSTMARK_AUTH, WEBHOOK_ENV

from pipeline.settings import load_settings
from subscribers.web import create_app

BIG = "9" * 5000
DEEP = '{"email": "ann@example.com", "extra": ' + "[" * 3000 + "]" * 3000 + "}"
ABSURD = {
    "5000-digit number": '{"email": ' + BIG + "}",
    "5000-digit name": '{"email": "ann@example.com", "name": ' + BIG + "}",
    "1e999": '{"email": "ann@example.com", "name": 1e999}',
    "NaN": '{"email": "ann@example.com", "name": NaN}',
    "Infinity": '{"email": "ann@example.com", "topics": [Infinity]}',
    "-Infinity": '{"email": -Infinity}',
    "3000 levels": DEEP,
    "9 levels": '{"email": "ann@example.com", "x": [[[[[[[[1]]]]]]]]}',
    "lone surrogate": '{"email": "ann@example.com", "name": "\\ud800"}',
    "number as name": '{"email": "ann@example.com", "name": 1e300}',
    "big int as email": '{"email": 99999999999999999999999}',
    "number as topic": '{"email": "ann@example.com", "topics": [1e300]}',
    "object as topics": '{"email": "ann@example.com", "topics": {"updates": true}}',
    "true as email": '{"email": true}',
    "null as form": '{"email": "ann@example.com", "form": null, "name": [1, 2]}',
}


@pytest.fixture
def app(project: Path, test_env: dict[str, str], db_env: dict[str, str]) -> Iterator[Flask]:
    env = {**test_env, **WEBHOOK_ENV, "NEWSLETTER_SIGNUP_RATE_LIMIT": "0", **db_env}
    app = create_app(
        load_settings(project / "newsletter.toml", env=env), provider=RecordingProvider()
    )
    yield app
    app.extensions["newsletter"].store.close()


@pytest.mark.parametrize("body", ABSURD.values(), ids=ABSURD.keys())
def test_absurd_signup_json_is_a_400_json_error_and_changes_nothing(
    app: Flask, body: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = app.extensions["newsletter"].store
    before = snapshot(store)
    with caplog.at_level(logging.ERROR):
        resp = app.test_client().post("/subscribe", data=body, content_type="application/json")
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.is_json and resp.json["error"]["status"] == 400
    message = resp.json["error"]["message"]
    assert message and "Traceback" not in message
    assert snapshot(store) == before
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_the_json_error_says_what_is_wrong(app: Flask) -> None:
    client = app.test_client()

    def message(body: str) -> str:
        return client.post("/subscribe", data=body, content_type="application/json").json["error"][
            "message"
        ]

    assert "not valid JSON" in message(ABSURD["NaN"])
    assert "infinity" in message(ABSURD["5000-digit number"])
    assert "nested too deeply" in message(ABSURD["9 levels"])
    assert "depth" in message(DEEP)
    assert "name" in message(ABSURD["number as name"])


def test_a_sane_json_signup_still_works(app: Flask) -> None:
    resp = app.test_client().post(
        "/subscribe", json={"email": "ann@example.com", "name": "Ann", "topics": ["updates"]}
    )
    assert resp.status_code == 202
    assert app.extensions["newsletter"].store.find("ann@example.com").topics == ("updates",)


WEBHOOK_ABSURD = {
    "5000-digit ID": '{"RecordType": "Bounce", "ID": ' + BIG + "}",
    "NaN": '{"RecordType": "Bounce", "ID": NaN}',
    "3000 levels": '{"RecordType": "Bounce", "x": ' + "[" * 3000 + "]" * 3000 + "}",
    "not UTF-8": b'{"RecordType": "Bounce", "Email": "\xff"}',
}


@pytest.mark.parametrize("body", WEBHOOK_ABSURD.values(), ids=WEBHOOK_ABSURD.keys())
def test_absurd_webhook_json_is_a_400_and_changes_nothing(app: Flask, body: str | bytes) -> None:
    store = app.extensions["newsletter"].store
    before = snapshot(store)
    token = base64.b64encode(":".join(POSTMARK_AUTH).encode()).decode()
    resp = app.test_client().post(
        "/webhooks/postmark",
        data=body,
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
    )
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.is_json and "not valid UTF-8 JSON" in resp.json["error"]["message"]
    assert snapshot(store) == before
