"""SendGrid v3: ``POST /v3/mail/send``, ``Authorization: Bearer KEY``.

One request carries up to 1000 ``personalizations``, one per recipient, each with its
own ``to``, ``subject``, ``headers`` (List-Unsubscribe, Message-ID ...) and
``custom_args`` (our Message-ID, so webhooks can match events later). The body
(``content``) is shared by the request, so the batch's template is recovered with
:mod:`pipeline.providers.merge` and the personal parts travel as ``substitutions``.

Success is 202 with an empty body and only an ``X-Message-Id`` header.

A lost answer can be looked up only where the account has SendGrid's Email Logs API
(``provider.sendgrid_email_logs = true``): each request then carries the category
``batch-<claim>``, and ``POST /v3/logs`` with ``categories IN (...)`` lists what
SendGrid processed of that batch. Without it, SendGrid cannot be asked.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from email.utils import parseaddr, quote
from typing import Any

import requests

from pipeline.errors import ProviderError
from pipeline.message import Message
from pipeline.providers.base import SendResult, Status
from pipeline.providers.http import JSON_HEADERS, BearerProvider, encode_json
from pipeline.providers.merge import MergedSend, Template, factor
from pipeline.providers.retry import Sleep
from pipeline.settings import Settings

SECRET = "SENDGRID_API_KEY"
PATH = "/v3/mail/send"
SUBSTITUTIONS_LIMIT = 10_000  # bytes of substitutions per personalization (SendGrid)
RESERVED = "-nlp"  # our substitution tags start with this; a body containing it is not merged

# HTTP status of a refused request -> our status, for errors that name one personalization.
STATUS_BY_CODE: dict[int, Status] = {400: Status.INVALID}

# HTTP status -> what to fix, for errors about the account or the request.
ACCOUNT_ERRORS: dict[int, str] = {
    401: f"check {SECRET}: SendGrid does not know this API key",
    403: f"give {SECRET} the Mail Send permission and verify the From address as a"
    " Sender Identity in SendGrid",
    413: "the request is too large (30 MB at most): lower send.batch_size",
}

PERSONALIZATION = re.compile(r"^personalizations\.(\d+)\b")


class SendGridProvider(MergedSend, BearerProvider):
    name = "sendgrid"
    max_batch = 1000
    default_base_url = "https://api.sendgrid.com"
    auth_hint = ACCOUNT_ERRORS[401]

    secret_name = SECRET

    def __init__(self, *, email_logs: bool = False, **options: Any) -> None:
        super().__init__(**options)
        self.email_logs = email_logs

    @classmethod
    def from_settings(cls, settings: Settings, *, sleep: Sleep | None = None) -> SendGridProvider:
        api_key = settings.secret(cls.secret_name, needed_for=f"provider {cls.name}")
        return cls(
            api_key=api_key,
            email_logs=bool(settings.provider_options.get("sendgrid_email_logs")),
            **cls.http_options(settings, sleep),
        )

    # -- what was accepted -------------------------------------------------------------

    @property
    def can_lookup(self) -> bool:
        return self.email_logs

    def lookup(self, messages: Sequence[Message], *, sent_at: dt.datetime) -> dict[str, str]:
        """The batch's messages SendGrid logged, found by the batch's category."""
        batch = messages[0].metadata.get("batch", "") if messages else ""
        if not batch:
            raise ProviderError("these messages carry no batch key to look up", provider=self.name)
        since = (sent_at - dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
        query = (
            f"categories IN ('batch-{batch}') AND sg_message_id_created_at >= TIMESTAMP \"{since}\""
        )
        body = encode_json({"query": query, "limit": self.max_batch})
        response = self.ask("POST", "/v3/logs", body=body)
        if response.status_code != 200:
            raise self.unexpected(response)
        data = self.json(response)
        logged = {
            str(item.get("to_email", "")).lower(): str(item.get("sg_message_id", ""))
            for item in (data.get("messages") or [] if isinstance(data, dict) else [])
        }
        return {
            m.message_id: logged[m.to_email.lower()]
            for m in messages
            if m.to_email.lower() in logged
        }

    # -- planning the requests ---------------------------------------------------------

    @staticmethod
    def shared_fields(m: Message) -> tuple[Any, ...]:
        return _shared_fields(m)

    def templates(self, messages: Sequence[Message]) -> tuple[Template, Template] | None:
        """Shared text and HTML templates, if the personal parts fit SendGrid's limit."""
        text = factor([m.text for m in messages], "\n", lambda k: f"-nlpt{k}-", reserved=RESERVED)
        html = factor(
            [m.html for m in messages], ("\n", ">"), lambda k: f"-nlph{k}-", reserved=RESERVED
        )
        if text is None or html is None:
            return None
        overhead = 8 * (len(text.markers) + len(html.markers))
        for index in range(len(messages)):
            if text.value_bytes(index) + html.value_bytes(index) + overhead > SUBSTITUTIONS_LIMIT:
                return None
        return text, html

    # -- one request -----------------------------------------------------------------

    def _send(
        self, messages: Sequence[Message], text: Template, html: Template
    ) -> list[SendResult]:
        body = encode_json(self.payload(messages, text, html))
        response = self.post(PATH, body=body, headers=JSON_HEADERS)
        return self.parse(response, messages)

    def payload(
        self, messages: Sequence[Message], text: Template, html: Template
    ) -> dict[str, Any]:
        first = messages[0]
        data: dict[str, Any] = {
            "personalizations": [
                self.personalization(m, {**_subs(text, i), **_subs(html, i)})
                for i, m in enumerate(messages)
            ],
            "from": email_object(first.from_addr),
            "content": [
                {"type": kind, "value": tpl.text}
                for kind, tpl in (("text/plain", text), ("text/html", html))
                if tpl.text
            ],
        }
        if first.reply_to:
            data["reply_to"] = email_object(first.reply_to)
        categories = [first.tag] if first.tag else []
        if self.email_logs and first.metadata.get("batch"):
            categories.append(f"batch-{first.metadata['batch']}")
        if categories:
            data["categories"] = categories
        return data

    @staticmethod
    def personalization(m: Message, substitutions: dict[str, str]) -> dict[str, Any]:
        data: dict[str, Any] = {
            "to": [email_object(m.to_email, m.to_name)],
            "subject": m.subject,
            "headers": {"Message-ID": m.message_id, **m.headers},
            "custom_args": {**m.metadata, "message_id": m.message_id},
        }
        if substitutions:
            data["substitutions"] = substitutions
        return data

    # -- reply -----------------------------------------------------------------------

    def parse(self, response: requests.Response, messages: Sequence[Message]) -> list[SendResult]:
        status = response.status_code
        if status in (200, 202):  # 200 only in sandbox mode
            batch_id = response.headers.get("X-Message-Id", "")
            return [SendResult(m.message_id, m.to_email, Status.QUEUED, batch_id) for m in messages]
        if status == 400:
            return self.parse_400(response, messages)
        if status in ACCOUNT_ERRORS:
            raise self.refuse(response, "SendGrid refused the request", hint=ACCOUNT_ERRORS[status])
        raise self.unexpected(response)

    def parse_400(
        self, response: requests.Response, messages: Sequence[Message]
    ) -> list[SendResult]:
        """Errors naming personalizations fail those recipients; the rest is sent again."""
        errors = _errors(self.json(response))
        bad: dict[int, str] = {}
        for error in errors:
            match = PERSONALIZATION.match(str(error.get("field") or ""))
            if match is None or int(match.group(1)) >= len(messages):
                raise self.refuse(
                    response, "SendGrid refused the request", hint="fix the fields SendGrid names"
                )
            bad.setdefault(int(match.group(1)), self.redact(str(error.get("message", ""))))
        if not bad:
            raise self.refuse(response, "SendGrid refused the request")
        failed = [
            SendResult(m.message_id, m.to_email, STATUS_BY_CODE[400], reason=bad[i])
            for i, m in enumerate(messages)
            if i in bad
        ]
        rest = [m for i, m in enumerate(messages) if i not in bad]
        return failed + (self._send_merged(rest) if rest else [])

    def reason_from(self, data: Any) -> str:
        errors = _errors(data)
        if not errors:
            return super().reason_from(data)
        return "; ".join(
            f"{e['field']}: {e.get('message', '')}" if e.get("field") else str(e.get("message", ""))
            for e in errors
        )


def email_object(address: str, name: str = "") -> dict[str, str]:
    """SendGrid's ``{email, name}``; names with , or ; are quoted (a SendGrid bug, per anymail)."""
    if not name:
        name, address = parseaddr(address)
    data = {"email": address}
    if name:
        data["name"] = f'"{quote(name)}"' if any(c in name for c in ",;") else name
    return data


def _shared_fields(m: Message) -> tuple[str, str, str]:
    return (m.from_addr, m.reply_to, m.tag)


def _subs(template: Template, index: int) -> dict[str, str]:
    return dict(zip(template.markers, template.values[index], strict=True))


def _errors(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, dict) and isinstance(data.get("errors"), list):
        return [e for e in data["errors"] if isinstance(e, dict)]
    return []
