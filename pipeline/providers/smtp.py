"""SMTP: any server, configured by ``SMTP_URL`` (a secret: it may hold a password).

* ``smtp://user:pass@host:587`` - STARTTLS when the server offers it, then AUTH;
* ``smtps://user:pass@host:465`` - TLS from the first byte;
* ``smtp://127.0.0.1:1025`` - no TLS offered, no credentials: local test servers;
* ``smtp+insecure://user:pass@host:25`` - AUTH even without TLS (credentials in clear).

Credentials never cross the network in clear text by accident: when the server offers
no STARTTLS, ``smtp://`` logs in only over a loopback connection (a relay on this
machine) and otherwise refuses before sending AUTH; ``smtp+insecure://`` says that the
author accepts the risk (a trusted private network).

One connection is reused for many messages and across batches, and reopened when it
drops. Each message is one MAIL/RCPT/DATA transaction of :func:`pipeline.message.to_bytes`
(CRLF line endings). A 4xx reply is retried with backoff; a 5xx reply to RCPT or DATA
fails that recipient only; a 5xx to MAIL FROM (our sender) stops the send.

A connection lost after the message's final ``.`` was sent, before the server's reply,
leaves that one message in doubt (:class:`OutcomeUnknown`): the server may have taken
it. It is not sent again; SMTP has no way to ask, so the author decides.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.utils import parseaddr
from urllib.parse import unquote, urlsplit

from pipeline.errors import ConfigError, ProviderError
from pipeline.message import Message, ascii_domain, to_bytes
from pipeline.providers.base import OutcomeUnknown, Provider, SendResult, Status, send_in_parts
from pipeline.providers.retry import RetryPolicy, Sleep, TryAgain, call_with_retry, retry_policy
from pipeline.settings import Settings

SECRET = "SMTP_URL"

# Permanent reply code to RCPT or DATA -> our status (other 5xx: rejected).
STATUS_BY_CODE: dict[int, Status] = {
    550: Status.REJECTED,  # mailbox unavailable / policy
    551: Status.REJECTED,  # user not local
    552: Status.REJECTED,  # storage exceeded
    553: Status.INVALID,  # mailbox name not allowed
    554: Status.REJECTED,  # transaction failed
    501: Status.INVALID,  # syntax error in the address
}


class PlainAuthRefused(smtplib.SMTPException):
    """AUTH would go over a connection without TLS to another machine."""


# What the user must fix when connecting fails this way (the rest is retried).
CONNECT_ERRORS: tuple[tuple[type[Exception], str, str], ...] = (
    (
        smtplib.SMTPAuthenticationError,
        "the SMTP server refused the login",
        "check the user and password in SMTP_URL",
    ),
    (
        smtplib.SMTPNotSupportedError,
        "the SMTP server offers no AUTH",
        "use smtps://, a server that offers STARTTLS, or no credentials in SMTP_URL",
    ),
    (
        PlainAuthRefused,
        "the SMTP server offers no STARTTLS: not sending the password in clear text",
        "use smtps:// (port 465) or a server that offers STARTTLS; on a network you trust,"
        " smtp+insecure:// sends the login without TLS",
    ),
    (
        ssl.SSLError,
        "TLS with the SMTP server failed",
        "check the host and port in SMTP_URL (465 for smtps://, 587 for smtp://)",
    ),
)
# Enhanced status codes (RFC 3463) that mean "this address does not exist": suppress it.
SUPPRESS_CODES = ("5.1.1", "5.1.2", "5.1.3", "5.1.10", "5.2.1")
LEADING_DOT = re.compile(rb"(?m)^\.")  # RFC 5321 4.5.2 transparency


class ReplyLost(Exception):
    """The whole message went out after DATA, and the connection died before the reply."""


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to connect; ``password`` never shows in repr."""

    host: str
    port: int
    username: str = ""
    password: str = field(default="", repr=False)
    implicit_tls: bool = False
    insecure: bool = False  # smtp+insecure://: AUTH allowed without TLS

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def parse_smtp_url(url: str) -> SmtpTarget:
    """``SMTP_URL`` as a target; the error never repeats the URL (it may hold a password)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(
            f"{SECRET} is not a valid URL", hint="use smtp://user:pass@host:587 or smtps://...:465"
        ) from exc
    if parts.scheme not in ("smtp", "smtps", "smtp+insecure") or not parts.hostname:
        raise ConfigError(
            f"{SECRET} must start with smtp://, smtps:// or smtp+insecure:// and name a host",
            hint="e.g. smtp://user:pass@smtp.example.com:587 (percent-encode @ : / in a password)",
        )
    username = unquote(parts.username or "")
    implicit_tls = parts.scheme == "smtps"
    default_port = 465 if implicit_tls else (587 if username else 25)
    return SmtpTarget(
        host=parts.hostname,
        port=port or default_port,
        username=username,
        password=unquote(parts.password or ""),
        implicit_tls=implicit_tls,
        insecure=parts.scheme == "smtp+insecure",
    )


def on_loopback(conn: smtplib.SMTP) -> bool:
    """Whether the connection's peer is this machine (127.0.0.0/8, ::1): what it carries
    never crosses a network. Decided by the socket's peer address, not by the name."""
    try:
        peer = conn.sock.getpeername()[0] if conn.sock else ""
        return ipaddress.ip_address(peer.split("%", 1)[0]).is_loopback
    except (OSError, ValueError):
        return False


