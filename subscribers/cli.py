"""Shell commands: `newsletter subscribers ...`, `newsletter serve`, `newsletter form-snippet`.

Registered on the root group by ``register(cli)`` (see the bottom of pipeline/cli.py).
Every command has an example in its help and ends with a one-line summary.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

import click

from pipeline.errors import PipelineError
from pipeline.guard import require_live_links
from pipeline.settings import Settings
from subscribers.confirmation import ConfirmationSender, Links
from subscribers.csvio import CsvReader, Duplicate, RowError, write_csv, write_json
from subscribers.errors import Conflict, InvalidInput
from subscribers.forms import render_snippet, safe_next
from subscribers.importer import Importer, ImportSummary
from subscribers.models import Consent, NewSubscriber
from subscribers.store import Store
from subscribers.validation import clean_name, normalise_email, parse_topics

MAX_SHOWN_ERRORS = 200


def register(cli: click.Group) -> None:
    cli.add_command(subscribers)
    cli.add_command(serve)
    cli.add_command(form_snippet)


def _settings() -> Settings:
    from pipeline.cli import get_settings  # late: pipeline.cli imports this module

    return get_settings(click.get_current_context())


def _store(settings: Settings) -> Store:
    return Store.from_settings(settings)


def _sender(settings: Settings, store: Store) -> ConfirmationSender:
    """The confirmation mailer; refuses (exit 2) links readers cannot open, before any write."""
    sender = ConfirmationSender(settings, store, Links(settings, settings.secret_key()))
    sender.check_links()
    return sender


def _topics_option(settings: Settings, values: tuple[str, ...]) -> list[str]:
    return parse_topics(list(values), settings.topics)


def _consent_source(confirmed: bool, consent_source: str | None) -> None:
    if confirmed and not (consent_source and consent_source.strip()):
        raise InvalidInput(
            "consent-source",
            "--confirmed needs --consent-source saying where these people gave consent",
            hint='e.g. --consent-source "webinar signup sheet, 2026-10-02"',
        )


@click.group()
def subscribers() -> None:
    """Manage subscribers: add, list, remove, import, export, stats.

    \b
    Examples:
      newsletter subscribers add ann@example.com --name Ann --topic updates
      newsletter subscribers import readers.csv --dry-run
      newsletter subscribers stats
    """


# ---- add -------------------------------------------------------------------------------


@subscribers.command()
@click.argument("email")
@click.option("--name", default="", help="Display name (optional).")
@click.option(
    "--topic", "topics", multiple=True, help="A topic key; repeat for several (default: all)."
)
@click.option("--confirmed", is_flag=True, help="Add as active, without a confirmation email.")
@click.option("--consent-source", help="Where their consent came from (needed with --confirmed).")
@click.option("--no-email", is_flag=True, help="Do not send the confirmation email.")
def add(
    email: str,
    name: str,
    topics: tuple[str, ...],
    confirmed: bool,
    consent_source: str | None,
    no_email: bool,
) -> None:
    """Add one subscriber. Without --confirmed they get a confirmation email.

    \b
    Examples:
      newsletter subscribers add ann@example.com --name Ann
      newsletter subscribers add bo@example.com --confirmed \\
          --consent-source "asked in person at the 2026 seminar"
    """
    settings = _settings()
    _consent_source(confirmed, consent_source)
    row = NewSubscriber(
        normalise_email(email), clean_name(name), tuple(_topics_option(settings, topics))
    )
    wording = consent_source or "added from the command line; pending email confirmation"
    mailed = not confirmed and not no_email
    with _store(settings) as store:
        sender = _sender(settings, store) if mailed else None
        consent = Consent("admin", "cli", wording=wording)
        result = store.add_many([row], confirmed=confirmed, consent=consent)[0]
        _check_added(store, result.outcome, row.email)
        if sender is not None:
            item = store.confirmation_for(result.subscriber_id or 0)
            assert item is not None  # just added in this process
            sender.send(item)
    status = "active" if confirmed else "pending"
    note = "; confirmation email sent" if mailed else ""
    click.echo(f"added {row.email} ({status}; topics: {', '.join(row.topics)}{note})")


def _check_added(store: Store, outcome: str, email: str) -> None:
    if outcome == "suppressed":
        reason = store.suppression_reason(email)
        raise Conflict(
            f"{email} is on the suppression list ({reason}); it gets no mail and is not added"
        )
    if outcome == "exists":
        found = store.find(email)
        status = found.status if found else "unknown"
        raise Conflict(
            f"{email} is already in the store (status: {status}); nothing changed",
            hint="they can change topics from the preferences link in any email",
        )


# ---- list ------------------------------------------------------------------------------


@subscribers.command(name="list")
@click.option(
    "--status",
    type=click.Choice(["pending", "active", "unsubscribed", "bounced", "complained"]),
    help="Only this status.",
)
@click.option("--topic", help="Only subscribers of this topic.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show at most N.")
def list_(status: str | None, topic: str | None, limit: int | None) -> None:
    """List subscribers, oldest first.

    \b
    Examples:
      newsletter subscribers list --status active --topic offers
      newsletter subscribers list --limit 20
    """
    settings = _settings()
    shown = 0
    with _store(settings) as store:
        click.echo(f"{'id':>6}  {'status':<12}  {'topics':<16}  {'created':<10}  email (name)")
        for sub in store.iter_subscribers(status=status, topic=topic):
            if limit is not None and shown >= limit:
                break
            name = f" ({sub.name})" if sub.name else ""
            created = sub.created_at.date().isoformat()
            topics = ",".join(sub.topics) or "-"
            click.echo(
                f"{sub.id:>6}  {sub.status:<12}  {topics:<16}  {created:<10}  {sub.email}{name}"
            )
            shown += 1
        total = store.count(status)
    click.echo(f"{shown} shown; {total} {status or 'in total'}")


# ---- remove ----------------------------------------------------------------------------


@subscribers.command()
@click.argument("email")
@click.option(
    "--erase",
    is_flag=True,
    help="Forget the person entirely (rows, consent, events); keep only a suppression hash.",
)
@click.option("--yes", is_flag=True, help="Do not ask before erasing.")
def remove(email: str, erase: bool, yes: bool) -> None:
    """Unsubscribe an address, or erase everything held about it.

    \b
    Examples:
      newsletter subscribers remove ann@example.com
      newsletter subscribers remove ann@example.com --erase --yes
    """
    settings = _settings()
    if erase and not yes:
        click.confirm(f"Erase everything held about {email}? This cannot be undone", abort=True)
    with _store(settings) as store:
        found = store.remove(email, erase=erase)
    if erase:
        held = "erased its data" if found else "it was not in the store"
        click.echo(f"erased {email}: {held}; a suppression hash keeps it from any future mail")
    elif found:
        click.echo(f"removed {email}: unsubscribed, no further mail")
    else:
        raise InvalidInput("email", f"{email} is not in the store; nothing changed")


# ---- import ----------------------------------------------------------------------------


@subscribers.command(name="import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--confirmed", is_flag=True, help="Import as active (they consented elsewhere).")
@click.option("--consent-source", help="Where their consent came from (needed with --confirmed).")
@click.option("--dry-run", is_flag=True, help="Check and count everything; write nothing.")
@click.option("--skip-invalid", is_flag=True, help="Import the good rows even if some are bad.")
@click.option(
    "--send-confirmation", is_flag=True, help="Email a confirmation link to each new pending row."
)
def import_(
    csv_file: Path,
    confirmed: bool,
    consent_source: str | None,
    dry_run: bool,
    skip_invalid: bool,
    send_confirmation: bool,
) -> None:
    """Import subscribers from a CSV file with the columns email,name,topics.

    topics holds topic keys separated by spaces (empty: all topics). Every bad row is
    reported by line number, and nothing is imported while any row is bad unless
    --skip-invalid is given. Addresses already present, or suppressed, are left as they are.

    \b
    Examples:
      newsletter subscribers import readers.csv --dry-run
      newsletter subscribers import readers.csv --send-confirmation
      newsletter subscribers import webinar.csv --confirmed \\
          --consent-source "webinar registration form, Oct 2026"
    """
    settings = _settings()
    _consent_source(confirmed, consent_source)
    with _store(settings) as store:
        importer = _importer(settings, store, csv_file, confirmed, consent_source, dry_run)
        if send_confirmation and not confirmed:
            importer.sender = _sender(settings, store)
        summary = _run_check(importer)
        if summary.bad and not skip_invalid:
            raise PipelineError(
                f"{summary.bad} bad row(s) in {csv_file}: nothing imported",
                hint="fix them, or pass --skip-invalid to import only the good rows",
            )
        _run_load(importer, summary)
    click.echo(_import_summary(summary, confirmed, dry_run))


def _importer(
    settings: Settings,
    store: Store,
    path: Path,
    confirmed: bool,
    consent_source: str | None,
    dry_run: bool,
) -> Importer:
    wording = consent_source or f"imported from {path.name}; pending email confirmation"
    shown = {"errors": 0}

    def on_error(error: RowError) -> None:
        shown["errors"] += 1
        if shown["errors"] <= MAX_SHOWN_ERRORS:
            click.secho(f"{path}:{error.line}: {error.message}", fg="red", err=True)

    def on_duplicate(dup: Duplicate) -> None:
        click.secho(f"{path}:{dup.line}: duplicate address; skipped", fg="yellow", err=True)

    return Importer(
        store=store,
        reader=CsvReader(path, list(settings.topics)),
        confirmed=confirmed,
        consent=Consent("import", f"import:{path.name}", wording=wording),
        dry_run=dry_run,
        on_error=on_error,
        on_duplicate=on_duplicate,
    )


def _run_check(importer: Importer) -> ImportSummary:
    with _progress(importer, "checking") as bar:
        importer.on_progress = bar
        summary = importer.check()
    if summary.bad > MAX_SHOWN_ERRORS:
        click.secho(f"... and {summary.bad - MAX_SHOWN_ERRORS} more bad rows", fg="red", err=True)
    return summary


def _run_load(importer: Importer, summary: ImportSummary) -> None:
    importer.on_error = importer.on_duplicate = lambda _: None  # reported in the check
    with _progress(importer, "importing") as bar:
        importer.on_progress = bar
        importer.load(summary)


class _progress:  # noqa: N801 - used like a function
    """A byte-based progress bar on stderr that updates from the reader's position."""

    def __init__(self, importer: Importer, label: str) -> None:
        self._stack = ExitStack()
        self._bar: Any = click.progressbar(
            length=max(importer.reader.size, 1), label=label, file=sys.stderr
        )
        self._done = 0

    def __enter__(self) -> _progress:
        self._stack.enter_context(self._bar)
        return self

    def __call__(self, position: int) -> None:
        if position > self._done:
            self._bar.update(position - self._done)
            self._done = position

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


