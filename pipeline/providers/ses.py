"""Amazon SES v2: ``POST /v2/email/outbound-emails`` (SendEmail), one message per call.

Requests are SigV4-signed (service ``ses``) by ``requests-aws4auth`` with the AWS
credentials from the environment. ``Content.Simple`` carries subject, both bodies and
our headers (``Headers``: printable ASCII, so other text is RFC 2047 encoded). From,
To and Reply-To must be 7-bit ASCII too: display names are RFC 2047 encoded-words,
domains IDNA (see :func:`ses_address`). SES
replaces the Message-ID header with its own: the ``MessageId`` it answers is the
provider id, and webhooks match on it.

A batch here is a run of SendEmail calls (``max_batch`` 50) on one keep-alive session.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from email.policy import SMTP
from email.utils import formataddr, parseaddr
from typing import Any

import requests
from requests_aws4auth import AWS4Auth

from pipeline.errors import ConfigError, ProviderError
from pipeline.message import Message, ascii_domain, json_bodies
from pipeline.providers.base import SendResult, Status, send_in_parts
from pipeline.providers.http import JSON_HEADERS, HttpProvider, encode_json
from pipeline.providers.retry import Sleep
from pipeline.settings import Settings

PATH = "/v2/email/outbound-emails"
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
ADDRESS_PROBLEM = re.compile(r"address|@domain|domain contains|mailbox", re.IGNORECASE)
UNFOLDED = SMTP.clone(max_line_length=0)
CREDENTIALS = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN if temporary)"

# SES error type about one message or recipient -> our status.
STATUS_BY_ERROR: dict[str, Status] = {
    "MessageRejected": Status.REJECTED,  # content, or an unverified recipient in the sandbox
    "BadRequestException": Status.INVALID,  # only when it names an address (see ADDRESS_PROBLEM)
}

# SES error type about the account or the request -> what to fix.
ACCOUNT_ERRORS: dict[str, str] = {
    "AccountSuspendedException": "SES suspended sending for this account: see the Account"
    " dashboard in the SES console",
    "SendingPausedException": "sending is paused for this account or configuration set:"
    " resume it in the SES console",
    "MailFromDomainNotVerifiedException": "verify the MAIL FROM domain of site.from in SES",
    "NotFoundException": "check provider.ses_configuration_set: SES has no such configuration set",
    "LimitExceededException": "an SES sending quota is used up: resume later or ask AWS for more",
    "BadRequestException": "fix what SES names in its reason",
}
QUOTA_ERRORS = frozenset({"LimitExceededException"})
AUTH_ERRORS = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "InvalidClientTokenId",
        "ExpiredTokenException",
        "MissingAuthenticationToken",
    }
)
TRANSIENT_ERRORS = frozenset({"TooManyRequestsException", "ThrottlingException", "Throttling"})


class SesProvider(HttpProvider):
    name = "ses"
    encodings = frozenset({"json"})
    max_batch = 50
    auth_hint = f"check {CREDENTIALS}, their ses:SendEmail permission and provider.ses_region"

    def __init__(
        self,
        *,
        access_key: str,
        secret_key: str,
        session_token: str = "",
        region: str,
        configuration_set: str = "",
        **http: Any,
    ) -> None:
        super().__init__(secrets=(secret_key, session_token, access_key), **http)
        self.region = region
        self.configuration_set = configuration_set
        self._auth = AWS4Auth(
            access_key, secret_key, region, "ses", session_token=session_token or None
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, sleep: Sleep | None = None) -> SesProvider:
        access_key = settings.secret("AWS_ACCESS_KEY_ID", needed_for="provider ses")
        secret_key = settings.secret("AWS_SECRET_ACCESS_KEY", needed_for="provider ses")
        options = settings.provider_options
        region = str(options.get("ses_region") or "").strip()
        if not REGION.match(region):
            raise ConfigError(
                f"provider ses needs provider.ses_region (an AWS region), got {region!r}",
                hint='[provider] ses_region = "us-east-1"',
            )
        return cls(
            access_key=access_key,
            secret_key=secret_key,
            session_token=settings.env.get("AWS_SESSION_TOKEN", ""),
            region=region,
            configuration_set=str(options.get("ses_configuration_set") or ""),
            **cls.http_options(settings, sleep, f"https://email.{region}.amazonaws.com"),
        )

    def request_auth(self) -> AWS4Auth:
        return self._auth

    def __repr__(self) -> str:
        return f"<SesProvider {self.region} {self.base_url}>"

    # -- request ---------------------------------------------------------------------

    max_in_flight = 16  # one call per message: more calls in flight to keep up

    def max_send_rate(self) -> float | None:
        """``SendQuota.MaxSendRate`` from GetAccount (``GET /v2/email/account``): the
        messages a second this account may send (1 in the sandbox). None when unknown."""
        try:
            response = self.ask("GET", "/v2/email/account")
        except ProviderError:
            return None
        if response.status_code != 200:
            return None
        try:
            rate = float(self.json(response).get("SendQuota", {}).get("MaxSendRate", 0))
        except (ProviderError, AttributeError, TypeError, ValueError):
            return None
        return rate if rate > 0 else None

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        self.check_batch(messages)
        return send_in_parts([[m] for m in messages], self._send_one)

    def _send_one(self, messages: Sequence[Message]) -> list[SendResult]:
        [m] = messages
        if m.needs_smtputf8:
            reason = "SES takes only ASCII before the @ (it has no SMTPUTF8)"
            return [SendResult(m.message_id, m.to_email, Status.INVALID, reason=reason)]
        response = self.post(PATH, body=encode_json(self.payload(m)), headers=JSON_HEADERS)
        return [self.parse(response, m)]

    def payload(self, m: Message) -> dict[str, Any]:
        html, text = json_bodies(m)
        headers = [{"Name": "Message-ID", "Value": m.message_id}]
        headers += [{"Name": k, "Value": ascii_header(v)} for k, v in m.headers.items()]
        data: dict[str, Any] = {
            "FromEmailAddress": ses_address(m.from_addr),
            "Destination": {"ToAddresses": [ses_address(m.to_email, m.to_name)]},
            "Content": {
                "Simple": {
                    "Subject": {"Data": m.subject, "Charset": "UTF-8"},
                    "Body": {
                        "Text": {"Data": text, "Charset": "UTF-8"},
                        "Html": {"Data": html, "Charset": "UTF-8"},
                    },
                    "Headers": headers,
                }
            },
        }
        if m.reply_to:
            data["ReplyToAddresses"] = [ses_address(m.reply_to)]
        tags = ([("tag", m.tag)] if m.tag else []) + list(m.metadata.items())
        if tags:
            data["EmailTags"] = [
                {"Name": TAG_UNSAFE.sub("_", k), "Value": TAG_UNSAFE.sub("_", v)} for k, v in tags
            ]
        if self.configuration_set:
            data["ConfigurationSetName"] = self.configuration_set
        return data

    # -- reply -----------------------------------------------------------------------

    def is_transient(self, response: requests.Response) -> bool:
        return super().is_transient(response) or self.error_type(response) in TRANSIENT_ERRORS

    def parse(self, response: requests.Response, m: Message) -> SendResult:
        if response.status_code == 200:
            data = self.json(response)
            return SendResult(
                m.message_id, m.to_email, Status.QUEUED, str(data.get("MessageId", ""))
            )
        kind = self.error_type(response)
        reason = self.reason(response)
        if kind in AUTH_ERRORS or response.status_code in (401, 403):
            raise self.refuse(
                response, f"SES refused the credentials ({kind})", hint=self.auth_hint
            )
        if kind == "MessageRejected" and not _names_sender(reason, m):
            return SendResult(m.message_id, m.to_email, STATUS_BY_ERROR[kind], reason=reason)
        if kind == "MessageRejected":
            hint = (
                "verify site.from (address or domain) in SES, and leave the sandbox to mail others"
            )
            raise self.refuse(response, "SES refused the sender", hint=hint)
        if kind == "BadRequestException" and ADDRESS_PROBLEM.search(reason):
            return SendResult(m.message_id, m.to_email, STATUS_BY_ERROR[kind], reason=reason)
        if kind in ACCOUNT_ERRORS:
            retryable = kind in QUOTA_ERRORS
            raise self.refuse(
                response,
                f"SES refused to send ({kind})",
                hint=ACCOUNT_ERRORS[kind],
                retryable=retryable,
            )
        raise self.unexpected(response)

    def error_type(self, response: requests.Response) -> str:
        """SES's error name, from ``x-amzn-ErrorType`` or the JSON body."""
        header = response.headers.get("x-amzn-ErrorType", "")
        if header:
            return header.split(":", 1)[0]
        try:
            data = response.json()
        except ValueError:
            return ""
        if not isinstance(data, dict):
            return ""
        name = str(data.get("__type") or data.get("code") or data.get("Code") or "")
        return name.rsplit("#", 1)[-1]


