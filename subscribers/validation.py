"""Checks for everything a person or a file can hand us: addresses, names, topics.

Shared by the web form, the JSON endpoint, the CLI and CSV import, so the rules are the
same everywhere. Every failure is an :class:`InvalidInput` naming the field.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from collections.abc import Iterable

from email_validator import EmailNotValidError, validate_email

from subscribers.errors import InvalidInput

MAX_EMAIL_INPUT = 320  # refuse before parsing; email-validator caps real addresses at 254
MAX_NAME = 100
# Cc (controls incl. CR/LF/TAB), Cf (invisible format chars such as bidi overrides),
# Zl/Zp (U+2028/2029 line and paragraph separators): none belong in a display name,
# and any of them could break a header line or mislead a reader later.
_BAD_NAME_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_TOPIC_SPLIT = re.compile(r"[\s,;|]+")


def normalise_email(raw: object) -> str:
    """The canonical form of an address (Unicode domain, lower-case domain), or InvalidInput."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput("email", "an email address is required")
    return _normalise(raw.strip())


@functools.lru_cache(maxsize=4096)  # the web layer and the store both check each address
def _normalise(value: str) -> str:
    if len(value) > MAX_EMAIL_INPUT:
        raise InvalidInput("email", "the email address is too long")
    if any(unicodedata.category(ch) in _BAD_NAME_CATEGORIES for ch in value):
        raise InvalidInput("email", "the email address contains invalid characters")
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidInput("email", f"the email address is not valid: {exc}") from exc


def email_key(email: str) -> str:
    """What makes two addresses the same person: the normalised address, lower-cased."""
    return email.lower()


def email_hash(email: str) -> str:
    """SHA-256 of the address key: the suppression list and uniqueness use only this."""
    return hashlib.sha256(email_key(email).encode("utf-8")).hexdigest()


def clean_name(raw: object) -> str:
    """An optional display name: NFC, trimmed, no control characters, at most MAX_NAME."""
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise InvalidInput("name", "the name must be text")
    value = unicodedata.normalize("NFC", raw).strip()
    if any(unicodedata.category(ch) in _BAD_NAME_CATEGORIES for ch in value):
        raise InvalidInput("name", "the name must not contain line breaks or control characters")
    if len(value) > MAX_NAME:
        raise InvalidInput("name", f"the name is too long (at most {MAX_NAME} characters)")
    return " ".join(value.split())


def parse_topics(raw: object, known: Iterable[str], *, default_all: bool = True) -> list[str]:
    """Chosen topics in the order of ``known``; none given means all (when default_all).

    ``raw`` is a list of keys, or one string separated by spaces, commas, ``;`` or ``|``.
    """
    known = list(known)
    chosen = _topic_list(raw)
    if not chosen:
        if default_all:
            return known
        raise InvalidInput("topics", "choose at least one topic")
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise InvalidInput(
            "topics",
            f"unknown topic {unknown[0][:40]!r}",
            hint=f"known topics: {', '.join(known)}",
        )
    return [key for key in known if key in chosen]


def _topic_list(raw: object) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [t for t in _TOPIC_SPLIT.split(raw.strip()) if t]
    if isinstance(raw, list | tuple) and all(isinstance(t, str) for t in raw):
        return [t.strip() for t in raw if t.strip()]
    raise InvalidInput("topics", "topics must be a list of topic names")
