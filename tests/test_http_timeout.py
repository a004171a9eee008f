"""``[provider] timeout`` reaches ``requests``: a real local server that reads the whole
request and then never answers. No mock of requests: if the timeout were lost on the
way, the call would hang until the server gave up, and the test would see that it
was the server, not the client, that ended the exchange."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import pytest
from messages import sample_message

from pipeline.providers import get_provider
from pipeline.providers.base import OutcomeUnknown, Status
from pipeline.settings import Settings

HOLD = 30.0  # the server's own limit; far above any timeout below


@dataclass
class SilentServer:
    """Accepts connections on 127.0.0.1, reads each request, never answers."""

    port: int = 0
    requests: int = 0
    client_gave_up: threading.Event = field(default_factory=threading.Event)
    server_gave_up: threading.Event = field(default_factory=threading.Event)

    def handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(HOLD)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                self.requests += 1
                while conn.recv(65536):  # hold: answer nothing until the client leaves
                    pass
                self.client_gave_up.set()
            except TimeoutError:
                self.server_gave_up.set()


@contextmanager
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)  # so that the accept loop sees ``stop``
    server.port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=server.handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


SECRETS = {
    "postmark": {"POSTMARK_SERVER_TOKEN": "pm-test-token"},
    "sendgrid": {"SENDGRID_API_KEY": "SG.test"},
}


@pytest.mark.parametrize("provider", ["postmark", "sendgrid"])
def test_the_configured_timeout_ends_a_request_the_server_never_answers(
    settings: Settings, provider: str
) -> None:
    with silent_server() as server:
        options = {
            **settings.provider_options,
            "api_base_url": f"http://127.0.0.1:{server.port}",
            "timeout": 0.5,
            "max_retries": 0,
        }
        configured = replace(
            settings,
            provider=provider,
            provider_options=options,
            env={**settings.env, **SECRETS[provider]},
        )
        with get_provider(configured, sleep=lambda s: None) as sender:
            assert sender.timeout == 0.5
            try:  # the request went out whole: its outcome is unknown, never "not sent"
                results = sender.send_batch([sample_message(0)])
            except OutcomeUnknown:
                results = [None]
            assert results == [None] or results[0].status == Status.UNKNOWN
        # The client hung up while the server was still holding the request open.
        assert server.client_gave_up.wait(10)
        assert not server.server_gave_up.is_set()
        assert server.requests >= 1