def ses_address(address: str, name: str | None = None) -> str:
    """An address as SES takes it: 7-bit ASCII only (SES has no SMTPUTF8).

    A non-ASCII display name becomes an RFC 2047 encoded-word (``email.utils.formataddr``
    encodes it; sending it raw makes SES refuse the message) and an international
    domain its IDNA form. ``address`` is a bare address with ``name``, or (``name``
    None) a formatted one such as ``site.from``.
    """
    if name is None:
        name, address = parseaddr(address)
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        return address  # refused by SES: SendEmail names the address (see _send_one)
    return formataddr((name, f"{local}@{ascii_domain(domain)}"), charset="utf-8")


def ascii_header(value: str) -> str:
    """SES takes printable ASCII header values: encode non-ASCII words (RFC 2047), unfolded."""
    if value.isascii():
        return value
    folded = UNFOLDED.fold("X", UNFOLDED.header_factory("X", value))
    return folded.removeprefix("X: ").rstrip("\r\n")


def _names_sender(reason: str, m: Message) -> bool:
    """Whether a MessageRejected reason is about our From address rather than the recipient."""
    sender = m.from_addr.rsplit("<", 1)[-1].rstrip(">").strip().lower()
    return bool(sender) and sender in reason.lower() and m.to_email.lower() not in reason.lower()
