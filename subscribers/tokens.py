"""Signed tokens for links in emails, each bound to one person for good.

Every subscriber row carries a random ``link_key`` (:func:`new_link_key`), made when
the row is created and never reused: ids are never reused either (SQLite
AUTOINCREMENT, a PostgreSQL sequence), and an erased reader's row, key included, is
gone. A link's signature covers the id *and* that key, keyed with
``NEWSLETTER_SECRET_KEY``, so a link is unforgeable without the secret and an erased
reader's old link can never control whoever signs up next: it answers "this link is
no longer valid".

``subscriber_token`` is the long-lived token in every newsletter's unsubscribe,
preferences and mailto-unsubscribe links (it must keep working in old emails).
``confirm_token`` is the double opt-in token, which expires (``read_confirm_token``).
Rows created before link keys existed have the key ``""``: their links are signed over
the id alone, exactly as before, so emails already sent keep working.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from pipeline.errors import PipelineError

CONFIRM_MAX_AGE = 7 * 24 * 3600
LINK_KEY_BYTES = 16  # 128 random bits: 22 characters


class TokenError(PipelineError):
    """A token is forged, tampered with or expired."""


def new_link_key() -> str:
    """A fresh per-subscriber key for :func:`subscriber_token` (never ``""``)."""
    return secrets.token_urlsafe(LINK_KEY_BYTES)


@functools.lru_cache(maxsize=8)
def _mac(secret_key: str, purpose: bytes) -> hmac.HMAC:
    """HMAC-SHA256 keyed for one purpose (a key derived from the secret, per purpose)."""
    key = hmac.new(secret_key.encode(), purpose, hashlib.sha256).digest()
    return hmac.new(key, digestmod=hashlib.sha256)


def _tag(secret_key: str, purpose: bytes, subscriber_id: int, link_key: str) -> str:
    mac = _mac(secret_key, purpose).copy()
    mac.update(f"{subscriber_id}.{link_key}".encode() if link_key else str(subscriber_id).encode())
    return base64.urlsafe_b64encode(mac.digest()[:16]).rstrip(b"=").decode()


def subscriber_token(secret_key: str, subscriber_id: int, link_key: str) -> str:
    """Token for /unsubscribe/<token>, /preferences/<token> and the mailto subject;
    never expires.

    ``ID.SIG`` with a 128-bit HMAC-SHA256 tag over the id and the subscriber's link
    key: made once per recipient of every send, so it is a precomputed keyed hash
    (about 2 us) rather than a serializer (about 50 us).
    """
    return f"{subscriber_id}.{_tag(secret_key, b'subscriber-link', subscriber_id, link_key)}"


def token_subscriber_id(token: str) -> int:
    """The id a subscriber token names (not yet checked: see :func:`token_matches`)."""
    ident, _, sig = token.partition(".")
    if not (ident.isascii() and ident.isdigit()) or len(ident) > 18 or not sig:
        raise TokenError("this link is not valid", hint="use the link from your latest email")
    return int(ident)


def token_matches(secret_key: str, token: str, subscriber_id: int, link_key: str) -> bool:
    """Whether ``token`` is this subscriber's (their id and their link key)."""
    return hmac.compare_digest(token, subscriber_token(secret_key, subscriber_id, link_key))


@dataclass(frozen=True, slots=True)
class ConfirmLink:
    """What a confirmation link says: who, which address, and which request.

    ``request_id`` is None for the first signup of a new address (the row itself is
    the request); otherwise it names the signup request whose choices apply.
    ``tag`` is None only in links sent before link keys existed.
    """

    subscriber_id: int
    email: str
    tag: str | None = None
    request_id: int | None = None


def confirm_token(
    secret_key: str,
    subscriber_id: int,
    email: str,
    link_key: str,
    request_id: int | None = None,
) -> str:
    """Double opt-in token; binds the address (a changed address cannot be confirmed),
    the subscriber's link key and, for a known address, the signup request."""
    tag = _tag(secret_key, b"confirm-link", subscriber_id, link_key)
    payload: list[object] = [subscriber_id, email, tag]
    if request_id is not None:
        payload.append(request_id)
    return URLSafeTimedSerializer(secret_key, salt="confirm").dumps(payload)


def read_confirm_token(secret_key: str, token: str, max_age: int = CONFIRM_MAX_AGE) -> ConfirmLink:
    serializer = URLSafeTimedSerializer(secret_key, salt="confirm")
    try:
        value = serializer.loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise TokenError(
            "this confirmation link has expired", hint="sign up again for a fresh link"
        ) from exc
    except BadSignature as exc:
        raise TokenError("this confirmation link is not valid") from exc
    if not (isinstance(value, list) and 2 <= len(value) <= 4 and isinstance(value[0], int)):
        raise TokenError("this confirmation link is not valid")
    tag = str(value[2]) if len(value) > 2 else None
    request_id = value[3] if len(value) > 3 and isinstance(value[3], int) else None
    return ConfirmLink(value[0], str(value[1]), tag, request_id)


def confirm_link_matches(secret_key: str, link: ConfirmLink, link_key: str) -> bool:
    """Whether a confirmation link was made for this subscriber's row (its link key)."""
    if link.tag is None:  # sent before link keys: valid only for a row from back then
        return link_key == ""
    expected = _tag(secret_key, b"confirm-link", link.subscriber_id, link_key)
    return hmac.compare_digest(link.tag, expected)
