"""``newsletter serve``: the web app under gunicorn (threads per worker, keep-alive).

The schema is migrated once in the master before forking; each worker then builds its
own app (and database engine) after the fork, so no connection is shared across
processes.
"""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from pipeline.settings import Settings
from subscribers.store import Store


class Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from subscribers.web import create_app

        return create_app(self.settings)


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int,
    threads: int,
    access_log: bool = False,
) -> None:
    """Run until interrupted. Errors in settings or the database show before any fork."""
    Store.from_settings(settings).close()  # migrate once, fail early with a clear message
    settings.secret_key()  # create var/secret.key once, not racing in the workers
    options: dict[str, Any] = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "keepalive": 5,
        "timeout": 30,
        "graceful_timeout": 10,
        "accesslog": "-" if access_log else None,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "newsletter-web",
    }
    Server(settings, options).run()
