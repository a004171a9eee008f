"""GET /media/<path>: the images of content modules, which sent emails link to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers import RecordingProvider

from pipeline.render import asset_resolver
from pipeline.settings import Settings
from subscribers.web import create_app


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings, provider=RecordingProvider())
    yield app
    app.extensions["newsletter"].store.close()


def test_the_url_the_renderer_links_serves_the_image(
    client: FlaskClient, settings: Settings, project: Path
) -> None:
    url = asset_resolver(settings, preview=False)("images/hip-hinge.png")
    resp = client.get(url.removeprefix(settings.base_url))
    assert resp.status_code == 200
    assert resp.mimetype == "image/png"
    assert resp.data == (project / "content" / "images" / "hip-hinge.png").read_bytes()
    assert "max-age" in resp.headers["Cache-Control"]


@pytest.mark.parametrize(
    "path",
    [
        "/media/2026-11-23-hip-hinge.md",  # content sources are not published
        "/media/../newsletter.toml",
        "/media/%2e%2e/newsletter.toml",
        "/media/images/../../var/secret.key",
        "/media//etc/passwd",
        "/media/images/missing.png",
        "/media/images/evil.svg",
    ],
)
def test_only_images_under_content_are_served(client: FlaskClient, path: str) -> None:
    resp = client.get(path, follow_redirects=True)  # Werkzeug merges "//" with a redirect
    assert resp.status_code == 404
    assert b"[site]" not in resp.data and b"root:" not in resp.data
