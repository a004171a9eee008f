"""The outbox: the default provider, for when nothing is configured.

Every message is written as a standard RFC 5322 file (CRLF line endings, what an .eml
file holds) into a Maildir under ``var/outbox/`` with :class:`mailbox.Maildir`, which
writes into ``tmp/`` and renames into ``new/``: a crash never leaves half a message
where a reader would find it. Any mail client, or ``mailbox.Maildir``, reads it back.
"""

from __future__ import annotations

import mailbox
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import ProviderError
from pipeline.message import Message, to_bytes
from pipeline.providers.base import Provider, SendResult, Status, send_in_parts
from pipeline.providers.retry import Sleep
from pipeline.settings import Settings


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
