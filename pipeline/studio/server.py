"""Run the studio: bind (loopback unless ``--host``), watch, open the browser, stop cleanly."""

from __future__ import annotations

import errno
import socket
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from pipeline.errors import ConfigError
from pipeline.settings import Settings
from pipeline.studio.app import create_app
from pipeline.studio.security import Guard, check_bind, is_loopback
from pipeline.studio.watcher import Watcher
from pipeline.studio.workspace import Workspace

PORT_TRIES = 10  # the default port busy: try the next ones, as Maizzle's server does


class _QuietHandler(WSGIRequestHandler):
    """No line per request: a page, its frame and its event stream would flood the
    terminal. Errors still reach the log."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass
class Studio:
    """A running studio: its server, workspace and watcher."""

    server: BaseWSGIServer
    workspace: Workspace
    watcher: Watcher
    serving: bool = False

    @property
    def url(self) -> str:
        host = self.server.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.server.port}"

    def serve_forever(self) -> None:
        self.serving = True
        self.server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        self.workspace.close()  # ends every event stream
        if self.serving:
            self.server.shutdown()
        self.server.server_close()
        self.watcher.stop()


def start(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8025,
    explicit_host: bool = False,
    explicit_port: bool = True,
) -> Studio:
    """Bind, start watching, and return the studio (not yet serving)."""
    check_bind(host, explicit=explicit_host)
    workspace = Workspace(settings)
    app = create_app(workspace, Guard(host))
    server = bind_server(app, host, port, tries=1 if explicit_port or port == 0 else PORT_TRIES)
    watcher = Watcher(workspace.watched_dirs(), settings.config_path, workspace.changed)
    watcher.start()
    return Studio(server, workspace, watcher)


def bind_server(app: object, host: str, port: int, *, tries: int) -> BaseWSGIServer:
    """A threaded server on ``host``, on ``port`` or (``tries`` > 1) the next free one.

    The socket is bound here: werkzeug's own bind exits the process on a busy port.
    """
    for candidate in range(port, port + tries):
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            listener = socket.create_server((host, candidate), family=family)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                continue
            raise ConfigError(f"cannot serve on {host}:{candidate}: {exc.strerror}") from exc
        with listener:
            return make_server(
                host,
                listener.getsockname()[1],
                app,  # type: ignore[arg-type]
                threaded=True,
                request_handler=_QuietHandler,
                fd=listener.fileno(),
            )
    last = port + tries - 1
    ports = f"ports {port}-{last} are" if tries > 1 else f"port {port} is"
    raise ConfigError(f"{ports} in use", hint="choose another: newsletter dev --port 8125")


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    explicit_host: bool,
    explicit_port: bool,
    open_browser: bool,
    path: str = "/",
    echo: Callable[[str], object] = print,
) -> None:
    """Run until Ctrl-C."""
    studio = start(
        settings, host=host, port=port, explicit_host=explicit_host, explicit_port=explicit_port
    )
    watched = ", ".join(_shown(p, settings) for p in studio.workspace.watched_dirs())
    config = settings.config_path.name if settings.config_path else "no newsletter.toml"
    echo(f"studio: {studio.url}{path}  (watching {watched}, {config}; Ctrl-C to stop)")
    if not is_loopback(host):
        echo(f"warning: serving on {host}: whoever reaches it sees your drafts")
    if open_browser:
        threading.Thread(target=webbrowser.open, args=(studio.url + path,), daemon=True).start()
    try:
        studio.serve_forever()  # werkzeug's returns on Ctrl-C
    except KeyboardInterrupt:
        pass
    finally:
        studio.stop()
    echo("studio: stopped")


def _shown(p: Path, settings: Settings) -> str:
    return f"{p.relative_to(settings.root)}/" if p.is_relative_to(settings.root) else str(p)
