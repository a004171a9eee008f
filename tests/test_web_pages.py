"""/view/<slug> shows a sent module as its email; drafts stay private."""

from __future__ import annotations

import pytest

from pipeline.settings import Settings
from subscribers.ledger import Ledger
from subscribers.store import Store
from subscribers.web import create_app


@pytest.fixture
def client(settings: Settings):
    return create_app(settings).test_client()


def test_view_shows_only_sent_modules(client, settings: Settings) -> None:
    assert client.get("/view/hip-hinge").status_code == 404  # a draft until sent
    with Store.from_settings(settings) as store:
        Ledger(store).open_campaign(
            slug="hip-hinge", topic="updates", subject="s", content_hash="h", provider="outbox"
        )
    reply = client.get("/view/hip-hinge")
    assert reply.status_code == 200
    page = reply.get_data(as_text=True)
    assert "Master the Hip Hinge To Protect" in page
    assert "Hi there," in page and "%%nl:" not in page
    assert 'href="http://127.0.0.1:8000/subscribe"' in page
    assert "http://127.0.0.1:8000/media/images/hip-hinge.png" in page
    assert client.get("/view/nope").status_code == 404