def _import_summary(s: ImportSummary, confirmed: bool, dry_run: bool) -> str:
    status = "active" if confirmed else "pending"
    verb = "would add" if dry_run else "added"
    parts = [
        f"{s.rows} rows read",
        f"{verb} {s.added} ({status})",
        f"{s.exists} already present (unchanged)",
        f"{s.suppressed} suppressed (skipped)",
    ]
    if s.bad:
        parts.append(f"{s.bad} bad (skipped)")
    if s.duplicates:
        parts.append(f"{s.duplicates} duplicates (skipped)")
    if s.mailed:
        parts.append(f"{s.mailed} confirmation emails sent")
    prefix = "dry run, nothing written: " if dry_run else ""
    return prefix + "; ".join(parts)


# ---- export ----------------------------------------------------------------------------


@subscribers.command()
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv")
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Default: stdout."
)
@click.option("--email", help="Only this address (a subject access request).")
def export(fmt: str, output: Path | None, email: str | None) -> None:
    """Export everything held about each subscriber, consent records included.

    \b
    Examples:
      newsletter subscribers export -o subscribers.csv
      newsletter subscribers export --format json --email ann@example.com
    """
    settings = _settings()
    with _store(settings) as store, _open_output(output) as out:
        write = write_json if fmt == "json" else write_csv
        count = write(store.export_records(email=email), out)
    where = str(output) if output else "stdout"
    click.echo(f"exported {count} subscriber(s) as {fmt} to {where}", err=output is None)


