"""What keeps a local studio local.

Any web page the author visits can send requests to ``http://127.0.0.1:8025``. So the
studio binds to the loopback address unless ``--host`` says otherwise; answers only
requests whose ``Host`` is an address it serves (a DNS-rebinding page carries its own
name); and its one write endpoint, the test send, needs the page's token, a same-origin
``Origin`` when the browser sends one, and no cross-site ``Sec-Fetch-Site``.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets

from flask import Request

from pipeline.errors import ConfigError

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
ANY_ADDRESS = frozenset({"0.0.0.0", "::", ""})


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, explicit: bool) -> None:
    """Refuse a non-loopback address unless it came from ``--host`` on the command line."""
    if not explicit and not is_loopback(host):
        raise ConfigError(
            f"the studio serves on 127.0.0.1 only, not {host!r}",
            hint="to show drafts to other machines, say so: newsletter dev --host ADDRESS",
        )


def host_name(header: str) -> str:
    """``[::1]:8025`` -> ``::1``; ``Localhost:8025`` -> ``localhost``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rpartition(":")[0] if header.count(":") == 1 else header


class Guard:
    """The request checks for one running studio."""

    def __init__(self, bind_host: str) -> None:
        self.token = secrets.token_urlsafe(32)
        bind = bind_host.strip("[]").lower()
        # Bound to every interface: the names it is reached by are not known.
        self.hosts = None if bind in ANY_ADDRESS else LOOPBACK_NAMES | {bind}

    def host_allowed(self, request: Request) -> bool:
        return self.hosts is None or host_name(request.host) in self.hosts

    def post_refusal(self, request: Request) -> str | None:
        """Why a POST is refused (cross-site, no or wrong token), or None to accept it."""
        site = request.headers.get("Sec-Fetch-Site", "same-origin")
        if site not in ("same-origin", "none"):
            return f"a {site} request cannot send from the studio"
        origin = request.headers.get("Origin")
        if origin is not None and origin != request.host_url.rstrip("/"):
            return f"requests from {origin} cannot send from the studio"
        token = request.form.get("csrf", "")
        if not hmac.compare_digest(token.encode(), self.token.encode()):
            return "the form's token is missing or out of date; reload the studio page"
        return None
