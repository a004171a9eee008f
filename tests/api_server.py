"""A small JSON API on 127.0.0.1 (a port from the OS) standing in for a provider's API in
``doctor --online`` tests and the provider tests that need a real socket: each route
answers what the provider's docs show, after checking the credentials the way the
provider does."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# (method, path) -> handler(headers) -> (status, JSON body); a POST's handler also gets
# the request body: handler(headers, body).
Route = Callable[..., tuple[int, Any]]


@contextlib.contextmanager
def api_server(routes: dict[tuple[str, str], Route]) -> Iterator[tuple[str, list[str]]]:
    """``(base URL, requests seen as "METHOD path")`` while the server runs."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.answer("GET")

        def do_POST(self) -> None:  # noqa: N802
            self.answer("POST", self.rfile.read(int(self.headers["Content-Length"])))

        def answer(self, method: str, *body: bytes) -> None:
            seen.append(f"{method} {self.path}")
            route = routes.get((method, self.path))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, reply = route(headers, *body) if route else (404, {"message": "Not Found"})
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
