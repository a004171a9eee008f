"""CLI: ``newsletter doctor``, wiring settings, a resolver and the store into the checks."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from pipeline.errors import PipelineError
from pipeline.settings import Settings

if TYPE_CHECKING:  # imported when the command runs: dnspython loads only for the doctor
    from pipeline.doctor import Rates
    from subscribers.events import EventLog

COLOURS = {"ok": "green", "warning": "yellow", "error": "red"}


def register(group: click.Group) -> None:
    group.add_command(doctor)


@click.command()
@click.option(
    "--dns-server",
    metavar="HOST:PORT",
    help="Ask this DNS server (default: the system resolver), e.g. 1.1.1.1:53.",
)
@click.option(
    "--online",
    is_flag=True,
    help="Also ask the provider whether it accepts the credentials, and POST a one-click "
    "unsubscribe to base_url (nothing is sent, nobody is unsubscribed).",
)
@click.pass_context
def doctor(ctx: click.Context, dns_server: str | None, online: bool) -> None:
    """Check that this setup is ready to mail real readers.

    One line per check, `ok|warning|error: check: what, and what to do`: settings
    (base_url, From, postal address, secret key), the provider's credentials and
    webhook secrets, SPF, DKIM and DMARC of the From domain and MX of the reply
    address, and the bounce and complaint rates of the last 30 days. Exit status 1
    on any error.

    \b
    Examples:
      newsletter doctor
      newsletter doctor --online
      newsletter doctor --dns-server 1.1.1.1:53
    """
    from pipeline.cli import get_settings
    from pipeline.doctor import ERROR, OK, WARNING, Doctor, run
    from pipeline.doctor.dns_lookup import Dns

    settings = get_settings(ctx)
    with _stats(settings) as (stats, problem):
        findings = run(
            Doctor(
                settings=settings,
                dns=Dns(dns_server),
                online=online,
                stats=stats,
                stats_problem=problem,
                probe_token=_probe_token(settings),
            )
        )
    for finding in findings:
        click.secho(str(finding), fg=COLOURS[finding.level])
    counts = {level: sum(f.level == level for f in findings) for level in COLOURS}
    summary = f"{counts[OK]} ok, {counts[WARNING]} warning(s), {counts[ERROR]} error(s)"
    if counts[ERROR]:
        click.secho(f"{summary}: not ready to mail readers yet", fg="red", err=True)
        ctx.exit(1)
    click.secho(f"{summary}: ready", fg="green", err=True)


class _Stats:
    """The store's delivery figures, as the doctor asks for them."""

    def __init__(self, log: EventLog) -> None:
        self.log = log

    def delivery_rates(self, since: dt.datetime) -> Rates:
        from pipeline.doctor import Rates

        return Rates(**self.log.delivery_counts(since))


@contextlib.contextmanager
def _stats(settings: Settings) -> Iterator[tuple[_Stats | None, str]]:
    """``(stats, '')`` with the store open, or ``(None, why)`` when it cannot be opened."""
    from subscribers.events import EventLog
    from subscribers.store import Store

    try:
        store = Store.from_settings(settings)
    except PipelineError as exc:
        yield None, f"the store cannot be opened: {exc.message}"
        return
    try:
        yield _Stats(EventLog(store)), ""
    finally:
        store.close()


def _probe_token(settings: Settings) -> str:
    """Subscriber 0's link token (no such subscriber), when a secret key exists already."""
    from subscribers.tokens import subscriber_token

    key = settings.env.get("NEWSLETTER_SECRET_KEY", "")
    local = settings.var_dir / "secret.key"
    if not key and local.is_file():
        key = local.read_text().strip()
    return subscriber_token(key, 0, "") if key else ""
