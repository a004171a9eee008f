"""Resend: ``POST /emails/batch``, up to 100 emails, ``Authorization: Bearer KEY``.

Every batch carries an ``Idempotency-Key`` derived from its Message-IDs: the same batch
sent again (a retry, or a resume after a crash within 24 hours) is deduplicated by
Resend, so this provider may retry a request whose reply was lost. The batch is sent
in permissive validation mode (``x-batch-validation: permissive``): an invalid email
fails alone and is listed in ``errors`` by index, the others are created.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from email.header import Header
from email.utils import formataddr, parseaddr
from typing import Any

import requests

from pipeline.message import Message
from pipeline.providers.base import SendResult, Status
from pipeline.providers.http import JSON_HEADERS, BearerProvider
from pipeline.providers.jsonbody import HOLE, JsonBody, json_batch

SECRET = "RESEND_API_KEY"
PATH = "/emails/batch"
TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

# Error ``name`` for one email of the batch -> our status.
STATUS_BY_ERROR: dict[str, Status] = {
    "validation_error": Status.INVALID,
    "invalid_to_address": Status.INVALID,
}

# Error ``name`` of a refused request -> what to fix.
ACCOUNT_ERRORS: dict[str, str] = {
    "missing_api_key": f"set {SECRET} in the environment",
    "invalid_api_key": f"check {SECRET}: Resend does not know this API key",
    "restricted_api_key": f"give {SECRET} sending access in Resend",
    "validation_error": "fix what Resend names (an unverified From domain must be verified"
    " at resend.com/domains)",
    "invalid_from_address": "site.from must be 'Name <address@your-verified-domain>'",
    "missing_required_field": "fix the field Resend names (a bug: please report it)",
    "invalid_parameter": "fix the parameter Resend names (a bug: please report it)",
    "invalid_idempotent_request": "this batch was sent before with different content under the"
    " same Message-IDs: render it again unchanged, or wait 24 hours",
    "daily_quota_exceeded": "the Resend daily quota is used up: resume tomorrow or upgrade",
    "monthly_quota_exceeded": "the Resend monthly quota is used up: resume when it renews"
    " or upgrade the plan (resend.com/settings/billing)",
}
# 429 like a rate limit, but waiting seconds cannot help: stop at once (never retried here).
QUOTA_ERRORS = frozenset({"daily_quota_exceeded", "monthly_quota_exceeded"})
TRANSIENT_ERRORS = frozenset({"concurrent_idempotent_requests", "rate_limit_exceeded"})


def idempotency_key(messages: Sequence[Message]) -> str:
    """Stable for the same batch: the SHA-256 of its Message-IDs, in order."""
    digest = hashlib.sha256("\n".join(m.message_id for m in messages).encode("utf-8"))
    return f"nl-batch-{digest.hexdigest()}"


class ResendProvider(BearerProvider):
    name = "resend"
    encodings = frozenset({"json"})
    max_batch = 100
    idempotent = True
    default_base_url = "https://api.resend.com"
    default_requests_per_second = 2.0  # Resend's documented default rate limit per team
    max_in_flight = 2
    auth_hint = ACCOUNT_ERRORS["invalid_api_key"]

    secret_name = SECRET

    # -- request ---------------------------------------------------------------------

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        self.check_batch(messages)
        if not messages:
            return []
        headers = {
            **JSON_HEADERS,
            "Idempotency-Key": idempotency_key(messages),
            "x-batch-validation": "permissive",
        }
        body = self.batch_body(messages)
        for m in messages:  # the body has them now: one copy in flight, not two
            m.drop_bodies()
        response = self.post(PATH, body=body, headers=headers)
        return self.parse(response, messages)

    def batch_body(self, messages: Sequence[Message]) -> bytes | JsonBody:
        """The request body, a JSON array of :meth:`payload` (see :func:`json_batch`)."""
        return json_batch(messages, self.payload)

    @staticmethod
    def payload(m: Message) -> dict[str, Any]:
        """One email of the batch, as Resend documents it, with a :data:`HOLE` for html
        and text (:func:`json_batch` fills them)."""
        data: dict[str, Any] = {
            "from": from_address(m.from_addr),
            "to": [to_address(m.to_email, m.to_name)],
            "subject": m.subject,
            "html": HOLE,
            "text": HOLE,
            "headers": {"Message-ID": m.message_id, **m.headers},
        }
        if m.reply_to:
            data["reply_to"] = [m.reply_to]
        tags = [{"name": "tag", "value": m.tag}] if m.tag else []
        tags += [{"name": k, "value": v} for k, v in m.metadata.items()]
        if tags:
            data["tags"] = [
                {"name": TAG_UNSAFE.sub("_", t["name"]), "value": TAG_UNSAFE.sub("_", t["value"])}
                for t in tags
            ]
        return data

    # -- reply -----------------------------------------------------------------------

    def is_transient(self, response: requests.Response) -> bool:
        name = self.error_name(response) if response.status_code in (409, 429) else ""
        if name in QUOTA_ERRORS:
            return False
        return name in TRANSIENT_ERRORS or super().is_transient(response)

    def parse(self, response: requests.Response, messages: Sequence[Message]) -> list[SendResult]:
        if response.status_code == 200:
            return self.parse_ok(response, messages, self.json(response))
        name = self.error_name(response)
        if name in QUOTA_ERRORS:
            raise self.refuse(
                response, "Resend quota reached", hint=ACCOUNT_ERRORS[name], retryable=True
            )
        if name in ACCOUNT_ERRORS:
            raise self.refuse(response, "Resend refused the request", hint=ACCOUNT_ERRORS[name])
        raise self.unexpected(response)

    def parse_ok(
        self, response: requests.Response, messages: Sequence[Message], data: Any
    ) -> list[SendResult]:
        """``data`` holds the created emails in order; ``errors`` the others, by index."""
        created = data.get("data") if isinstance(data, dict) else None
        errors = {
            int(e["index"]): self.redact(str(e.get("message", "")))
            for e in (data.get("errors") or [] if isinstance(data, dict) else [])
            if isinstance(e, dict) and "index" in e
        }
        if not isinstance(created, list) or len(created) + len(errors) != len(messages):
            raise self.refuse(
                response, f"the reply does not account for the {len(messages)} emails sent"
            )
        ids = iter(created)
        return [
            SendResult(
                m.message_id, m.to_email, STATUS_BY_ERROR["validation_error"], reason=errors[i]
            )
            if i in errors
            else SendResult(m.message_id, m.to_email, Status.QUEUED, str(next(ids).get("id", "")))
            for i, m in enumerate(messages)
        ]

    def error_name(self, response: requests.Response) -> str:
        try:
            data = response.json()
        except ValueError:
            return ""
        return str(data.get("name", "")) if isinstance(data, dict) else ""


def from_address(address: str) -> str:
    """Resend refuses a quoted display name in ``from``: send it unquoted (after anymail)."""
    name, addr = parseaddr(address)
    if address.lstrip().startswith('"') and name:
        return f"{name} <{addr}>"
    return address


def to_address(addr: str, name: str) -> str:
    """Resend refuses quoted display names: encode such a name as an RFC 2047 word instead."""
    formatted = formataddr((name, addr)) if name else addr
    if formatted.startswith('"'):
        encoded = Header(name, "utf-8").encode()
        return f"{encoded} <{addr}>"
    return formatted
