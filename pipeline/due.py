"""``newsletter due``: send every due sequence step and scheduled campaign, then exit.

For cron or a systemd timer; ``newsletter serve``'s mailer runs it every minute. Each
step and each scheduled campaign is a campaign in the ledger, sent by a :class:`Sender`
like ``newsletter send`` (the same providers, rate, batching, lost-answer handling), so
running ``due`` twice, or in two processes at once, or again after a crash, sends
nobody anything twice. ``now`` is the clock (``--now`` for previews and tests).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from pipeline.clock import in_window, local_text, next_opening
from pipeline.commands_report import UNFINISHED
from pipeline.commands_send import Job, check_and_compile, make_sender, module_hash
from pipeline.content import find_module, load_module
from pipeline.errors import PipelineError
from pipeline.guard import require_live_links
from pipeline.providers import get_provider
from pipeline.send import heartbeat
from pipeline.send_run import HEARTBEAT_SECONDS
from pipeline.sequences import Sequence, Step, load_sequences
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

    due = Due(settings, Automation(store), Ledger(store), now, dry_run, policy, echo)
    return due.run()


@dataclass
class Due:
    """One ``newsletter due``: what it works with, and what it did (``report``)."""

    settings: Settings
    automation: Automation
    ledger: Ledger
    now: dt.datetime
    dry_run: bool
    policy: str
    echo: Echo
    report: DueReport = field(default_factory=DueReport)

    def run(self) -> DueReport:
        sequences = self._sequences()
        # A sequence starts when first seen, in the window or not: who confirms after is in.
        first_seen = {s.name: self._register(s) for s in sequences}
        if not self._ready():
            return self.report
        for schedule in self.automation.due_schedules(self.now):
            with self._guarded(f"{schedule.slug} ({schedule.topic})"):
                self.scheduled(schedule)
        for sequence in sequences:
            for step in sequence.steps:
                with self._guarded(step.slug):
                    self.step(step, first_seen[sequence.name].get(step.slug, self.now))
        return self.report

    def _sequences(self) -> list[Sequence]:
        try:
            return load_sequences(self.settings)
        except PipelineError as exc:
            self._problem("sequences", exc)
            return []

    def _register(self, sequence: Sequence) -> dict[str, dt.datetime]:
        """When each step was first seen (a dry run records nothing)."""
        if self.dry_run:
            return {}
        slugs = [step.slug for step in sequence.steps]
        return self.automation.register(sequence.name, slugs, self.now)[1]

    def _ready(self) -> bool:
        """Inside the sending window, readers' links work and the provider is ready."""
        settings = self.settings
        if not in_window(self.now, settings.send_window, settings.timezone):
            opening = next_opening(self.now, settings.send_window, settings.timezone)
            self.echo(
                f"outside the sending window {settings.send_window} ({settings.timezone}): "
                f"nothing sent; it opens {local_text(opening, settings.timezone)}"
            )
            return False
        if self.dry_run:
            return True
        with self._guarded(""):  # as for send: links that work, a provider that is set up
            require_live_links(settings, what="newsletter due")
            get_provider(settings).close()
            return True
        return False

    @contextmanager
    def _guarded(self, what: str) -> Iterator[None]:
        try:
            yield
        except PipelineError as exc:
            self._problem(what, exc)

    def _problem(self, what: str, exc: PipelineError) -> None:
        where = f"{what}: " if what else ""
        self.report.problems.append(f"{where}{exc.message}")
        self.echo(f"error: {where}{exc}")

    def scheduled(self, schedule: Schedule) -> None:
        """A scheduled campaign whose time has come: snapshot its audience now, send."""
        settings, ledger = self.settings, self.ledger
        module = load_module(find_module(settings, schedule.slug), settings)
        job = check_and_compile(settings, module, schedule.topic)
        what = f"{schedule.slug} ({schedule.topic})"
        if self.dry_run:
            self.report.line(f"{what}: would send to {ledger.audience(schedule.topic)}", self.echo)
            return
        campaign, _ = ledger.open_campaign(
            slug=module.slug,
            topic=schedule.topic,
            subject=module.subject,
            content_hash=module_hash(module),
            provider=settings.provider,
        )
        self.automation.set_state(schedule.id, "sending", self.now)
        sent, left = _send(job, ledger, campaign.id, self.policy)
        if not left:
            self.automation.set_state(schedule.id, "sent", self.now)
        self._sent(f"{what}: scheduled campaign sent {sent}", sent, left)

    def step(self, step: Step, first_seen: dt.datetime) -> None:
        """A sequence step: add the readers it is now due for, then send its queue."""
        ledger, automation = self.ledger, self.automation
        campaign = ledger.campaign(step.slug, step.topic)
        clock = (step.sequence, step.topic, step.delay, first_seen, self.now)
        if self.dry_run:
            n = automation.count_due(campaign.id if campaign else None, *clock)
            if n:
                self.report.line(f"{step.slug}: would send to {n}", self.echo)
            return
        module = replace(step.module, slug=step.slug)
        job = check_and_compile(self.settings, module, step.topic)
        if campaign is None:
            campaign, _ = ledger.open_campaign(
                slug=step.slug,
                topic=step.topic,
                subject=module.subject,
                content_hash=module_hash(module),
                provider=self.settings.provider,
                snapshot=False,
            )
        added = automation.add_due(campaign.id, *clock)
        counts = ledger.counts(campaign.id)
        if not any(counts.get(s) for s in UNFINISHED):
            return
        ledger.requeue_retries(campaign.id)
        sent, left = _send(job, ledger, campaign.id, self.policy)
        self._sent(f"{step.slug}: {added} newly due, sent {sent}", sent, left)

    def _sent(self, line: str, sent: int, left: int) -> None:
        self.report.sent += sent
        self.report.line(line + (f", {left} left" if left else ""), self.echo)


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
