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


# ---- creating the Maildir: whole, or not at all --------------------------------------


def test_a_reader_never_sees_a_half_made_maildir(tmp_path: Path) -> None:
    """While the mailer creates the outbox, a reader polling for it either finds no
    directory or a complete Maildir (the browser tests once read it in between)."""
    import threading

    from pipeline.providers.outbox import make_maildir

    for n in range(30):
        box = tmp_path / f"outbox{n}"
        seen: list[set[str]] = []
        stop = threading.Event()

        def watch(
            box: Path = box, seen: list[set[str]] = seen, stop: threading.Event = stop
        ) -> None:
            while not stop.is_set():
                try:
                    found = {p.name for p in box.iterdir()}
                except FileNotFoundError:
                    continue
                seen.append(found)
                return

        watcher = threading.Thread(target=watch)
        watcher.start()
        make_maildir(box)
        stop.set()
        watcher.join()
        assert all(found == {"tmp", "new", "cur"} for found in seen), seen
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_several_writers_creating_the_outbox_at_once_all_succeed(tmp_path: Path) -> None:
    import threading

    box = tmp_path / "var" / "outbox"
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            start.wait()
            OutboxProvider(box).send_batch([make_message(n)])
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(mailbox.Maildir(box, create=False)) == 8
    assert sorted(p.name for p in box.parent.iterdir()) == ["outbox"]


def test_an_outbox_left_half_made_by_an_older_version_is_completed(tmp_path: Path) -> None:
    box = tmp_path / "outbox"
    (box / "new").mkdir(parents=True)  # no tmp/ or cur/
    OutboxProvider(box).send_batch([make_message(1)])
    assert len(mailbox.Maildir(box, create=False)) == 1
