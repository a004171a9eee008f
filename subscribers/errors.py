"""Errors of the subscriber side, all under :class:`pipeline.errors.StoreError`.

The web app maps each class to an HTTP status (see ``subscribers.web.ERROR_STATUS``);
the CLI prints ``str(error)`` and exits 1.
"""

from __future__ import annotations

from pipeline.errors import StoreError


class InvalidInput(StoreError):
    """A field of a signup, import row or command is invalid. ``field`` names it."""

    def __init__(self, field: str, message: str, *, hint: str | None = None) -> None:
        self.field = field
        super().__init__(message, hint=hint)


class NotFound(StoreError):
    """No subscriber matches."""


class LinkGone(StoreError):
    """A link (unsubscribe, preferences, confirmation) whose reader is no longer in the
    store: erased, so the link belongs to nobody now. It changes nothing (HTTP 410)."""


class Conflict(StoreError):
    """The request no longer fits the subscriber's state (e.g. an old link after leaving)."""


class SchemaError(StoreError):
    """The database schema cannot be used or upgraded by this version of the code."""


class DatabaseUnavailable(StoreError):
    """The database could not be reached or stayed locked past the busy timeout."""
