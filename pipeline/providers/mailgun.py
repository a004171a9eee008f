"""Mailgun: ``POST /v3/{domain}/messages``, multipart form, basic auth ``api:KEY``.

A batch is one request with up to 1000 ``to`` fields and ``recipient-variables``:
with them Mailgun sends each recipient their own message (without them every
recipient would see the whole To list). The shared body is recovered with
:mod:`pipeline.providers.merge`; personal parts, per-recipient headers
(``h:List-Unsubscribe: %recipient.h0%``) and our Message-ID (``v:message_id``, for
webhooks) are recipient variables. Mailgun answers one id for the whole batch.

A lost answer is settled through the Events API: the ``accepted`` events of our From
address and subject since the batch was claimed, matched on the ``message_id`` user
variable each message carries.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import requests

from pipeline.errors import ConfigError, ProviderError
from pipeline.message import Message
from pipeline.providers.base import SendResult, Status, send_in_parts
from pipeline.providers.http import HttpProvider
from pipeline.providers.merge import MergedSend, Template, factor
from pipeline.providers.retry import Sleep
from pipeline.settings import Settings

SECRET = "MAILGUN_API_KEY"
HOSTS = {"us": "https://api.mailgun.net", "eu": "https://api.eu.mailgun.net"}
RESERVED = "%recipient."
VARIABLES_LIMIT = 10_000  # bytes of personal body parts per recipient before splitting
EVENTS_PAGE = 300  # Events API: limit <= 300
EVENTS_MARGIN = dt.timedelta(minutes=2)  # clock skew between us and Mailgun
EVENTS_PAGES = 1000  # a bound on paging, far past any one batch's window

# HTTP status -> our status, for a refusal about the recipient (a bad To address).
STATUS_BY_CODE: dict[int, Status] = {400: Status.INVALID}
RECIPIENT_ERROR = re.compile(
    r"'?to'? parameter is not a valid address|invalid recipient|recipient address", re.IGNORECASE
)

# HTTP status -> what to fix, for refusals about the account or the request.
ACCOUNT_ERRORS: dict[int, str] = {
    401: f"check {SECRET}: it must be a Mailgun private API key for this region",
    403: "Mailgun refused to send for this domain: a sandbox domain only mails authorized"
    " recipients, and a disabled domain or account must be re-enabled in Mailgun",
    404: "check provider.mailgun_domain and provider.mailgun_region (us or eu)",
    413: "the request is too large (25 MB at most): lower send.batch_size",
}


class MailgunProvider(MergedSend, HttpProvider):
    name = "mailgun"
    max_batch = 1000
    default_base_url = HOSTS["us"]
    default_lookup_lag = 60.0  # events can take a while to be listed
    auth_hint = ACCOUNT_ERRORS[401]

    def __init__(self, *, api_key: str, domain: str, **http: Any) -> None:
        super().__init__(secrets=(api_key,), **http)
        self._api_key = api_key
        self.domain = domain
        self.path = f"/v3/{quote(domain, safe='')}/messages"

    @classmethod
    def from_settings(cls, settings: Settings, *, sleep: Sleep | None = None) -> MailgunProvider:
        api_key = settings.secret(SECRET, needed_for="provider mailgun")
        options = settings.provider_options
        domain = str(options.get("mailgun_domain") or "").strip()
        if not domain or "/" in domain:
            raise ConfigError(
                "provider mailgun needs provider.mailgun_domain in newsletter.toml",
                hint='[provider] mailgun_domain = "mg.example.com" (your sending domain)',
            )
        region = str(options.get("mailgun_region") or "us").lower()
        if region not in HOSTS:
            raise ConfigError(
                f"provider.mailgun_region must be us or eu, got {region!r}",
                hint='[provider] mailgun_region = "eu" for domains in the EU region',
            )
        return cls(
            api_key=api_key,
            domain=domain,
            **cls.http_options(settings, sleep, HOSTS[region]),
        )

    def request_auth(self) -> tuple[str, str]:
        return ("api", self._api_key)

    # -- what was accepted -------------------------------------------------------------

    @property
    def can_lookup(self) -> bool:
        return True

    def lookup(self, messages: Sequence[Message], *, sent_at: dt.datetime) -> dict[str, str]:
        """Which messages Mailgun logged as ``accepted`` since ``sent_at``."""
        if not messages:
            return {}
        wanted = {m.message_id for m in messages}
        first = messages[0]
        begin = (sent_at - EVENTS_MARGIN).timestamp()
        end = (dt.datetime.now(dt.UTC) + EVENTS_MARGIN).timestamp()
        params: dict[str, Any] | None = {
            "event": "accepted",
            "begin": f"{begin:.0f}",
            "end": f"{end:.0f}",
            "ascending": "yes",
            "limit": EVENTS_PAGE,
            "from": first.from_addr,
            "subject": first.subject,
        }
        found: dict[str, str] = {}
        url = f"/v3/{quote(self.domain, safe='')}/events"
        for _ in range(EVENTS_PAGES):
            response = self.ask("GET", url, params=params)
            if response.status_code != 200:
                raise self.unexpected(response)
            data = self.json(response)
            items = data.get("items") or [] if isinstance(data, dict) else []
            for item in items:
                ours = (item.get("user-variables") or {}).get("message_id")
                if ours in wanted:
                    headers = (item.get("message") or {}).get("headers") or {}
                    found[ours] = str(headers.get("message-id") or item.get("id", ""))
            following = (data.get("paging") or {}).get("next") if items else None
            if not following or len(found) == len(wanted):
                return found
            url, params = following, None
        raise ProviderError("the Events API kept paging", provider=self.name)

    def __repr__(self) -> str:
        return f"<MailgunProvider {self.domain} {self.base_url}>"

    # -- planning the requests ---------------------------------------------------------

    @staticmethod
    def shared_fields(m: Message) -> tuple[Any, ...]:
        return _shared_fields(m)

    def templates(self, messages: Sequence[Message]) -> tuple[Template, Template] | None:
        text = factor([m.text for m in messages], "\n", _marker("t"), reserved=RESERVED)
        html = factor([m.html for m in messages], ("\n", ">"), _marker("b"), reserved=RESERVED)
        if text is None or html is None:
            return None
        for index in range(len(messages)):
            if text.value_bytes(index) + html.value_bytes(index) > VARIABLES_LIMIT:
                return None
        return text, html

    # -- one request -----------------------------------------------------------------

    def _send(
        self, messages: Sequence[Message], text: Template, html: Template
    ) -> list[SendResult]:
        body, content_type = multipart(self.fields(messages, text, html))
        response = self.post(self.path, body=body, headers={"Content-Type": content_type})
        return self.parse(response, messages)

    def fields(
        self, messages: Sequence[Message], text: Template, html: Template
    ) -> list[tuple[str, str]]:
        """The form fields of one batch, in order (``to`` repeats)."""
        first = messages[0]
        variables: dict[str, dict[str, str]] = {m.to_email: {} for m in messages}
        for template in (text, html):
            for i, m in enumerate(messages):
                variables[m.to_email].update(zip(_names(template), template.values[i], strict=True))
        fields = [("from", first.from_addr), *(("to", m.to) for m in messages)]
        fields.append(
            (
                "subject",
                _per_recipient("subject", [m.subject for m in messages], messages, variables),
            )
        )
        fields += [("text", text.text), ("html", html.text)]
        for m in messages:
            variables[m.to_email]["message_id"] = m.message_id
        fields.append(("h:Message-Id", f"{RESERVED}message_id%"))
        if first.reply_to:
            fields.append(("h:Reply-To", first.reply_to))
        for k, header in enumerate(first.headers):
            values = [m.headers[header] for m in messages]
            fields.append((f"h:{header}", _per_recipient(f"h{k}", values, messages, variables)))
        fields.append(("v:message_id", f"{RESERVED}message_id%"))
        for k, key in enumerate(first.metadata):
            values = [m.metadata[key] for m in messages]
            fields.append((f"v:{key}", _per_recipient(f"v{k}", values, messages, variables)))
        if first.tag:
            fields.append(("o:tag", first.tag))
        fields.append(("recipient-variables", json.dumps(variables, ensure_ascii=False)))
        return fields

    # -- reply -----------------------------------------------------------------------

    def parse(self, response: requests.Response, messages: Sequence[Message]) -> list[SendResult]:
        status = response.status_code
        if status == 200:
            return self.parse_ok(response, messages)
        if status == 400 and RECIPIENT_ERROR.search(self.reason(response)):
            return self.split_invalid(response, messages)
        if status == 400:
            raise self.refuse(
                response, "Mailgun refused the request", hint="fix what Mailgun names"
            )
        if status in ACCOUNT_ERRORS:
            raise self.refuse(response, "Mailgun refused the request", hint=ACCOUNT_ERRORS[status])
        raise self.unexpected(response)

    def parse_ok(
        self, response: requests.Response, messages: Sequence[Message]
    ) -> list[SendResult]:
        if "Mailgun Magnificent API" in response.text:  # Mailgun's answer to a wrong URL
            raise self.refuse(
                response,
                "not a Mailgun send endpoint",
                hint="check provider.mailgun_domain and provider.api_base_url",
                reason=response.url or "",
            )
        data = self.json(response)
        if not isinstance(data, dict) or not str(data.get("message", "")).startswith("Queued"):
            raise self.refuse(response, "unrecognised Mailgun reply")
        batch_id = str(data.get("id", ""))
        return [SendResult(m.message_id, m.to_email, Status.QUEUED, batch_id) for m in messages]

    def split_invalid(
        self, response: requests.Response, messages: Sequence[Message]
    ) -> list[SendResult]:
        """Mailgun refuses a whole batch for one bad address: halve it to find which."""
        if len(messages) == 1:
            m = messages[0]
            return [
                SendResult(
                    m.message_id, m.to_email, STATUS_BY_CODE[400], reason=self.reason(response)
                )
            ]
        half = len(messages) // 2
        return send_in_parts([messages[:half], messages[half:]], self._send_merged)


def multipart(fields: Sequence[tuple[str, str]]) -> tuple[bytes, str]:
    """``multipart/form-data`` (RFC 7578) for text fields: the body and its Content-Type.

    Written here rather than through ``requests``' file encoder, which costs as much as
    the rest of the request for a 1000-recipient batch.
    """
    encoded = [(_field_name(name), value.encode()) for name, value in fields]
    boundary = uuid.uuid4().hex.encode()
    while any(boundary in value for _, value in encoded):
        boundary = uuid.uuid4().hex.encode()
    dash = b"--" + boundary
    parts = [
        b'%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (dash, name, value)
        for name, value in encoded
    ]
    parts.append(dash + b"--\r\n")
    return b"".join(parts), f"multipart/form-data; boundary={boundary.decode()}"


def _field_name(name: str) -> bytes:
    """A form field name, escaped as HTML does (a quote or line break cannot break out)."""
    return name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A").encode()


def _shared_fields(m: Message) -> tuple[Any, ...]:
    return (m.from_addr, m.reply_to, m.tag, tuple(m.headers), tuple(m.metadata))


def _marker(prefix: str) -> Any:
    return lambda k: f"{RESERVED}{prefix}{k}%"


def _names(template: Template) -> list[str]:
    return [marker[len(RESERVED) : -1] for marker in template.markers]


def _per_recipient(
    name: str, values: list[str], messages: Sequence[Message], variables: dict[str, dict[str, str]]
) -> str:
    """The field value: literal when everyone has the same, else a recipient variable."""
    if all(value == values[0] for value in values):
        return values[0]
    for m, value in zip(messages, values, strict=True):
        variables[m.to_email][name] = value
    return f"{RESERVED}{name}%"
