"""``newsletter serve``: the web app under gunicorn (threads per worker, keep-alive),
plus the mailer process that sends the queued confirmation emails.

The schema is migrated once in the master before forking; each worker then builds its
own app (and database engine) after the fork, so no connection is shared across
processes. Workers only queue confirmation emails (``confirmations="queue"``).
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gunicorn.app.base import BaseApplication

from pipeline.settings import Settings
from subscribers.mailer import start_mailer, stop_mailer
from subscribers.store import Store


def follow_port(settings: Settings, port: int) -> Settings:
    """In development, links in emails follow the port ``serve`` listens on.

    Only while ``base_url`` is a plain-http loopback URL (``http://127.0.0.1:8000``, the
    default) that NEWSLETTER_BASE_URL did not set: then ``serve --port 8001`` mails links
    to :8001, and the hosted form posts there. A public ``base_url`` is left alone.
    """
    parts = urlsplit(settings.base_url)
    if settings.base_url_from_env or parts.scheme != "http" or parts.port == port:
        return settings
    if not _is_loopback(parts.hostname or ""):
        return settings
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    return settings.with_base_url(urlunsplit(("http", f"{host}:{port}", parts.path, "", "")))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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

        return create_app(self.settings, confirmations="queue")


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
        # gunicorn's control socket is one fixed path per user: several `serve`s at once
        # (tests, benchmarks, a second site) would fight over it. We do not use it.
        "control_socket_disable": True,
    }
    master = os.getpid()
    mailer = start_mailer(settings)
    try:
        Server(settings, options).run()
    finally:
        # Workers are forks of this process and unwind through here too on exit.
        if os.getpid() == master:
            stop_mailer(mailer)