class SmtpReply(Exception):
    """A non-success reply to one step of a transaction."""

    def __init__(self, step: str, code: int, text: bytes | str) -> None:
        self.step = step
        self.code = code
        self.text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
        super().__init__(f"{step}: {code} {self.text}")


class RecipientTryAgain(TryAgain):
    """A 4xx about this recipient: after the last retry only this message fails."""


def envelope_address(m: Message) -> str:
    """The RCPT TO address: the domain in IDNA (ASCII); the local part as given."""
    local, _, domain = m.to_email.rpartition("@")
    return f"{local}@{ascii_domain(domain)}"


def _mail_options(conn: smtplib.SMTP, m: Message) -> list[str]:
    """SMTPUTF8 (RFC 6531) for a non-ASCII local part, when the server offers it."""
    if not m.needs_smtputf8:
        return []
    if not conn.has_extn("smtputf8"):
        raise SmtpReply(
            "RCPT TO",
            553,
            b"5.6.7 the server does not offer SMTPUTF8, needed for this non-ASCII address",
        )
    return ["SMTPUTF8", "BODY=8BITMIME"] if conn.has_extn("8bitmime") else ["SMTPUTF8"]


class SmtpProvider(Provider):
    name = "smtp"
    encodings = frozenset({"mime"})
    max_batch = 100

    def __init__(
        self, target: SmtpTarget, *, timeout: float = 15.0, retry: RetryPolicy | None = None
    ) -> None:
        self.target = target
        self.timeout = float(timeout)
        self.retry = retry or RetryPolicy()
        self._conn: smtplib.SMTP | None = None
        self.connections = 0  # how many connections were opened (reuse is observable)

    @classmethod
    def from_settings(cls, settings: Settings, *, sleep: Sleep | None = None) -> SmtpProvider:
        target = parse_smtp_url(settings.secret(SECRET, needed_for="provider smtp"))
        return cls(
            target,
            timeout=settings.provider_options.get("timeout", 15.0),
            retry=retry_policy(settings, sleep),
        )

    def __repr__(self) -> str:
        return f"<SmtpProvider {self.target.where}>"

    # -- sending ---------------------------------------------------------------------

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        self.check_batch(messages)
        return send_in_parts([[m] for m in messages], self._send_one)

    def _send_one(self, messages: Sequence[Message]) -> list[SendResult]:
        [m] = messages
        data = to_bytes(m)
        sender = parseaddr(m.from_addr)[1]
        try:
            result = call_with_retry(
                lambda: self._attempt(m, sender, data), self.retry, provider=self.name
            )
        except ProviderError as exc:
            if not isinstance(exc.__cause__, RecipientTryAgain):
                raise
            result = SendResult(
                m.message_id, m.to_email, Status.FAILED, reason=exc.reason, retryable=True
            )
        return [result]

    def _attempt(self, m: Message, sender: str, data: bytes) -> SendResult:
        reused = self._conn is not None
        try:
            reply = self._transaction(self._connection(), sender, m, data)
        except ReplyLost as exc:
            self._drop()
            raise OutcomeUnknown(
                f"the connection to {self.target.where} was lost after the message was sent",
                provider=self.name,
                reason=str(exc.__cause__ or exc),
                retryable=True,
                hint="the server may have accepted it",
            ) from exc
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            if reused:  # an idle connection the server closed: reconnect at once
                return self._attempt(m, sender, data)
            raise TryAgain(
                f"connection to {self.target.where} lost ({type(exc).__name__})"
            ) from exc
        except SmtpReply as exc:
            return self._refused(m, exc)
        return SendResult(m.message_id, m.to_email, Status.SENT, provider_id=reply)

    def _transaction(self, conn: smtplib.SMTP, sender: str, m: Message, data: bytes) -> str:
        """MAIL, RCPT, DATA; a refusal resets the transaction and raises SmtpReply."""
        options = _mail_options(conn, m)  # before MAIL: a refusal here is this recipient's
        for step, call, ok in (
            ("MAIL FROM", lambda: conn.mail(sender, options), (250,)),
            ("RCPT TO", lambda: conn.rcpt(envelope_address(m)), (250, 251)),
        ):
            code, text = call()
            if code not in ok:
                self._reset(conn, code)
                raise SmtpReply(step, code, text)
        try:
            code, text = _data(conn, data)
        except smtplib.SMTPDataError as exc:  # no 354 go-ahead
            self._reset(conn, exc.smtp_code)
            raise SmtpReply("DATA", exc.smtp_code, exc.smtp_error) from exc
        if code != 250:
            self._reset(conn, code)
            raise SmtpReply("DATA", code, text)
        return text.decode("utf-8", "replace")

    def _refused(self, m: Message, exc: SmtpReply) -> SendResult:
        """A refusal: transient ones are raised for a retry, permanent ones are results."""
        text = f"{exc.code} {exc.text}"
        if 400 <= exc.code < 500:
            if exc.code == 421 or exc.step == "MAIL FROM":
                raise TryAgain(f"{exc.step}: {text}", status=exc.code)
            raise RecipientTryAgain(f"{exc.step}: {text}", status=exc.code)
        if exc.step == "MAIL FROM":
            raise ProviderError(
                f"the SMTP server refused the sender {parseaddr(m.from_addr)[1]}",
                provider=self.name,
                status=exc.code,
                reason=exc.text,
                hint="check site.from: the server must allow this sender for the SMTP_URL login",
            )
        status = STATUS_BY_CODE.get(exc.code, Status.REJECTED)
        suppress = exc.step == "RCPT TO" and any(code in exc.text for code in SUPPRESS_CODES)
        return SendResult(m.message_id, m.to_email, status, reason=text, suppress=suppress)

    # -- the connection ----------------------------------------------------------------

    def _connection(self) -> smtplib.SMTP:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _connect(self) -> smtplib.SMTP:
        conn: smtplib.SMTP | None = None
        try:
            conn = self._open()
            self._greet(conn)
        except (OSError, smtplib.SMTPException) as exc:
            self._quietly_close(conn)
            raise self._connect_error(exc) from exc
        self.connections += 1
        return conn

    def _greet(self, conn: smtplib.SMTP) -> None:
        """EHLO, STARTTLS when offered (not for smtps://), then AUTH when configured:
        never in clear text to another machine unless SMTP_URL says smtp+insecure://."""
        conn.ehlo()
        encrypted = self.target.implicit_tls
        if not encrypted and conn.has_extn("starttls"):
            conn.starttls(context=ssl.create_default_context())
            conn.ehlo()
            encrypted = True
        if not self.target.username:
            return
        if not (encrypted or self.target.insecure or on_loopback(conn)):
            raise PlainAuthRefused(f"{self.target.where} offered no STARTTLS")
        conn.login(self.target.username, self.target.password)

    def _connect_error(self, exc: Exception) -> Exception:
        """Login and TLS problems need the user; anything else may pass: retry it."""
        for kind, message, hint in CONNECT_ERRORS:
            if isinstance(exc, kind):
                reason = str(exc)
                if self.target.password:
                    reason = reason.replace(self.target.password, "***")
                return ProviderError(message, provider=self.name, reason=reason, hint=hint)
        return TryAgain(f"could not connect to {self.target.where} ({type(exc).__name__}: {exc})")

    def _open(self) -> smtplib.SMTP:
        target = self.target
        if target.implicit_tls:
            return smtplib.SMTP_SSL(
                target.host, target.port, timeout=self.timeout, context=ssl.create_default_context()
            )
        return smtplib.SMTP(target.host, target.port, timeout=self.timeout)

    def _reset(self, conn: smtplib.SMTP, code: int) -> None:
        """End a refused transaction: RSET, or drop the connection on 421 (closing)."""
        if code == 421:
            self._drop()
            return
        try:
            conn.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._quietly_close(conn)

    @staticmethod
    def _quietly_close(conn: smtplib.SMTP | None) -> None:
        if conn is None:
            return
        with contextlib.suppress(OSError):
            conn.close()

    def close(self) -> None:
        """QUIT politely and release the connection."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            self._quietly_close(conn)


def _data(conn: smtplib.SMTP, data: bytes) -> tuple[int, bytes]:
    """DATA, as ``smtplib.SMTP.data`` does it, but telling a connection lost while the
    message was being sent (nothing delivered: OSError) from one lost after its final
    ``.`` (it may have been delivered: :class:`ReplyLost`). ``data`` has CRLF line ends."""
    code, reply = conn.docmd("data")
    if code != 354:
        raise smtplib.SMTPDataError(code, reply)
    payload = LEADING_DOT.sub(b"..", data)
    if not payload.endswith(b"\r\n"):
        payload += b"\r\n"
    conn.send(payload + b".\r\n")
    try:
        return conn.getreply()
    except (smtplib.SMTPServerDisconnected, OSError) as exc:
        raise ReplyLost("no reply after the end of the message") from exc
