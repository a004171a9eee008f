"""Settings: ``newsletter.toml`` plus the environment, with defaults that run as-is.

Non-secret configuration lives in the file; secrets only in the environment.
``NEWSLETTER_BASE_URL``, ``NEWSLETTER_DATABASE_URL`` and ``NEWSLETTER_PROVIDER`` override
the file. Every key is documented in the README's settings table (a test keeps the two
in step).
A wrong key or type is a :class:`ConfigError` naming the file and the key.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pipeline.errors import ConfigError

CONFIG_NAME = "newsletter.toml"
PACKAGE_ROOT = Path(__file__).resolve().parent.parent

# section -> key -> (type, default). One table is the whole schema.
SCHEMA: dict[str, dict[str, tuple[type | tuple[type, ...], Any]]] = {
    "site": {
        "name": (str, "Newsletter"),
        "base_url": (str, "http://127.0.0.1:8000"),
        "from": (str, "Newsletter <newsletter@example.com>"),
        "reply_to": (str, ""),
        "postal_address": (str, "123 Example Street, Springfield, USA"),
        "unsubscribe_email": (str, ""),
        "site_url": (str, ""),
        "timezone": (str, "UTC"),  # IANA name: scheduled times and the sending window
        # Where the public archive is published (`newsletter archive`); default: the web
        # app's /archive. The feed's links and "View in your browser" point there.
        "archive_url": (str, ""),
    },
    "store": {"url": (str, "")},
    "provider": {
        "name": (str, "outbox"),
        "timeout": ((int, float), 15.0),
        "max_retries": (int, 5),
        "feedback_id": (str, ""),
        "postmark_message_stream": (str, "broadcast"),
        "mailgun_domain": (str, ""),
        "mailgun_region": (str, "us"),
        "ses_region": (str, "us-east-1"),
        "ses_configuration_set": (str, ""),
        "api_base_url": (str, ""),
        # Seconds the provider's message search lags behind a send, before a lost answer
        # is looked up (-1: the provider's own default: Postmark 30, Mailgun 60).
        "lookup_lag": ((int, float), -1),
        "sendgrid_email_logs": (bool, False),  # the account has SendGrid's Email Logs API
        # Requests a second the provider allows (0: its documented default: Resend 2).
        "requests_per_second": ((int, float), 0),
        # Mail to site.unsubscribe_email reaches POST /inbound/<this provider>; only then
        # does List-Unsubscribe advertise a mailto (see subscribers/inbound.py).
        "inbound": (str, ""),
        # `newsletter doctor`: DKIM selectors to look up (default: the provider's
        # documented ones) and the bounce (Return-Path) domain whose SPF counts.
        "dkim_selectors": (str, ""),
        "bounce_domain": (str, ""),
        # Provider webhooks (POST /webhooks/<provider>); their secrets come from the environment.
        "soft_bounce_limit": (int, 3),  # soft bounces in a row that suppress an address
        "webhook_tolerance": (int, 300),  # seconds a signed webhook timestamp may be off
        "webhook_max_bytes": (int, 1_048_576),  # larger webhook bodies get 413
    },
    "send": {
        "rate": ((int, float), 0.0),
        "concurrency": (int, 1),
        "batch_size": (int, 0),
        "window": (str, ""),  # "07:00-20:00": scheduled sends and sequences only then
        "in_flight": (int, 0),  # batches in flight per process (0: the provider's limit)
    },
    "studio": {
        # `newsletter dev` links each check message to its file and line: a known editor
        # name (vscode, cursor, sublime, pycharm ...) or a URL with {path} and {line}.
        "editor": (str, ""),
    },
    "paths": {
        "content": (str, "content"),
        "templates": (str, "templates"),
        "var": (str, "var"),
    },
}
INBOUND_PROVIDERS = ("postmark", "mailgun", "ses")
DEFAULT_TOPICS = {
    "updates": "Content updates",
    "offers": "Program offers",
}
# Not a topic: "every confirmed reader, whatever their topics" (sequence steps without one).
ALL_TOPICS = "all"


@dataclass(frozen=True)
class Topic:
    key: str
    name: str
    description: str = ""


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to know, resolved and validated."""

    root: Path
    config_path: Path | None
    site_name: str
    base_url: str
    from_addr: str
    reply_to: str
    postal_address: str
    unsubscribe_email: str
    site_url: str
    topics: dict[str, Topic]
    database_url: str
    provider: str
    provider_options: dict[str, Any]
    send_rate: float
    send_concurrency: int
    send_batch_size: int
    content_dir: Path
    templates_dir: Path
    var_dir: Path
    editor: str = ""  # [studio] editor: how `newsletter dev` links to a file and line
    timezone: str = "UTC"  # [site] timezone
    send_window: str = ""  # [send] window, in the site's time zone
    send_in_flight: int = 0  # [send] in_flight: batches in flight per process (0: provider's)
    archive_url: str = ""  # the public archive's address, without a trailing slash
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def outbox_dir(self) -> Path:
        return self.var_dir / "outbox"

    @property
    def site_domain(self) -> str:
        """Host of the public site, used for List-Id and Message-ID."""
        return urlsplit(self.site_url).hostname or urlsplit(self.base_url).hostname or "localhost"

    @property
    def from_email(self) -> str:
        return parseaddr(self.from_addr)[1]

    @property
    def inbound(self) -> str:
        """The provider whose inbound webhook takes mailto unsubscribes ('' for none)."""
        return str(self.provider_options.get("inbound", ""))

    @property
    def base_url_from_env(self) -> bool:
        return bool(self.env.get("NEWSLETTER_BASE_URL", "").strip())

    def with_base_url(self, url: str) -> Settings:
        """These settings with another base_url (site_url and archive_url follow when they
        defaulted to it)."""
        url = url.rstrip("/")
        site_url = url if self.site_url == self.base_url else self.site_url
        archive = self.archive_url
        if archive == f"{self.base_url}/archive":
            archive = f"{url}/archive"
        return replace(self, base_url=url, site_url=site_url, archive_url=archive)

    def secret(self, name: str, *, needed_for: str) -> str:
        """A secret from the environment, or an error that says where to set it."""
        value = self.env.get(name, "")
        if not value:
            raise ConfigError(
                f"{needed_for} needs {name} in the environment",
                hint=f"export {name}=... (secrets are never read from {CONFIG_NAME})",
            )
        return value

    def secret_key(self) -> str:
        """``NEWSLETTER_SECRET_KEY``, or a local key made once under var/ for development."""
        value = self.env.get("NEWSLETTER_SECRET_KEY", "")
        if value:
            return value
        path = self.var_dir / "secret.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(32))
        return path.read_text().strip()


