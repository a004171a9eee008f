"""Going live safely: mail to real readers must carry links that work for them.

Every email links back to the web app at ``base_url``: unsubscribe (also the https half
of ``List-Unsubscribe``, which Gmail and Yahoo require for one-click), preferences,
confirmation and images. A ``base_url`` that is not https, or that names this machine or
a private network, sends readers links that go nowhere. So any provider other than
``outbox`` (which only writes files) refuses to mail with such a ``base_url``:
``newsletter send``, ``newsletter serve`` and the web app's confirmation emails, and
``newsletter subscribers add/import``. ``send --test-to`` (one sample to yourself) only
warns. The check reads the URL only; it does no DNS lookup (``newsletter doctor`` does).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from pipeline.errors import ConfigError
from pipeline.settings import Settings

# Names that never reach readers: this machine, local networks, reserved test TLDs.
LOCAL_NAMES = ("localhost", "localhost.localdomain")
LOCAL_SUFFIXES = (
    ".localhost",
    ".local",
    ".localdomain",
    ".internal",
    ".lan",
    ".home.arpa",
    ".test",
    ".invalid",
    ".example",
)
IP_KINDS = (
    ("is_loopback", "loopback"),
    ("is_unspecified", "unspecified"),
    ("is_link_local", "link-local"),
    ("is_private", "private"),
    ("is_reserved", "reserved"),
    ("is_multicast", "multicast"),
)
EXIT_UNSAFE = 2


class UnsafeLinks(ConfigError):
    """A real send with links readers cannot use. The CLI exits 2 for it."""

    exit_code = EXIT_UNSAFE


def link_problems(base_url: str) -> list[str]:
    """What is wrong with ``base_url`` for mail to real readers (empty when fine)."""
    parts = urlsplit(base_url)
    problems = []
    if parts.scheme != "https":
        problems.append("is not https")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return [*problems, "has no host name"]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        if not address.is_global:
            kind = next((label for attr, label in IP_KINDS if getattr(address, attr)), "private")
            problems.append(f"points at a {kind} address ({host})")
    elif host in LOCAL_NAMES or host.endswith(LOCAL_SUFFIXES):
        problems.append(f"points at a local name ({host})")
    elif "." not in host:
        problems.append(f"points at a single-label host name ({host}), not a public one")
    return problems


def live_links_problem(settings: Settings) -> str | None:
    """The sentence that says why ``settings.base_url`` is unfit for readers, or None."""
    problems = link_problems(settings.base_url)
    if not problems:
        return None
    return (
        f"base_url {settings.base_url} {' and '.join(problems)}: readers' unsubscribe, "
        "preferences, confirmation and image links would not work, and Gmail and Yahoo "
        "accept only an https one-click unsubscribe"
    )


def fix_hint(settings: Settings) -> str:
    where = f"[site] base_url in {settings.config_path}" if settings.config_path else None
    where = where or "[site] base_url in newsletter.toml"
    return (
        f"set {where} (or NEWSLETTER_BASE_URL) to the public https address of "
        "`newsletter serve`, e.g. https://news.example.com; to try things locally, use "
        "NEWSLETTER_PROVIDER=outbox (mail lands in var/outbox/)"
    )


def require_live_links(settings: Settings, *, what: str) -> None:
    """Refuse (exit 2) to mail readers through a real provider with unusable links."""
    if settings.provider == "outbox":
        return
    problem = live_links_problem(settings)
    if problem:
        raise UnsafeLinks(
            f"{what} through {settings.provider} refused: {problem}", hint=fix_hint(settings)
        )


def live_links_warning(settings: Settings) -> str | None:
    """The same check as a warning (``send --test-to``: one sample to yourself)."""
    if settings.provider == "outbox":
        return None
    problem = live_links_problem(settings)
    return f"{problem}; fine for a test to yourself, not for readers" if problem else None
