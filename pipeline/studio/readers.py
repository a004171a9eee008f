"""Who the studio renders an email for: sample readers, or a real subscriber.

Samples cover what breaks templates: no name ("Hi there"), a long name, a name with
``<``, ``&`` and an emoji (escaped in the HTML, as is in the text), and a reader of each
topic (the module sent to that topic, as ``send --topic`` does). A real subscriber is
looked up by address in the store, read-only: the studio never migrates or writes it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import StoreError
from pipeline.render import Recipient
from pipeline.settings import Settings

if TYPE_CHECKING:
    from subscribers.store import Store

SAMPLE_EMAIL = "reader@example.com"


@dataclass(frozen=True)
class Reader:
    key: str  # "sample", "no-name", ... or "subscriber"
    label: str
    email: str
    name: str = ""
    topic: str = ""  # render as sent to this topic; "" = the module's own
    subscriber_id: int | None = None  # a real subscriber
    status: str = ""
    topics: tuple[str, ...] = ()
    suppressed: str = ""  # why the address is suppressed, if it is
    link_key: str = ""  # a real subscriber's, so the preview's links are theirs

    def recipient(self, secret_key: str) -> Recipient:
        from subscribers.tokens import subscriber_token

        sid = self.subscriber_id
        token = subscriber_token(secret_key, sid or 0, self.link_key)
        return Recipient(sid if sid is not None else "preview", self.email, self.name, token)

    def would_receive(self, topic: str) -> tuple[bool, str]:
        """For a real subscriber: would a send of ``topic`` reach them, and why not."""
        if self.subscriber_id is None:
            return True, ""
        if self.suppressed:
            return False, f"the address is suppressed ({self.suppressed})"
        if self.status != "active":
            return False, f"their status is {self.status}, not active"
        if topic not in self.topics:
            return False, f"they are not subscribed to {topic!r}"
        return True, ""


def samples(settings: Settings) -> list[Reader]:
    fixed = [
        Reader("sample", "Sample Reader", SAMPLE_EMAIL, "Sample Reader"),
        Reader("no-name", "No name", SAMPLE_EMAIL),
        Reader(
            "long-name",
            "A long name",
            "maximiliana@example.com",
            "Maximiliana Alexandrina Wolfeschlegelsteinhausen-Featherstonehaugh",
        ),
        Reader("tricky", "A name with < & and an emoji", "ava@example.com", "<Ava> & Bo 💪 O'Neil"),
    ]
    topics = [
        Reader(f"topic-{t.key}", f"A reader of {t.name}", SAMPLE_EMAIL, "Sample Reader", t.key)
        for t in settings.topics.values()
    ]
    return fixed + topics


def sample(settings: Settings, key: str) -> Reader:
    """The sample with this key, or the default sample."""
    found = {r.key: r for r in samples(settings)}
    return found.get(key) or found["sample"]


class StoreReader:
    """Reads the subscriber store: a subscriber by address, what was sent. Opens the
    store once, without migrating it, and calls only its reading methods."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: Store | None = None
        self._lock = threading.Lock()

    def find(self, email: str) -> Reader:
        """The subscriber as a reader, or a StoreError that says what is wrong."""
        from subscribers.validation import normalise_email

        address = normalise_email(email)
        store = self.store()
        subscriber = store.find(address)
        if subscriber is None:
            raise StoreError(
                f"no subscriber {address} in the store",
                hint="pick a sample reader, or check the address (newsletter subscribers list)",
            )
        return Reader(
            key="subscriber",
            label=subscriber.name or subscriber.email,
            email=subscriber.email,
            name=subscriber.name,
            subscriber_id=subscriber.id,
            link_key=subscriber.link_key,
            status=subscriber.status,
            topics=subscriber.topics,
            suppressed=store.suppression_reason(subscriber.email) or "",
        )

    def store(self) -> Store:
        from sqlalchemy.engine import make_url

        from subscribers.store import Store

        with self._lock:
            if self._store is None:
                url = make_url(self.settings.database_url)
                missing = url.get_backend_name() == "sqlite" and not (
                    url.database and Path(url.database).is_file()
                )
                if missing:
                    raise StoreError(
                        f"no subscriber store yet ({url.database})",
                        hint="readers arrive through `newsletter serve`, or add one with "
                        "`newsletter subscribers add`",
                    )
                self._store = Store.from_settings(self.settings, auto_migrate=False)
            return self._store

    def campaigns(self) -> dict[tuple[str, str], str]:
        """(slug, topic) -> "sent 120 (2026-11-24)" for every campaign started."""
        from subscribers.ledger import Ledger

        found = {}
        for campaign, counts in Ledger(self.store()).campaigns():
            sent = counts.get("sent", 0)
            when = campaign.created_at.date().isoformat()
            found[(campaign.slug, campaign.topic)] = f"sent {sent} ({when})"
        return found

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