class _open_output:  # noqa: N801 - used like a function
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.fh: IO[str] | None = None

    def __enter__(self) -> IO[str]:
        if self.path is None:
            return sys.stdout
        self.fh = self.path.open("w", encoding="utf-8", newline="")
        return self.fh

    def __exit__(self, *exc: object) -> None:
        if self.fh is not None:
            self.fh.close()


# ---- stats -----------------------------------------------------------------------------


@subscribers.command()
def stats() -> None:
    """Counts by status and topic, suppressions, recent signups.

    \b
    Example:
      newsletter subscribers stats
    """
    settings = _settings()
    with _store(settings) as store:
        st = store.stats()
    for status, count in st.by_status.items():
        click.echo(f"{status:<14}{count:>8}")
    for topic, count in st.active_by_topic.items():
        click.echo(f"{'mailable ' + topic:<22}{count:>8}")
    click.echo(f"{'suppressed':<14}{st.suppressed:>8}")
    click.echo(f"{'pending > 7 days':<18}{st.pending_expired:>4}")
    click.echo(
        f"{st.total} subscribers, {st.by_status.get('active', 0)} active, "
        f"{st.signups_7d} new in the last 7 days"
    )


# ---- serve, form-snippet ---------------------------------------------------------------


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port."
)
@click.option(
    "--workers", default=2, show_default=True, type=click.IntRange(min=1), help="Processes."
)
@click.option(
    "--threads", default=4, show_default=True, type=click.IntRange(min=1), help="Per worker."
)
@click.option("--access-log", is_flag=True, help="Log every request to stderr.")
def serve(host: str, port: int, workers: int, threads: int, access_log: bool) -> None:
    """Run the web app: signup form, confirm, unsubscribe, preferences (gunicorn).

    Beside the workers runs a low-priority mailer process that sends the confirmation
    emails signups queue. Set [site] base_url to the public address of this app: links
    in emails use it. Env: NEWSLETTER_SIGNUP_RATE_LIMIT (default 10/60 per IP, 0 = off),
    NEWSLETTER_TRUSTED_PROXIES (proxies in front, for the client IP).

    \b
    Examples:
      newsletter serve
      newsletter serve --host 0.0.0.0 --port 8080 --workers 4
    """
    from subscribers.server import follow_port
    from subscribers.server import serve as run

    given = _settings()
    settings = follow_port(given, port)
    if settings is not given:
        click.echo(
            f"base_url follows --port in development: {settings.base_url} "
            "(NEWSLETTER_BASE_URL sets it for good)"
        )
    require_live_links(settings, what="the confirmation email")  # exit 2 before serving
    click.echo(f"serving on http://{host}:{port} (links in emails use {settings.base_url})")
    if settings.provider == "outbox":
        click.echo(f"mail goes to {settings.outbox_dir} (provider outbox)")
    run(settings, host=host, port=port, workers=workers, threads=threads, access_log=access_log)
    click.echo("stopped")


@click.command(name="form-snippet")
@click.option("--next", "next_url", help="Page on your site to show after signing up.")
def form_snippet(next_url: str | None) -> None:
    """Print the signup form HTML to paste at the bottom of an article page.

    It works without JavaScript and posts to this app's /subscribe ([site] base_url).

    \b
    Examples:
      newsletter form-snippet > form.html
      newsletter form-snippet --next https://hingestrength.example.com/thanks
    """
    settings = _settings()
    if next_url and not safe_next(next_url, settings):
        raise InvalidInput(
            "next", f"--next must be a page on {settings.site_url}", hint="set [site] site_url"
        )
    click.echo(render_snippet(settings, next_url))
    click.echo(f"form posts to {settings.base_url}/subscribe", err=True)
