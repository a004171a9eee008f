"""The live-links guard: a real provider never mails readers localhost or plain-http links.

Every path that mails a reader is covered: `send` (and `--dry-run`, `--test-to`),
`serve`, the web app's in-request confirmation, `subscribers add/import`. The outbox
(files only) is never refused. Postmark stands in for every real provider (`responses`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses
from click.testing import CliRunner
from helpers import snapshot
from send_helpers import fill

from pipeline.cli import cli
from pipeline.errors import ConfigError
from pipeline.guard import UnsafeLinks, link_problems, require_live_links
from pipeline.settings import Settings, load_settings
from subscribers.store import Store

PUBLIC = "https://news.hingestrength.example.com"
BATCH = "https://api.postmarkapp.com/email/batch"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8000", ["is not https", "points at a loopback address (127.0.0.1)"]),
        ("https://localhost", ["points at a local name (localhost)"]),
        ("https://10.0.0.5", ["points at a private address (10.0.0.5)"]),
        ("https://192.168.1.20:8443", ["points at a private address (192.168.1.20)"]),
        ("https://[::1]", ["points at a loopback address (::1)"]),
        ("https://169.254.10.1", ["points at a link-local address (169.254.10.1)"]),
        ("https://0.0.0.0", ["points at a unspecified address (0.0.0.0)"]),
        ("https://newsbox.local", ["points at a local name (newsbox.local)"]),
        ("https://intranet", ["points at a single-label host name (intranet), not a public one"]),
        ("http://news.example.com", ["is not https"]),
        ("https://news.example.com", []),
        ("https://93.184.216.34/newsletter", []),
    ],
)
def test_link_problems(url: str, expected: list[str]) -> None:
    assert link_problems(url) == expected


def live(settings: Settings, **env: str) -> Settings:
    return load_settings(settings.config_path, env={**settings.env, **env})


def test_outbox_is_never_refused(settings: Settings) -> None:
    assert settings.provider == "outbox" and settings.base_url.startswith("http://127.0.0.1")
    require_live_links(settings, what="newsletter send")  # no error


def test_the_environment_sets_base_url_and_a_bad_one_is_named(settings: Settings) -> None:
    assert live(settings, NEWSLETTER_BASE_URL=f"{PUBLIC}/").base_url == PUBLIC
    assert live(settings, NEWSLETTER_BASE_URL=PUBLIC).site_url == settings.site_url  # set in file
    with pytest.raises(ConfigError, match="NEWSLETTER_BASE_URL must be an absolute http"):
        live(settings, NEWSLETTER_BASE_URL="news.example.com")


# ---- newsletter send -------------------------------------------------------------------


@pytest.fixture
def postmark_env(project: Path, test_env: dict[str, str]) -> dict[str, str]:
    return {
        **test_env,
        "NEWSLETTER_CONFIG": str(project / "newsletter.toml"),
        "NEWSLETTER_PROVIDER": "postmark",
        "POSTMARK_SERVER_TOKEN": "pm-token",
    }


@pytest.fixture
def store(settings: Settings):
    with Store.from_settings(settings) as store:
        fill(store, 3)
        yield store


def ok_items(request) -> tuple[int, dict[str, str], str]:  # noqa: ANN001
    sent = json.loads(request.body)
    reply = [
        {"ErrorCode": 0, "Message": "OK", "MessageID": f"id-{i}", "To": m["To"]}
        for i, m in enumerate(sent)
    ]
    return 200, {}, json.dumps(reply)


@responses.activate
@pytest.mark.parametrize("extra", [["--yes"], ["--dry-run"], []])
def test_send_refuses_localhost_links_with_exit_2(
    postmark_env: dict[str, str], store: Store, extra: list[str]
) -> None:
    before = snapshot(store)
    result = CliRunner().invoke(cli, ["send", "hip-hinge", *extra], env=postmark_env)
    assert result.exit_code == 2, result.output
    assert "newsletter send through postmark refused: base_url http://127.0.0.1:8000" in (
        result.output
    )
    assert "is not https and points at a loopback address" in result.output
    assert "NEWSLETTER_BASE_URL" in result.output and "[site] base_url" in result.output
    assert snapshot(store) == before  # no campaign, no ledger rows
    assert len(responses.calls) == 0


@responses.activate
def test_test_to_warns_and_sends_the_sample(postmark_env: dict[str, str], store: Store) -> None:
    responses.add_callback(responses.POST, BATCH, callback=ok_items)
    result = CliRunner().invoke(
        cli, ["send", "hip-hinge", "--test-to", "me@example.com"], env=postmark_env
    )
    assert result.exit_code == 0, result.output
    assert "warning: base_url http://127.0.0.1:8000 is not https" in result.output
    assert "fine for a test to yourself, not for readers" in result.output
    assert "test message sent to me@example.com via postmark" in result.output
    [sent] = json.loads(responses.calls[0].request.body)
    assert sent["To"] == "me@example.com"


@responses.activate
def test_a_public_https_base_url_sends_with_its_links(
    postmark_env: dict[str, str], store: Store
) -> None:
    responses.add_callback(responses.POST, BATCH, callback=ok_items)
    env = {**postmark_env, "NEWSLETTER_BASE_URL": PUBLIC}
    result = CliRunner().invoke(cli, ["send", "hip-hinge", "--yes"], env=env)
    assert result.exit_code == 0, result.output
    sent = json.loads(responses.calls[0].request.body)
    assert len(sent) == 3
    unsubscribe = {h["Name"]: h["Value"] for h in sent[0]["Headers"]}["List-Unsubscribe"]
    assert unsubscribe.startswith(f"<{PUBLIC}/unsubscribe/")
    assert f"{PUBLIC}/preferences/" in sent[0]["HtmlBody"]
    assert "127.0.0.1" not in sent[0]["HtmlBody"] + sent[0]["TextBody"]


# ---- confirmation emails: serve, the web app, subscribers add/import ---------------------


def test_serve_refuses_before_starting(postmark_env: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["serve", "--port", "1"], env=postmark_env)
    assert result.exit_code == 2, result.output
    assert "the confirmation email through postmark refused" in result.output
    assert "serving on" not in result.output


def test_web_app_mailing_in_the_request_refuses_at_startup(settings: Settings) -> None:
    from subscribers.web import create_app

    real = live(settings, NEWSLETTER_PROVIDER="postmark", POSTMARK_SERVER_TOKEN="t")
    with pytest.raises(UnsafeLinks, match="the confirmation email through postmark refused"):
        create_app(real)
    app = create_app(live(real, NEWSLETTER_BASE_URL=PUBLIC))  # fine once links are public
    app.extensions["newsletter"].store.close()


def test_web_app_queueing_only_starts(settings: Settings) -> None:
    """Workers of `newsletter serve` only queue; serve itself refused already."""
    from subscribers.web import create_app

    real = live(settings, NEWSLETTER_PROVIDER="postmark", POSTMARK_SERVER_TOKEN="t")
    app = create_app(real, confirmations="queue")
    app.extensions["newsletter"].store.close()


def test_subscribers_add_refuses_and_adds_nobody(
    postmark_env: dict[str, str], settings: Settings
) -> None:
    result = CliRunner().invoke(cli, ["subscribers", "add", "ann@example.com"], env=postmark_env)
    assert result.exit_code == 2, result.output
    assert "the confirmation email through postmark refused" in result.output
    with Store.from_settings(settings) as store:
        assert store.find("ann@example.com") is None
    confirmed = CliRunner().invoke(
        cli,
        ["subscribers", "add", "bo@example.com", "--confirmed", "--consent-source", "asked"],
        env=postmark_env,
    )
    assert confirmed.exit_code == 0, confirmed.output  # no email, nothing to refuse


def test_subscribers_import_with_confirmations_refuses(
    postmark_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    csv = tmp_path / "readers.csv"
    csv.write_text("email,name,topics\ncy@example.com,Cy,\n")
    result = CliRunner().invoke(
        cli, ["subscribers", "import", str(csv), "--send-confirmation"], env=postmark_env
    )
    assert result.exit_code == 2, result.output
    with Store.from_settings(settings) as store:
        assert store.find("cy@example.com") is None


# ---- send --dry-run builds the provider ------------------------------------------------


@responses.activate
def test_dry_run_checks_the_provider_settings_without_calling_it(
    postmark_env: dict[str, str], store: Store
) -> None:
    env = {**postmark_env, "NEWSLETTER_BASE_URL": PUBLIC}
    result = CliRunner().invoke(cli, ["send", "hip-hinge", "--dry-run"], env=env)
    assert result.exit_code == 0, result.output
    assert "provider postmark: settings and credentials present" in result.output
    assert "dry run: rendered 3 message(s)" in result.output
    assert len(responses.calls) == 0
    del env["POSTMARK_SERVER_TOKEN"]
    missing = CliRunner().invoke(cli, ["send", "hip-hinge", "--dry-run"], env=env)
    assert missing.exit_code == 1
    assert "provider postmark needs POSTMARK_SERVER_TOKEN in the environment" in missing.output
    assert "dry run: rendered" not in missing.output
