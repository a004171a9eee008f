"""What the subscriber store takes and gives back: plain frozen records, no SQL.

:class:`subscribers.store.Store` reads and writes them; the web app, the CLI, the
importer and the confirmation mailer pass them around.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Consent:
    """What a person agreed to and where: stored with every signup, confirmation, import."""

    kind: str  # signup | confirm | import | admin | preferences
    source: str  # form id ("article", "hosted"), "import:FILE", "cli"
    wording: str = ""
    ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    email: str
    name: str
    status: str
    topics: tuple[str, ...]
    created_at: dt.datetime
    updated_at: dt.datetime
    confirmed_at: dt.datetime | None = None
    unsubscribed_at: dt.datetime | None = None
    link_key: str = field(default="", repr=False)  # signs this person's links (tokens)


@dataclass(frozen=True, slots=True)
class SignupOutcome:
    """``action``: new | resend | capped | suppressed.

    ``new``: a new address, stored as pending. ``resend``: an address already held
    (whatever its status); nothing about it changed, a signup request waits for the
    link in the confirmation email. ``send_confirmation`` is True when a confirmation
    email was queued (see :meth:`Store.claim_confirmations`).
    """

    subscriber_id: int | None
    action: str
    send_confirmation: bool


@dataclass(frozen=True, slots=True)
class PendingConfirmation:
    """A confirmation email to send now (from :meth:`Store.claim_confirmations`)."""

    subscriber_id: int
    email: str
    name: str  # the name to greet: the one asked for in the request, if any
    topics: tuple[str, ...]  # the topics the link will confirm
    link_key: str = field(default="", repr=False)
    request_id: int | None = None  # the signup request the link applies (None: a new address)


@dataclass(frozen=True, slots=True)
class NewSubscriber:
    """One row for :meth:`Store.add_many` (already validated)."""

    email: str
    name: str = ""
    topics: tuple[str, ...] = ()
    line: int = 0  # where it came from, for reports


@dataclass(frozen=True, slots=True)
class AddResult:
    row: NewSubscriber
    outcome: str  # added | exists | suppressed
    subscriber_id: int | None


@dataclass(slots=True)
class Stats:
    total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    active_by_topic: dict[str, int] = field(default_factory=dict)
    suppressed: int = 0
    pending_expired: int = 0
    signups_7d: int = 0


__all__ = [
    "AddResult",
    "Consent",
    "NewSubscriber",
    "PendingConfirmation",
    "SignupOutcome",
    "Stats",
    "Subscriber",
]
