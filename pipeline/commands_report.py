"""CLI: ``campaigns`` and ``report``: what was sent, to how many, what bounced."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from pipeline.csvout import csv_writer
from pipeline.errors import PipelineError
from subscribers.deliveries import UNFINISHED

if TYPE_CHECKING:
    from subscribers.campaigns import Campaign
    from subscribers.events import EventLog
    from subscribers.send_runs import Run


def register(group: click.Group) -> None:
    group.add_command(campaigns)
    group.add_command(report)


def counts_line(counts: dict[str, int]) -> str:
    order = ("sent", "failed", "skipped", "retry", "pending", "inflight", "unknown")
    return ", ".join(f"{s} {counts.get(s, 0)}" for s in order if counts.get(s) or s == "sent")


@click.command()
@click.pass_context
def campaigns(ctx: click.Context) -> None:
    """List campaigns with their per-status counts.

    \b
    Example:
      newsletter campaigns
    """
    from pipeline.cli import get_settings
    from pipeline.clock import local_text
    from subscribers.automation import Automation
    from subscribers.ledger import Ledger
    from subscribers.store import Store

    settings = get_settings(ctx)
    with Store.from_settings(settings) as store:
        rows = Ledger(store).campaigns()
        scheduled = Automation(store).schedules(("scheduled",))
    if not rows and not scheduled:
        click.echo("no campaigns yet; start one with: newsletter send SLUG")
        return
    if rows:
        click.echo(
            f"{'slug':32} {'topic':10} {'started':16} {'sent':>7} {'failed':>7} "
            f"{'skipped':>7} {'left':>7}"
        )
    for campaign, counts in rows:
        left = sum(counts.get(s, 0) for s in UNFINISHED)
        click.echo(
            f"{campaign.slug:32} {campaign.topic:10} "
            f"{campaign.created_at:%Y-%m-%d %H:%M} {counts.get('sent', 0):>7} "
            f"{counts.get('failed', 0):>7} {counts.get('skipped', 0):>7} {left:>7}"
        )
    if scheduled:
        click.echo("scheduled (sent by `newsletter due`; cancel with send SLUG --unschedule):")
    for item in scheduled:
        click.echo(
            f"  {item.slug:30} {item.topic:10} at {local_text(item.send_at, settings.timezone)}"
        )


@click.command()
@click.argument("slug")
@click.option("--topic", help="The campaign's topic, when SLUG went to more than one.")
@click.option(
    "--csv",
    "as_csv",
    is_flag=True,
    help="Per-recipient outcomes as CSV on stdout: email, ledger status, reason, last event, "
    "counts per event.",
)
@click.pass_context
def report(ctx: click.Context, slug: str, topic: str | None, as_csv: bool) -> None:
    """Show what a campaign sent: counts per status, the failures, and what the provider
    reported through its webhooks (delivered, bounced, complained, unsubscribed, clicked,
    opened). Opens are unreliable: privacy proxies fetch images; clicks are the better signal.

    \b
    Example:
      newsletter report hip-hinge
      newsletter report hip-hinge --csv > hip-hinge-outcomes.csv
    """
    from pipeline.cli import get_settings
    from subscribers.events import EventLog
    from subscribers.ledger import Ledger
    from subscribers.store import Store

    settings = get_settings(ctx)
    with Store.from_settings(settings) as store:
        ledger = Ledger(store)
        found = [
            (c, n)
            for c, n in ledger.campaigns()
            if c.slug == slug and (topic is None or c.topic == topic)
        ]
        if not found:
            raise PipelineError(
                f"no campaign {slug!r}", hint="list them with: newsletter campaigns"
            )
        if as_csv:
            return _outcomes_csv(EventLog(store), found)
        for campaign, counts in found:
            runs = ledger.runs(campaign.id)
            providers = sorted({run.provider for run, _ in runs}) or [campaign.provider]
            click.echo(
                f"{campaign.slug} ({campaign.topic}): {campaign.subject!r}, via "
                f"{', '.join(providers)}, started {campaign.created_at:%Y-%m-%d %H:%M} UTC"
            )
            click.echo(f"  {counts_line(counts)}; total {sum(counts.values())}")
            _doubt_line(ledger.doubts(campaign.id))
            _run_lines(runs)
            for email, status, reason in ledger.failures(campaign.id):
                click.echo(f"  {status:8} {email}  {reason}")
            _event_lines(EventLog(store).counts(campaign.id))


OUTCOME_COLUMNS = (
    "email",
    "topic",
    "status",
    "reason",
    "last_event",
    "last_event_at",
    "last_event_detail",
    "delivered",
    "bounced",
    "complained",
    "unsubscribed",
    "opened",
    "clicked",
)


def _doubt_line(doubts: dict[str, int]) -> None:
    """Readers whose provider answer was lost, and how each was settled."""
    if not doubts:
        return
    click.echo(
        f"  lost answers: {doubts.get('reconciled', 0)} reconciled (the provider had them), "
        f"{doubts.get('resent', 0)} re-sent, {doubts.get('skipped', 0)} skipped by choice, "
        f"{doubts.get('unknown', 0)} still in doubt"
    )


def _run_lines(runs: list[tuple[Run, int]]) -> None:
    """One line per sending process: when, which provider, where, how many it sent."""
    for run, sent in runs:
        end = f"{run.finished_at:%H:%M:%S}" if run.finished_at else "did not finish"
        click.echo(
            f"  run {run.started_at:%Y-%m-%d %H:%M:%S}-{end} {run.role:6} via {run.provider:9}"
            f" pid {run.pid} on {run.host}: sent {sent}"
        )


def _event_lines(counts: dict[str, int]) -> None:
    """What the provider reported, in recipients (each counted once per kind of event)."""
    if not any(counts.get(kind, 0) for kind in ("delivered", "bounced", "complained", "opened")):
        click.echo("  provider events: none reported yet (set up webhooks: README, Webhooks)")
        return
    bounced = f"bounced {counts['bounced']}"
    if counts.get("bounced_hard") or counts.get("bounced_soft"):
        bounced += f" (hard {counts.get('bounced_hard', 0)}, soft {counts.get('bounced_soft', 0)})"
    click.echo(
        f"  provider events (recipients): delivered {counts['delivered']}, {bounced}, "
        f"complained {counts['complained']}, unsubscribed {counts['unsubscribed']}, "
        f"clicked {counts['clicked']}"
    )
    click.echo(
        f"  opened {counts['opened']} (unreliable: privacy proxies pre-fetch images; "
        "clicks are the better signal)"
    )


def _outcomes_csv(events: EventLog, found: list[tuple[Campaign, dict[str, int]]]) -> None:
    writer = csv_writer(_Echo(), OUTCOME_COLUMNS)
    writer.writeheader()
    for campaign, _counts in found:
        for row in events.outcomes(campaign.id):
            writer.writerow({**row, "topic": campaign.topic})


class _Echo:
    """A file-like ``write`` that goes through click.echo (CliRunner captures it)."""

    def write(self, text: str) -> None:
        click.echo(text, nl=False)
