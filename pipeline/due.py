"""``newsletter due``: send every due sequence step and scheduled campaign, then exit.

For cron or a systemd timer; ``newsletter serve``'s mailer runs it every minute. Each
step and each scheduled campaign is a campaign in the ledger, sent by a :class:`Sender`
like ``newsletter send`` (the same providers, rate, batching, lost-answer handling), so
running ``due`` twice, or in two processes at once, or again after a crash, sends
nobody anything twice. ``now`` is the clock (``--now`` for previews and tests).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from pipeline.clock import in_window, local_text, next_opening
from pipeline.commands_send import Job, check_and_compile, make_sender
from pipeline.content import find_module, load_module
from pipeline.errors import PipelineError
from pipeline.guard import require_live_links
from pipeline.providers import get_provider
from pipeline.send import heartbeat
from pipeline.send_run import HEARTBEAT_SECONDS
from pipeline.sequences import Step, load_sequences
from pipeline.settings import Settings

if TYPE_CHECKING:
    from subscribers.automation import Automation, Schedule
    from subscribers.ledger import Ledger
    from subscribers.store import Store

Echo = Callable[[str], None]


@dataclass
class DueReport:
    """What one ``due`` did."""

    sent: int = 0
    items: list[str] = field(default_factory=list)  # one line per step or campaign
    problems: list[str] = field(default_factory=list)  # what could not be sent, and why

    def line(self, text: str, echo: Echo) -> None:
        self.items.append(text)
        echo(text)


def run_due(
    settings: Settings,
    store: Store,
    *,
    now: dt.datetime,
    dry_run: bool = False,
    policy: str = "settle",
    echo: Echo = lambda text: None,
) -> DueReport:
    """Send what is due at ``now``; never raises for one bad step (it is reported)."""
    from subscribers.automation import Automation
    from subscribers.ledger import Ledger

    report = DueReport()
    automation, ledger = Automation(store), Ledger(store)
    try:
        sequences = load_sequences(settings)
    except PipelineError as exc:
        sequences = []
        report.problems.append(f"sequences: {exc.message}")
        echo(f"error: sequences: {exc}")
    # A sequence starts when first seen, in the window or not: who confirms after is in.
    first_seen = {
        s.name: automation.register(s.name, [step.slug for step in s.steps], now)
        if not dry_run
        else (automation.started(s.name) or now, {})
        for s in sequences
    }
    if not in_window(now, settings.send_window, settings.timezone):
        opening = next_opening(now, settings.send_window, settings.timezone)
        echo(
            f"outside the sending window {settings.send_window} ({settings.timezone}): "
            f"nothing sent; it opens {local_text(opening, settings.timezone)}"
        )
        return report
    if not dry_run:
        try:  # readers' links must work, and the provider be ready, as for send
            require_live_links(settings, what="newsletter due")
            get_provider(settings).close()
        except PipelineError as exc:
            report.problems.append(exc.message)
            echo(f"error: {exc}")
            return report
    for schedule in automation.due_schedules(now):
        _guarded(
            report,
            f"{schedule.slug} ({schedule.topic})",
            echo,
            lambda s=schedule: _scheduled(
                settings, automation, ledger, s, now, dry_run, policy, report, echo
            ),
        )
    for sequence in sequences:
        seen = first_seen[sequence.name][1]
        for step in sequence.steps:
            since = seen.get(step.slug, now)
            _guarded(
                report,
                step.slug,
                echo,
                lambda st=step, fs=since: _step(
                    settings, automation, ledger, st, fs, now, dry_run, policy, report, echo
                ),
            )
    return report


def _guarded(report: DueReport, what: str, echo: Echo, action: Callable[[], None]) -> None:
    try:
        action()
    except PipelineError as exc:
        report.problems.append(f"{what}: {exc.message}")
        echo(f"error: {what}: {exc}")


def _scheduled(
    settings: Settings,
    automation: Automation,
    ledger: Ledger,
    schedule: Schedule,
    now: dt.datetime,
    dry_run: bool,
    policy: str,
    report: DueReport,
    echo: Echo,
) -> None:
    module = load_module(find_module(settings, schedule.slug), settings)
    job = check_and_compile(settings, module, schedule.topic)
    if dry_run:
        audience = ledger.audience(schedule.topic)
        report.line(f"{schedule.slug} ({schedule.topic}): would send to {audience}", echo)
        return
    campaign, _ = ledger.open_campaign(
        slug=module.slug,
        topic=schedule.topic,
        subject=module.subject,
        content_hash=_hash(module.path.read_bytes()),
        provider=settings.provider,
    )
    automation.set_state(schedule.id, "sending", now)
    sent, left = _send(job, ledger, campaign.id, policy)
    if not left:
        automation.set_state(schedule.id, "sent", now)
    report.sent += sent
    report.line(
        f"{schedule.slug} ({schedule.topic}): scheduled campaign sent {sent}"
        + (f", {left} left" if left else ""),
        echo,
    )


def _step(
    settings: Settings,
    automation: Automation,
    ledger: Ledger,
    step: Step,
    first_seen: dt.datetime,
    now: dt.datetime,
    dry_run: bool,
    policy: str,
    report: DueReport,
    echo: Echo,
) -> None:
    campaign = ledger.campaign(step.slug, step.topic)
    if dry_run:
        n = automation.count_due(
            campaign.id if campaign else None,
            step.sequence,
            step.topic,
            step.delay,
            first_seen,
            now,
        )
        if n:
            report.line(f"{step.slug}: would send to {n}", echo)
        return
    module = replace(step.module, slug=step.slug)
    job = check_and_compile(settings, module, step.topic)
    if campaign is None:
        campaign, _ = ledger.open_campaign(
            slug=step.slug,
            topic=step.topic,
            subject=module.subject,
            content_hash=_hash(module.path.read_bytes()),
            provider=settings.provider,
            snapshot=False,
        )
    added = automation.add_due(campaign.id, step.sequence, step.topic, step.delay, first_seen, now)
    counts = ledger.counts(campaign.id)
    if not any(counts.get(s) for s in ("pending", "retry", "inflight", "unknown")):
        return
    ledger.requeue_retries(campaign.id)
    sent, left = _send(job, ledger, campaign.id, policy)
    report.sent += sent
    report.line(
        f"{step.slug}: {added} newly due, sent {sent}" + (f", {left} left" if left else ""), echo
    )


def _send(job: Job, ledger: Ledger, campaign_id: int, policy: str) -> tuple[int, int]:
    """One campaign's queue through the ledger, as its own run; (sent, left)."""
    run = ledger.start_run(campaign_id, role="due", provider=job.settings.provider)
    sender = make_sender(job, ledger, campaign_id, None, None, run.id, policy)
    try:
        with heartbeat(ledger, run.id, HEARTBEAT_SECONDS):
            sender.run()
    finally:
        ledger.finish_run(run.id)
    counts = ledger.counts(campaign_id)
    left = sum(counts.get(s, 0) for s in ("pending", "retry", "unknown"))
    return sender.tally.sent, left


def _hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
