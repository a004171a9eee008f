"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, on a free port, scriptable.

``Sink`` records every accepted message and can refuse addresses, answer scripted
replies to DATA, or drop the connection, like real servers do.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class Sink:
    """The handler: what the server does with each step."""

    refuse: dict[str, str] = field(default_factory=dict)  # address -> RCPT reply
    data_replies: list[str] = field(default_factory=list)  # replies to DATA, used first
    drop_at_data: set[int] = field(default_factory=set)  # DATA numbers (1-based) that drop
    received: list[Received] = field(default_factory=list)
    data_count: int = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_count += 1
        if self.data_count in self.drop_at_data:
            server.transport.close()  # the connection drops before the message is accepted
            return "421 4.3.2 Connection dropped"
        if self.data_replies:
            return self.data_replies.pop(0)
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
        )
        return f"250 2.0.0 Ok: queued as Q{len(self.received)}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def password_check(user: str, password: str) -> Any:
    """An aiosmtpd authenticator accepting one login (AUTH over plain TCP, tests only)."""

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            user.encode(),
            password.encode(),
        )
        return AuthResult(success=ok, handled=False)  # let aiosmtpd answer 235 or 535

    return authenticate


@contextmanager
def smtp_server(sink: Sink, **options: Any) -> Iterator[tuple[str, int]]:
    """Run ``sink`` as an SMTP server on 127.0.0.1; yields (host, port).

    ``options`` go to aiosmtpd's SMTP (e.g. ``authenticator=password_check(...)``).
    """
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield "127.0.0.1", port
    finally:
        controller.stop()
