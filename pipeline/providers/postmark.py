"""Postmark: ``POST /email/batch``, up to 500 messages, ``X-Postmark-Server-Token``.

The batch endpoint answers HTTP 200 even when items fail: each reply item carries an
``ErrorCode`` (0 = accepted) in request order. ErrorCode 406 means an inactive
recipient (an earlier hard bounce or spam complaint): the result asks to suppress it.
Postmark has no idempotency key, so a lost answer is never retried blindly: the
Messages API (``GET /messages/outbound``, filtered by the ``batch`` metadata every
message of a batch carries) tells which messages of the batch Postmark accepted.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

import requests

from pipeline.errors import ProviderError
from pipeline.message import Message
from pipeline.providers.base import SendResult, Status
from pipeline.providers.http import JSON_HEADERS, HttpProvider
from pipeline.providers.jsonbody import HOLE, JsonBody, json_batch
from pipeline.providers.retry import Sleep
from pipeline.settings import Settings

SECRET = "POSTMARK_SERVER_TOKEN"

# ErrorCodes about one message or recipient -> our status.
STATUS_BY_CODE: dict[int, Status] = {
    0: Status.QUEUED,
    300: Status.INVALID,  # invalid email request (a bad To address, ...)
    406: Status.REJECTED,  # inactive recipient: hard bounce or spam complaint earlier
}
SUPPRESS_CODES = frozenset({406})

# ErrorCodes about the account -> what to fix. Once fixed, sending again can work, so a
# recipient refused with one of these is retried on the next run.
# (Codes from postmarkapp.com/developer/api/overview#error-codes.)
ACCOUNT_ERRORS: dict[int, str] = {
    10: f"check {SECRET}: it must be a server API token (not the account token)",
    400: "add the From address as a sender signature in Postmark",
    401: "confirm the From address's sender signature in Postmark",
    405: "the Postmark account may not send (out of credits?): check its billing page",
    412: "the Postmark account is pending approval and may only send to its own domain",
    413: "Postmark has stopped this account from sending (Account May Not Send): see the"
    " account in Postmark and ask Postmark support why",
    1235: "check provider.postmark_message_stream: Postmark has no such message stream",
}
# ErrorCodes that say our request itself was wrong: a bug here, never retried as it is.
REQUEST_BUGS: dict[int, str] = {
    402: "Postmark could not read the request (Invalid JSON): a bug, please report it",
    403: "the request did not match Postmark's API (Incompatible JSON): a bug, please report it",
    409: "Postmark wants a JSON request (JSON required): a bug, please report it",
    410: "more than 500 messages in one batch (Too many batch messages): a bug, please report it",
}
HINTS = {**ACCOUNT_ERRORS, **REQUEST_BUGS}

# ErrorCode 300 is about the recipient only when it names the To field (after anymail).
TO_ERROR = re.compile(r"^(Invalid|Error\s+parsing)\s+'To'", re.IGNORECASE)
INACTIVE_OK = "inactive addresses"
SEARCH_PAGE = 500  # Messages API: count <= 500 and count + offset <= 10,000
SEARCH_LIMIT = 10_000


class PostmarkProvider(HttpProvider):
    name = "postmark"
    encodings = frozenset({"json"})
    max_batch = 500
    # Postmark documents no limit on concurrent batch calls (it answers 429 when pushed,
    # and the window halves); 16 batches hide ~300 ms per call on two cores.
    max_in_flight = 16
    default_base_url = "https://api.postmarkapp.com"
    auth_hint = ACCOUNT_ERRORS[10]

    def __init__(self, *, token: str, message_stream: str = "broadcast", **http: Any) -> None:
        super().__init__(secrets=(token,), **http)
        self._token = token
        self.message_stream = message_stream

    @classmethod
    def from_settings(cls, settings: Settings, *, sleep: Sleep | None = None) -> PostmarkProvider:
        token = settings.secret(SECRET, needed_for="provider postmark")
        options = settings.provider_options
        return cls(
            token=token,
            message_stream=options.get("postmark_message_stream") or "broadcast",
            **cls.http_options(settings, sleep),
        )

    def auth_headers(self) -> dict[str, str]:
        return {"X-Postmark-Server-Token": self._token}

    # -- what was accepted -------------------------------------------------------------

    @property
    def can_lookup(self) -> bool:
        return True

    def lookup(self, messages: Sequence[Message], *, sent_at: dt.datetime) -> dict[str, str]:
        """The batch's messages Postmark holds, found by their ``batch`` metadata."""
        wanted = {m.message_id for m in messages}
        batch = messages[0].metadata.get("batch", "") if messages else ""
        if not batch:
            raise ProviderError("these messages carry no batch key to look up", provider=self.name)
        found: dict[str, str] = {}
        offset = 0
        while offset < SEARCH_LIMIT:
            params = {"count": SEARCH_PAGE, "offset": offset, "metadata_batch": batch}
            response = self.ask("GET", "/messages/outbound", params=params)
            if response.status_code != 200:
                raise self.unexpected(response)
            data = self.json(response)
            items = data.get("Messages") or [] if isinstance(data, dict) else []
            for item in items:
                ours = (item.get("Metadata") or {}).get("message_id")
                if ours in wanted:
                    found[ours] = str(item.get("MessageID", ""))
            offset += len(items)
            if not items or offset >= int(data.get("TotalCount", 0) or 0):
                break
        return found

    # -- request ---------------------------------------------------------------------

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        self.check_batch(messages)
        if not messages:
            return []
        body = self.batch_body(messages)
        for m in messages:  # the body has them now: one copy in flight, not two
            m.drop_bodies()
        response = self.post("/email/batch", body=body, headers=JSON_HEADERS)
        return self.parse(response, messages)

    def batch_body(self, messages: Sequence[Message]) -> bytes | JsonBody:
        """The request body, a JSON array of :meth:`payload` (see :func:`json_batch`)."""
        return json_batch(messages, self.payload)

    def payload(self, m: Message) -> dict[str, Any]:
        """One message of the batch, as Postmark documents it, with a :data:`HOLE` for
        HtmlBody and TextBody (:func:`json_batch` fills them)."""
        headers = [{"Name": "Message-ID", "Value": m.message_id}]
        headers += [{"Name": name, "Value": value} for name, value in m.headers.items()]
        data: dict[str, Any] = {
            "From": m.from_addr,
            "To": m.to,
            "Subject": m.subject,
            "HtmlBody": HOLE,
            "TextBody": HOLE,
            "Headers": headers,
            "Metadata": {**m.metadata, "message_id": m.message_id},
            "MessageStream": self.message_stream,
        }
        if m.reply_to:
            data["ReplyTo"] = m.reply_to
        if m.tag:
            data["Tag"] = m.tag
        return data

    # -- reply -----------------------------------------------------------------------

    def parse(self, response: requests.Response, messages: Sequence[Message]) -> list[SendResult]:
        if response.status_code == 200:
            return self.parse_items(response, messages, self.json(response))
        if response.status_code == 422:
            return self.parse_422(response, messages)
        raise self.unexpected(response)

    def parse_items(
        self, response: requests.Response, messages: Sequence[Message], items: Any
    ) -> list[SendResult]:
        if not isinstance(items, list) or len(items) != len(messages):
            raise self.refuse(
                response,
                f"the reply does not hold one result per message ({len(messages)} sent)",
            )
        results = [self.result(m, item) for m, item in zip(messages, items, strict=True)]
        blocking = self.blocking_error(response, items)
        if blocking and not any(r.accepted for r in results):
            raise blocking
        return results

    def result(self, m: Message, item: dict[str, Any]) -> SendResult:
        code = int(item.get("ErrorCode", 0) or 0)
        text = self.redact(str(item.get("Message", "")))
        if code == 0 and INACTIVE_OK in text:
            return self.failed(m, Status.REJECTED, text, suppress=True)
        if code == 0:
            return SendResult(
                m.message_id, m.to_email, Status.QUEUED, str(item.get("MessageID", ""))
            )
        if code == 300 and not TO_ERROR.match(text):
            return self.failed(m, Status.FAILED, text)  # about the message, not the address
        if code in STATUS_BY_CODE:
            return self.failed(m, STATUS_BY_CODE[code], text, suppress=code in SUPPRESS_CODES)
        # Account-level codes say nothing against this recipient: trying later can help.
        # A request bug (or a code we do not know) would fail the same way again.
        return self.failed(m, Status.FAILED, f"{code}: {text}", retryable=code in ACCOUNT_ERRORS)

    @staticmethod
    def failed(
        m: Message, status: Status, reason: str, *, retryable: bool = False, suppress: bool = False
    ) -> SendResult:
        return SendResult(
            m.message_id, m.to_email, status, reason=reason, retryable=retryable, suppress=suppress
        )

    def blocking_error(self, response: requests.Response, items: list[Any]) -> ProviderError | None:
        """The first item error about the account or the request itself, if any."""
        for item in items:
            code = int(item.get("ErrorCode", 0) or 0)
            text = str(item.get("Message", ""))
            if code in HINTS or (code == 300 and not TO_ERROR.match(text)):
                hint = HINTS.get(code, "fix the message fields Postmark names")
                return self.refuse(
                    response,
                    f"Postmark refused the batch (ErrorCode {code})",
                    hint=hint,
                    reason=text,
                )
        return None

    def parse_422(
        self, response: requests.Response, messages: Sequence[Message]
    ) -> list[SendResult]:
        """A refused request: about the one recipient of a one-message batch, or all of it."""
        body = self.json(response)
        code = int(body.get("ErrorCode", -1)) if isinstance(body, dict) else -1
        recipient_level = code == 406 or (code == 300 and TO_ERROR.match(self.reason(response)))
        if len(messages) == 1 and recipient_level:
            return [self.result(messages[0], body)]
        hint = HINTS.get(code, "fix what Postmark names in its reason")
        raise self.refuse(response, f"Postmark refused the request (ErrorCode {code})", hint=hint)

    def reason_from(self, data: Any) -> str:
        if isinstance(data, dict) and "Message" in data:
            return str(data["Message"])
        return super().reason_from(data)