def find_config(root: Path, env: Mapping[str, str], explicit: str | None = None) -> Path | None:
    """The config file to use: --config, NEWSLETTER_CONFIG, or ./newsletter.toml if present."""
    chosen = explicit or env.get("NEWSLETTER_CONFIG")
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            raise ConfigError(
                f"{path}: config file not found", hint="check --config or NEWSLETTER_CONFIG"
            )
        return path
    path = root / CONFIG_NAME
    return path if path.is_file() else None


def load_settings(
    config: str | Path | None = None,
    *,
    root: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Read and validate settings. With no file at all, the defaults run locally."""
    env = dict(os.environ if env is None else env)
    root = Path(root or Path.cwd()).resolve()
    path = find_config(root, env, str(config) if config else None)
    raw = _read_toml(path) if path else {}
    if path:
        root = path.resolve().parent
    values = _validate(raw, str(path))
    topics = _topics(raw.get("topics", {}), str(path))
    return _build(root, path, values, topics, env)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def _validate(raw: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    values: dict[str, dict[str, Any]] = {}
    for section, keys in SCHEMA.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise ConfigError(f"{where}: [{section}] must be a table")
        for key in given:
            if key not in keys:
                known = ", ".join(sorted(keys))
                raise ConfigError(
                    f"{where}: unknown key {section}.{key}", hint=f"known keys: {known}"
                )
        values[section] = {}
        for key, (kind, default) in keys.items():
            value = given.get(key, default)
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
                expected = kind.__name__ if isinstance(kind, type) else "number"
                raise ConfigError(f"{where}: {section}.{key} must be a {expected}, got {value!r}")
            values[section][key] = value
    for section in raw:
        if section not in SCHEMA and section != "topics":
            raise ConfigError(
                f"{where}: unknown section [{section}]",
                hint=f"known sections: {', '.join([*SCHEMA, 'topics'])}",
            )
    return values


def _topics(raw: Any, where: str) -> dict[str, Topic]:
    if not raw:
        return {key: Topic(key, name) for key, name in DEFAULT_TOPICS.items()}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [topics] must be a table")
    topics = {}
    for key, spec in raw.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise ConfigError(f'{where}: topics.{key} needs name = "..."')
        unknown = set(spec) - {"name", "description"}
        if unknown:
            raise ConfigError(f"{where}: unknown key topics.{key}.{sorted(unknown)[0]}")
        if key == ALL_TOPICS:
            raise ConfigError(
                f"{where}: [topics.{ALL_TOPICS}] is reserved (it means every reader)",
                hint="give the topic another key",
            )
        topics[key] = Topic(key, spec["name"], str(spec.get("description", "")))
    return topics


def _timezone(name: str, path: Path | None) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{path}: site.timezone {name!r} is not a time zone",
            hint='use an IANA name such as "Europe/Berlin" or "America/New_York"',
        ) from None
    return name


def _window(text: str, path: Path | None) -> str:
    from pipeline.clock import parse_window

    try:
        parse_window(text)
    except ValueError as exc:
        raise ConfigError(
            f"{path}: send.window: {exc}", hint='e.g. window = "07:00-20:00"'
        ) from None
    return text


def _build(
    root: Path,
    path: Path | None,
    v: dict[str, dict[str, Any]],
    topics: dict[str, Topic],
    env: Mapping[str, str],
) -> Settings:
    site, prov, send, paths = v["site"], v["provider"], v["send"], v["paths"]
    base_url = _base_url(env.get("NEWSLETTER_BASE_URL", "").strip(), site["base_url"], path)
    var_dir = root / paths["var"]
    db_url = env.get("NEWSLETTER_DATABASE_URL") or v["store"]["url"]
    if not db_url:
        db_url = f"sqlite:///{var_dir / 'newsletter.db'}"
    if not parseaddr(site["from"])[1]:
        raise ConfigError(f"{path}: site.from must be an address like 'Name <me@example.com>'")
    templates = root / paths["templates"]
    if not templates.is_dir():
        templates = PACKAGE_ROOT / "templates"
    return Settings(
        root=root,
        config_path=path,
        site_name=site["name"],
        base_url=base_url,
        from_addr=site["from"],
        reply_to=site["reply_to"],
        postal_address=site["postal_address"],
        unsubscribe_email=_unsubscribe_email(site["unsubscribe_email"], prov["inbound"], path),
        site_url=(site["site_url"] or base_url).rstrip("/"),
        topics=topics,
        database_url=db_url,
        provider=(env.get("NEWSLETTER_PROVIDER") or prov["name"]).lower(),
        provider_options=dict(prov),
        send_rate=float(send["rate"]),
        send_concurrency=max(1, send["concurrency"]),
        send_batch_size=send["batch_size"],
        content_dir=root / paths["content"],
        templates_dir=templates,
        var_dir=var_dir,
        editor=v["studio"]["editor"],
        timezone=_timezone(site["timezone"], path),
        send_window=_window(send["window"], path),
        send_in_flight=max(0, send["in_flight"]),
        archive_url=_archive_url(site["archive_url"], base_url, path),
        env=env,
    )


def _base_url(from_env: str, from_file: str, path: Path | None) -> str:
    """``NEWSLETTER_BASE_URL`` or ``[site] base_url``: an absolute http(s) URL."""
    url = from_env or from_file
    where = "NEWSLETTER_BASE_URL" if from_env else f"{path}: site.base_url"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{where} must be an absolute http(s) URL, got {url!r}",
            hint="the public address of `newsletter serve`, e.g. https://news.example.com",
        )
    return url.rstrip("/")


def _unsubscribe_email(address: str, inbound: str, path: Path | None) -> str:
    """The mailto address of List-Unsubscribe: only when an inbound path acts on it."""
    if not inbound:
        return ""
    if inbound not in INBOUND_PROVIDERS:
        raise ConfigError(
            f"{path}: provider.inbound must be one of {', '.join(INBOUND_PROVIDERS)}, "
            f"got {inbound!r}",
            hint='leave it empty ("") when no provider forwards mail to unsubscribe_email',
        )
    if not parseaddr(address)[1] or "@" not in address:
        raise ConfigError(
            f"{path}: provider.inbound = {inbound!r} needs site.unsubscribe_email",
            hint='[site] unsubscribe_email = "unsubscribe@inbound.example.com": the address '
            f"{inbound} receives and forwards to /inbound/{inbound}",
        )
    return parseaddr(address)[1]


def _archive_url(given: str, base_url: str, path: Path | None) -> str:
    """``[site] archive_url``, or the web app's ``/archive`` (``base_url`` is checked)."""
    if not given:
        return f"{base_url}/archive"
    parts = urlsplit(given)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{path}: site.archive_url must be an http(s) URL, got {given!r}",
            hint='where the archive is published, e.g. "https://example.com/newsletter"',
        )
    return given.rstrip("/")
