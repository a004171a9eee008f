"""The outbox: a Maildir any mail client (or mailbox.Maildir) reads back."""

from __future__ import annotations

import email.policy
import mailbox
from dataclasses import replace
from pathlib import Path

import pytest
from messages import SITE, sample_message

from pipeline.errors import ProviderError
from pipeline.message import Message
from pipeline.providers import get_provider
from pipeline.providers.base import Status
from pipeline.providers.outbox import OutboxProvider
from pipeline.settings import Settings

REQUIRED = (
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Id",
    "Message-ID",
    "From",
    "To",
    "Subject",
    "Date",
)


def make_message(i: int) -> Message:
    token = f"t{i}"
    return sample_message(
        i,
        to_name=f"Réader {i}",
        subject="Master the Hip Hinge — part 1",
        html=f'<p>Hi Réader {i}, <a href="https://{SITE}/u/t{i}">unsubscribe</a></p>',
        text=f"Hi Réader {i}\n\nUnsubscribe: https://{SITE}/u/t{i}\n",
        headers={
            "List-Unsubscribe": f"<https://{SITE}/u/{token}>, "
            f"<mailto:unsubscribe@{SITE}?subject=unsubscribe>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "List-Id": f"Hinge Strength <updates.{SITE}>",
        },
        tag="",
        metadata={},
    )


def test_outbox_is_the_default_and_writes_a_readable_maildir(settings: Settings) -> None:
    provider = get_provider(settings)
    assert isinstance(provider, OutboxProvider)
    sent = [make_message(0), make_message(1)]

    results = provider.send_batch(sent)

    assert [r.status for r in results] == [Status.SENT, Status.SENT]
    box = mailbox.Maildir(settings.outbox_dir, factory=None, create=False)
    assert sorted(box.keys()) == sorted(r.provider_id for r in results)
    for result, original in zip(results, sent, strict=True):
        raw = box.get_bytes(result.provider_id)
        assert raw.count(b"\n") == raw.count(b"\r\n")  # CRLF, as on the wire
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        for name in REQUIRED:
            assert parsed[name], f"{name} missing"
        assert parsed["Message-ID"] == original.message_id
        assert parsed["To"] == f"Réader {result.email[6]} <{result.email}>"
        assert parsed["Subject"] == original.subject
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert parsed["List-Unsubscribe"] == original.headers["List-Unsubscribe"]
        assert parsed["List-Id"] == original.headers["List-Id"]
        assert parsed.get_content_type() == "multipart/alternative"
        plain = parsed.get_body(("plain",)).get_content().replace("\r\n", "\n")
        html = parsed.get_body(("html",)).get_content().replace("\r\n", "\n")
        assert plain == original.text
        assert html.rstrip("\n") == original.html


def test_writes_are_atomic_tmp_then_new(settings: Settings) -> None:
    provider = get_provider(settings)

    provider.send_batch([make_message(i) for i in range(3)])

    assert list((settings.outbox_dir / "tmp").iterdir()) == []
    assert len(list((settings.outbox_dir / "new").iterdir())) == 3


def test_unwritable_outbox_is_a_provider_error(settings: Settings, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the var/ directory should be")
    provider = OutboxProvider(blocker / "outbox")

    with pytest.raises(ProviderError, match="could not write to the outbox"):
        provider.send_batch([make_message(0)])


def test_outbox_chosen_by_name(settings: Settings) -> None:
    provider = get_provider(replace(settings, provider="outbox"))
    assert repr(provider) == f"<OutboxProvider {settings.outbox_dir}>"
