"""Signed tokens for links in emails.

``subscriber_token`` is the long-lived token in every newsletter's unsubscribe and
preferences links (it must keep working in old emails). ``confirm_token`` is the
double opt-in token, which expires (see ``read_confirm_token``).
"""

from __future__ import annotations

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

from pipeline.errors import PipelineError

CONFIRM_MAX_AGE = 7 * 24 * 3600


class TokenError(PipelineError):
    """A token is forged, tampered with or expired."""


def subscriber_token(secret_key: str, subscriber_id: int) -> str:
    """Token for /unsubscribe/<token> and /preferences/<token>; never expires."""
    return URLSafeSerializer(secret_key, salt="subscriber").dumps(subscriber_id)


def read_subscriber_token(secret_key: str, token: str) -> int:
    try:
        value = URLSafeSerializer(secret_key, salt="subscriber").loads(token)
    except BadSignature as exc:
        raise TokenError(
            "this link is not valid", hint="use the link from your latest email"
        ) from exc
    if not isinstance(value, int):
        raise TokenError("this link is not valid")
    return value


def confirm_token(secret_key: str, subscriber_id: int, email: str) -> str:
    """Double opt-in token; binds the address so a changed address cannot be confirmed."""
    return URLSafeTimedSerializer(secret_key, salt="confirm").dumps([subscriber_id, email])


def read_confirm_token(
    secret_key: str, token: str, max_age: int = CONFIRM_MAX_AGE
) -> tuple[int, str]:
    serializer = URLSafeTimedSerializer(secret_key, salt="confirm")
    try:
        value = serializer.loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise TokenError(
            "this confirmation link has expired", hint="sign up again for a fresh link"
        ) from exc
    except BadSignature as exc:
        raise TokenError("this confirmation link is not valid") from exc
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], int)):
        raise TokenError("this confirmation link is not valid")
    return value[0], str(value[1])
