"""Settings: ``newsletter.toml`` plus the environment, with defaults that run as-is.

Non-secret configuration lives in the file; secrets only in the environment.
``NEWSLETTER_DATABASE_URL`` and ``NEWSLETTER_PROVIDER`` override the file.
A wrong key or type is a :class:`ConfigError` naming the file and the key.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
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
        # Provider webhooks (POST /webhooks/<provider>); their secrets come from the environment.
        "soft_bounce_limit": (int, 3),  # soft bounces in a row that suppress an address
        "webhook_tolerance": (int, 300),  # seconds a signed webhook timestamp may be off
        "webhook_max_bytes": (int, 1_048_576),  # larger webhook bodies get 413
    },
    "send": {
        "rate": ((int, float), 0.0),
        "concurrency": (int, 1),
        "batch_size": (int, 0),
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
DEFAULT_TOPICS = {
    "updates": "Content updates",
    "offers": "Program offers",
}


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
        topics[key] = Topic(key, spec["name"], str(spec.get("description", "")))
    return topics


def _build(
    root: Path,
    path: Path | None,
    v: dict[str, dict[str, Any]],
    topics: dict[str, Topic],
    env: Mapping[str, str],
) -> Settings:
    site, prov, send, paths = v["site"], v["provider"], v["send"], v["paths"]
    var_dir = root / paths["var"]
    db_url = env.get("NEWSLETTER_DATABASE_URL") or v["store"]["url"]
    if not db_url:
        db_url = f"sqlite:///{var_dir / 'newsletter.db'}"
    if not parseaddr(site["from"])[1]:
        raise ConfigError(f"{path}: site.from must be an address like 'Name <me@example.com>'")
    templates = root / paths["templates"]
    if not templates.is_dir():
        templates = PACKAGE_ROOT / "templates"
    from_email = parseaddr(site["from"])[1]
    return Settings(
        root=root,
        config_path=path,
        site_name=site["name"],
        base_url=site["base_url"].rstrip("/"),
        from_addr=site["from"],
        reply_to=site["reply_to"],
        postal_address=site["postal_address"],
        unsubscribe_email=site["unsubscribe_email"] or from_email,
        site_url=(site["site_url"] or site["base_url"]).rstrip("/"),
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
        archive_url=_archive_url(site, str(path)),
        env=env,
    )


def _archive_url(site: dict[str, Any], where: str) -> str:
    url = (site["archive_url"] or f"{site['base_url'].rstrip('/')}/archive").rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        key = "archive_url" if site["archive_url"] else "base_url"
        raise ConfigError(
            f"{where}: site.{key} must be an http(s) URL, got {site[key]!r}",
            hint=f'e.g. {key} = "https://example.com/newsletter"',
        )
    return url
