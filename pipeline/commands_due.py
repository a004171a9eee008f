"""CLI: ``due`` (send what is due now) and ``sequences`` (list, enroll)."""

from __future__ import annotations

import datetime as dt

import click

from pipeline.clock import local_text, parse_when
from pipeline.content import format_delay
from pipeline.errors import SendError
from pipeline.sequences import ANY_TOPIC, load_sequence, load_sequences


def register(group: click.Group) -> None:
    group.add_command(due)
    group.add_command(sequences)


def _now(text: str | None, timezone: str) -> dt.datetime:
    return parse_when(text, timezone) if text else dt.datetime.now(dt.UTC)


@click.command()
@click.option("--now", "now_text", metavar="ISO", help="The time to act as (default: now).")
@click.option("--dry-run", is_flag=True, help="Say what is due; send nothing, record nothing.")
@click.option("--resend-unknown", is_flag=True, help="Send again to readers in doubt.")
@click.option("--skip-unknown", is_flag=True, help="Count readers in doubt as done.")
@click.pass_context
def due(
    ctx: click.Context,
    now_text: str | None,
    dry_run: bool,
    resend_unknown: bool,
    skip_unknown: bool,
) -> None:
    """Send every sequence step and scheduled campaign that is due, then exit.

    Run it from cron or a systemd timer (every minute is fine: it sends nothing twice,
    even when two run at once); `newsletter serve` runs it every minute by itself.
    Steps go out through the same ledger, providers, rate and batching as `send`.
    Exit status 1 when something due could not be sent (each problem is printed).

    \b
    Examples:
      newsletter due
      newsletter due --dry-run
      newsletter due --now 2026-12-01T07:00      # as if it were then (site time zone)
    """
    from pipeline.cli import get_settings
    from pipeline.due import run_due
    from subscribers.store import Store

    if resend_unknown and skip_unknown:
        raise click.UsageError("choose one of --resend-unknown and --skip-unknown")
    policy = "resend" if resend_unknown else "skip" if skip_unknown else "settle"
    settings = get_settings(ctx)
    now = _now(now_text, settings.timezone)
    with Store.from_settings(settings) as store:
        report = run_due(settings, store, now=now, dry_run=dry_run, policy=policy, echo=click.echo)
    if not report.items and not report.problems:
        click.echo(f"nothing due at {local_text(now, settings.timezone)}")
    elif not dry_run:
        click.secho(f"due: sent {report.sent} in all", fg="yellow" if report.problems else "green")
    if report.problems:
        raise SendError(
            f"{len(report.problems)} step(s) or campaign(s) could not be sent",
            hint="fix what is printed above, then run newsletter due again",
        )


@click.group(invoke_without_command=True)
@click.pass_context
def sequences(ctx: click.Context) -> None:
    """List the sequences in content/sequences/: steps, delays, readers in, sent per step.

    A sequence is a folder of content modules with `delay: 2d` (time after the reader
    confirmed); `newsletter due` sends them.

    \b
    Examples:
      newsletter sequences
      newsletter sequences enroll welcome --existing
    """
    if ctx.invoked_subcommand is not None:
        return
    from pipeline.cli import get_settings
    from subscribers.automation import Automation
    from subscribers.ledger import Ledger
    from subscribers.store import Store

    settings = get_settings(ctx)
    found = load_sequences(settings)
    if not found:
        click.echo("no sequences yet: add content/sequences/NAME/01-hello.md with 'delay: 0d'")
        return
    with Store.from_settings(settings) as store:
        automation, ledger = Automation(store), Ledger(store)
        for sequence in found:
            started = automation.started(sequence.name)
            since = (
                f"started {local_text(started, settings.timezone)}, "
                f"{automation.enrolled(sequence.name)} reader(s) in"
                if started
                else "not started yet (newsletter due starts it)"
            )
            click.echo(f"{sequence.name}: {len(sequence.steps)} step(s), {since}")
            for step in sequence.steps:
                campaign = ledger.campaign(step.slug, step.topic)
                counts = ledger.counts(campaign.id) if campaign else {}
                audience = "every reader" if step.topic == ANY_TOPIC else f"topic {step.topic}"
                waiting = sum(counts.get(s, 0) for s in ("pending", "retry", "unknown"))
                click.echo(
                    f"  {format_delay(step.delay):>5}  {step.slug:40} {audience:20} "
                    f"sent {counts.get('sent', 0)}" + (f", {waiting} waiting" if waiting else "")
                )


@sequences.command()
@click.argument("name")
@click.option("--existing", is_flag=True, required=True, help="Enroll the current readers.")
@click.option("--topic", help="Only current readers of this topic.")
@click.option("--now", "now_text", metavar="ISO", help="Enroll as of this time.")
@click.pass_context
def enroll(
    ctx: click.Context, name: str, existing: bool, topic: str | None, now_text: str | None
) -> None:
    """Enroll the readers already on the list in sequence NAME, from now on.

    Readers who confirm after a sequence exists are in it by themselves; this is for
    those who were there before. Each then gets the steps at their delay from now.

    \b
    Example:
      newsletter sequences enroll welcome --existing
    """
    from pipeline.cli import get_settings
    from subscribers.automation import Automation
    from subscribers.store import Store

    settings = get_settings(ctx)
    if topic and topic not in settings.topics:
        raise click.BadParameter(f"unknown topic {topic!r} (known: {', '.join(settings.topics)})")
    sequence = load_sequence(settings, name)
    now = _now(now_text, settings.timezone)
    with Store.from_settings(settings) as store:
        automation = Automation(store)
        automation.register(sequence.name, [s.slug for s in sequence.steps], now)
        added = automation.enroll_existing(name, topic or ANY_TOPIC, now)
    click.echo(f"{added} reader(s) enrolled in {name}; newsletter due sends them the steps")
