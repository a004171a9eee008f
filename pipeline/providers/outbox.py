"""The outbox: the default provider, for when nothing is configured.

Every message is written as a standard RFC 5322 file (CRLF line endings, what an .eml
file holds) into a Maildir under ``var/outbox/`` with :class:`mailbox.Maildir`, which
writes into ``tmp/`` and renames into ``new/``: a crash never leaves half a message
where a reader would find it. Any mail client, or ``mailbox.Maildir``, reads it back.

It can be asked what it accepted, as Postmark can: the messages written since a batch
was claimed are read back by their Message-ID header.
"""

from __future__ import annotations

import datetime as dt
import mailbox
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import ProviderError
from pipeline.message import Message, to_bytes
from pipeline.providers.base import Provider, SendResult, Status, send_in_parts
from pipeline.providers.retry import Sleep
from pipeline.settings import Settings

MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)
HEAD_BYTES = 8192  # the headers of a message we wrote fit well within this
CLOCK_SLACK = 2.0  # seconds of file-time granularity


def make_maildir(directory: Path) -> None:
    """Create the Maildir whole or not at all: ``tmp/``, ``new/`` and ``cur/`` are made in
    a sibling directory that is then renamed into place. ``mailbox.Maildir(create=True)``
    makes the top directory first, and a mail client (or a test) opening it in between
    finds no ``cur/``. Safe when several processes create it at once: one rename wins."""
    if (directory / "cur").is_dir():
        return
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        for sub in ("tmp", "new", "cur"):
            (staging / sub).mkdir(mode=0o700)
        try:
            staging.rename(directory)
        except OSError:  # it exists: made by another process meanwhile, or an old one
            for sub in ("tmp", "new", "cur"):  # complete one left half made
                (directory / sub).mkdir(mode=0o700, exist_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class OutboxProvider(Provider):
    name = "outbox"
    encodings = frozenset({"mime"})
    max_batch = 1000

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._maildir: mailbox.Maildir | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, sleep: Sleep | None = None) -> OutboxProvider:
        return cls(settings.outbox_dir)

    def __repr__(self) -> str:
        return f"<OutboxProvider {self.directory}>"

    @property
    def maildir(self) -> mailbox.Maildir:
        if self._maildir is None:
            make_maildir(self.directory)
            self._maildir = mailbox.Maildir(self.directory, factory=None, create=False)
        return self._maildir

    @property
    def can_lookup(self) -> bool:
        return True

    def lookup(self, messages: Sequence[Message], *, sent_at: dt.datetime) -> dict[str, str]:
        """The messages of the batch found in the Maildir, written since ``sent_at``."""
        wanted = {m.message_id for m in messages}
        since = sent_at.timestamp() - CLOCK_SLACK
        found: dict[str, str] = {}
        for sub in ("new", "cur"):
            folder = self.directory / sub
            if not folder.is_dir():
                continue
            for entry in os.scandir(folder):
                if entry.stat().st_mtime < since:
                    continue
                mid = _message_id(Path(entry.path))
                if mid in wanted:
                    found[mid] = entry.name.split(":")[0]
        return found

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        self.check_batch(messages)
        return send_in_parts([[m] for m in messages], self._write)

    def _write(self, messages: Sequence[Message]) -> list[SendResult]:
        [m] = messages
        try:
            key = self.maildir.add(to_bytes(m))
        except OSError as exc:
            raise ProviderError(
                f"could not write to the outbox {self.directory}",
                provider=self.name,
                reason=f"{type(exc).__name__}: {exc.strerror or exc}",
                hint="check that the directory is writable and the disk is not full",
            ) from exc
        return [SendResult(m.message_id, m.to_email, Status.SENT, provider_id=key)]


def _message_id(path: Path) -> str:
    try:
        with path.open("rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError:
        return ""
    match = MESSAGE_ID.search(head.split(b"\r\n\r\n", 1)[0])
    return match.group(1).decode("ascii", "replace") if match else ""
