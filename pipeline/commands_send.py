"""CLI: ``send``, ``campaigns`` and ``report``, wiring content, store, ledger and provider."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from pipeline.check import check_module
from pipeline.commands_report import counts_line
from pipeline.content import ContentModule, find_module, load_module, newest, refuse_draft
from pipeline.errors import ConfigError, SendError
from pipeline.guard import live_links_warning, require_live_links
from pipeline.guidance import nobody_to_send
from pipeline.providers import check_provider, get_provider, provider_class
from pipeline.render import Compiled, Recipient, compile_campaign
from pipeline.send import InDoubt, RateLimiter, Sender, Tally, abort_message, in_doubt
from pipeline.send_run import RunResult, run_child, run_main
from pipeline.settings import Settings
from pipeline.window import Window, WindowStats
from subscribers.deliveries import UNFINISHED

if TYPE_CHECKING:  # the CLI wires the store in; imported lazily at run time
    from subscribers.campaigns import Campaign
    from subscribers.ledger import Ledger
    from subscribers.store import Store


def register(group: click.Group) -> None:
    group.add_command(send)


@dataclass
class Job:
    """Everything a send needs, resolved from the command line and settings."""

    settings: Settings
    module: ContentModule
    topic: str
    compiled: Compiled

    @property
    def resume_command(self) -> str:
        return f"newsletter send {self.module.slug} --topic {self.topic}"


def prepare_job(settings: Settings, slug: str | None, topic: str | None = None) -> Job:
    """The module to send (the newest without SLUG) checked and compiled for TOPIC.

    Refuses a module with check errors, as every send does.
    """
    module = load_module(find_module(settings, slug), settings) if slug else newest(settings)
    topic = topic or module.topic
    if topic not in settings.topics:
        raise ConfigError(
            f"unknown topic {topic!r}", hint=f"use one of: {', '.join(settings.topics)}"
        )
    return check_and_compile(settings, module, topic)


def check_and_compile(settings: Settings, module: ContentModule, topic: str) -> Job:
    """A job for a module already loaded (a sequence step, a scheduled campaign)."""
    errors = [p for p in check_module(settings, module.path) if p.level == "error"]
    if errors:
        raise SendError(
            f"{module.path} has {len(errors)} error(s), first: {errors[0]}",
            hint=f"run: newsletter check {module.slug}",
        )
    module.topic = topic
    return Job(settings, module, topic, compile_campaign(module, settings))


@click.command()
@click.argument("slug", required=False)
@click.option("--topic", help="Send to this topic's subscribers (default: the module's topic).")
@click.option("--dry-run", is_flag=True, help="Render every message, send none, record nothing.")
@click.option("--test-to", metavar="ADDR", help="Send one sample to ADDR; records nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before mailing the list.")
@click.option("--include-new", is_flag=True, help="Also mail those who became eligible since.")
@click.option("--worker", is_flag=True, help="Share the campaign with other workers (PostgreSQL).")
@click.option("--batch-size", type=click.IntRange(1), help="Messages per provider call.")
@click.option("--rate", type=click.FloatRange(0), help="Messages per second (0 = unlimited).")
@click.option(
    "--concurrency", type=click.IntRange(1), help="Sending processes sharing the campaign."
)
@click.option(
    "--resend-unknown",
    is_flag=True,
    help="Send again to readers in doubt (the provider may have accepted them; it cannot be "
    "asked): some may get it twice.",
)
@click.option(
    "--skip-unknown",
    is_flag=True,
    help="Count readers in doubt as done without sending: some may never get it.",
)
@click.option(
    "--at",
    "at_text",
    metavar="ISO",
    help="Schedule instead of sending: 2026-12-01T07:00 (site time zone unless an offset "
    "is given); `newsletter due` sends it then.",
)
@click.option("--unschedule", is_flag=True, help="Cancel the scheduled send of SLUG.")
@click.option("--child", is_flag=True, hidden=True, help="Internal: a --concurrency helper.")
@click.pass_context
def send(
    ctx: click.Context,
    slug: str | None,
    topic: str | None,
    dry_run: bool,
    test_to: str | None,
    yes: bool,
    include_new: bool,
    worker: bool,
    batch_size: int | None,
    rate: float | None,
    concurrency: int | None,
    resend_unknown: bool,
    skip_unknown: bool,
    at_text: str | None,
    unschedule: bool,
    child: bool,
) -> None:
    """Send a content module to its topic's confirmed subscribers, exactly once.

    With no SLUG, sends the newest module. Running the same command again resumes:
    only recipients not yet sent are mailed. Exit status 1 while anyone is left unsent.

    \b
    Examples:
      newsletter send hip-hinge --dry-run
      newsletter send hip-hinge --test-to me@example.com
      newsletter send hip-hinge --yes
      newsletter send hip-hinge --include-new --yes
      newsletter send hip-hinge --concurrency 2 --yes  # two processes, one per core
      newsletter send hip-hinge --worker --yes      # one of several, on PostgreSQL
      newsletter send hip-hinge --resend-unknown --yes  # after a lost answer (SES, SMTP)
      newsletter send hip-hinge --at 2026-12-01T07:00   # schedule it; `due` sends it then
      newsletter send hip-hinge --unschedule
    """
    from pipeline.cli import get_settings

    if resend_unknown and skip_unknown:
        raise click.UsageError("choose one of --resend-unknown and --skip-unknown")
    policy = "resend" if resend_unknown else "skip" if skip_unknown else "settle"
    settings = get_settings(ctx)
    if unschedule:
        return _unschedule(settings, slug, topic)
    if test_to:  # one sample to yourself: localhost links are only worth a warning
        _warn(live_links_warning(settings))
    else:  # readers' links must work (exit 2), --dry-run included: it checks what a send would
        require_live_links(settings, what="newsletter send")
    job = prepare_job(settings, slug, topic)
    if test_to:
        click.secho(str(send_test(job, test_to)), fg="green")
        return None
    refuse_draft(job.module)  # named explicitly (the newest is never a draft)
    if at_text:
        return _schedule(job, at_text)
    from subscribers.ledger import Ledger
    from subscribers.store import Store

    with Store.from_settings(settings) as store:
        if dry_run:
            click.echo(f"provider {settings.provider}: {check_provider(settings)}")
            return _dry_run(job, store)
        if worker and store.dialect != "postgresql":
            raise ConfigError(
                "--worker needs PostgreSQL: SQLite sends from one process",
                hint="set NEWSLETTER_DATABASE_URL=postgresql://... or drop --worker",
            )
        get_provider(settings).close()  # secrets and settings complete before any campaign
        ledger = Ledger(store)
        if child:
            return _child(job, ledger, batch_size, rate, policy)
        campaign, remaining = _open(job, ledger, store, yes=yes or worker, include_new=include_new)
        run = ledger.start_run(
            campaign.id, role="worker" if worker else "main", provider=settings.provider
        )
        processes = concurrency or settings.send_concurrency
        rate = settings.send_rate if rate is None else rate
        sender = make_sender(job, ledger, campaign.id, batch_size, rate / processes, run.id, policy)
        helpers = (
            _helper_args(ctx, job, sender, rate / processes, policy) if processes > 1 else None
        )
        try:
            result = run_main(
                sender, ledger, remaining, helpers, processes - 1, wait_for_others=not worker
            )
        except KeyboardInterrupt:
            _interrupted(job, ledger, campaign.id)
        counts = ledger.counts(campaign.id)
        doubts = ledger.doubts(campaign.id)
    _summary(job, result.tally, counts, doubts, result.elapsed, sender.window.stats)
    _outcome(job, result, counts, sender.unsettled, worker)


def _schedule(job: Job, at_text: str) -> None:
    """Record when to send; ``newsletter due`` (or serve's mailer) sends it then."""
    from pipeline.clock import in_window, local_text, next_opening, parse_when
    from subscribers.automation import Automation
    from subscribers.ledger import Ledger
    from subscribers.store import Store

    settings = job.settings
    at = parse_when(at_text, settings.timezone)
    now = dt.datetime.now(dt.UTC)
    with Store.from_settings(settings) as store:
        if Ledger(store).campaign(job.module.slug, job.topic) is not None:
            raise SendError(
                f"{job.module.slug} ({job.topic}) has already been sent, or started",
                hint=f"see: newsletter report {job.module.slug}",
            )
        Automation(store).schedule(job.module.slug, job.topic, at, now)
    when = local_text(at, settings.timezone)
    click.secho(f"scheduled {job.module.slug} ({job.topic}) for {when}", fg="green")
    if at < now:
        click.echo("that time has passed: the next `newsletter due` sends it")
    if not in_window(at, settings.send_window, settings.timezone):
        opening = next_opening(at, settings.send_window, settings.timezone)
        click.echo(
            f"outside the sending window {settings.send_window}: it goes out "
            f"{local_text(opening, settings.timezone)}"
        )
    click.echo("it goes out when `newsletter due` runs (cron, or `newsletter serve`)")


def _unschedule(settings: Settings, slug: str | None, topic: str | None) -> None:
    from subscribers.automation import Automation
    from subscribers.store import Store

    if not slug:
        raise click.UsageError("--unschedule needs the SLUG of the scheduled campaign")
    with Store.from_settings(settings) as store:
        cancelled = Automation(store).unschedule(slug, topic, dt.datetime.now(dt.UTC))
    if not cancelled:
        raise SendError(f"{slug} is not scheduled", hint="see: newsletter campaigns")
    click.secho(f"unscheduled {slug}", fg="green")


def _outcome(
    job: Job, result: RunResult, counts: dict[str, int], unsettled: str, worker: bool
) -> None:
    """Exit 0 only when everyone is done; otherwise say why and what to run next."""
    if isinstance(result.error, InDoubt):  # the count from the ledger: every lane's
        exact = in_doubt(counts.get("unknown", 0), job.settings.provider)
        raise SendError(exact.message, hint=_in_doubt_hint(job, exact.hint))
    if result.error is not None:
        raise abort_message(result.error, job.resume_command)  # type: ignore[arg-type]
    if result.stopped:
        raise SendError("stopped before the end", hint=f"resume with: {job.resume_command}")
    if counts.get("unknown"):
        why = unsettled or f"{job.settings.provider} cannot be asked what it accepted"
        raise SendError(
            f"{counts['unknown']} reader(s) in doubt: their provider's answer was lost ({why})",
            hint=_in_doubt_hint(job, None),
        )
    # A worker is done when the queue is empty; batches other workers hold are theirs.
    left = sum(counts.get(s, 0) for s in (("pending", "retry") if worker else UNFINISHED))
    if worker and counts.get("inflight"):
        click.echo(f"{counts['inflight']} recipient(s) in flight with other workers")
    if left:
        raise SendError(
            f"{left} recipient(s) not sent yet", hint=f"resume with: {job.resume_command}"
        )


def _in_doubt_hint(job: Job, hint: str | None) -> str:
    base = job.resume_command
    return (
        f"{hint + '; ' if hint else ''}the same command without either flag sends everyone "
        f"else and keeps them in doubt. Send them again: {base} --resend-unknown; or count "
        f"them done: {base} --skip-unknown"
    )


def _interrupted(job: Job, ledger: Ledger, campaign_id: int) -> None:
    counts = ledger.counts(campaign_id)
    doubt = counts.get("unknown", 0)
    click.secho(
        f"\ninterrupted: {counts.get('sent', 0)} sent so far"
        + (f", {doubt} in doubt (the batch in flight; settled on resume)" if doubt else ""),
        fg="yellow",
        err=True,
    )
    click.echo(f"resume with: {job.resume_command}", err=True)
    sys.exit(130)


def _open(
    job: Job, ledger: Ledger, store: Store, *, yes: bool, include_new: bool
) -> tuple[Campaign, int]:
    module = job.module
    content_hash = module_hash(module)
    campaign = ledger.campaign(module.slug, job.topic)
    if campaign is None:
        audience = ledger.audience(job.topic)
        if audience == 0:
            raise nobody_to_send(job.settings, module.slug, job.topic)
        _confirm(job, audience, "", yes)
        campaign, _ = ledger.open_campaign(
            slug=module.slug,
            topic=job.topic,
            subject=module.subject,
            content_hash=content_hash,
            provider=job.settings.provider,
        )
    else:
        if campaign.content_hash != content_hash:
            click.secho(
                f"warning: {module.path} changed since this campaign started; those "
                "already sent got the earlier version",
                fg="yellow",
                err=True,
            )
        added = ledger.snapshot(campaign) if include_new else 0
        ledger.requeue_retries(campaign.id)
        counts = ledger.counts(campaign.id)
        left = sum(counts.get(s, 0) for s in UNFINISHED)
        if left:
            note = f"resuming: {counts.get('sent', 0)} already sent"
            note += f", {counts['unknown']} in doubt" if counts.get("unknown") else ""
            note += f", {added} new subscriber(s) added" if include_new else ""
            _confirm(job, left, note, yes)
        else:
            click.echo(
                f"{module.slug} ({job.topic}): nothing left to send; "
                f"{counts.get('sent', 0)} sent"
                + ("" if include_new else ". Use --include-new for later subscribers.")
            )
    return campaign, sum(ledger.counts(campaign.id).get(s, 0) for s in UNFINISHED)


def module_hash(module: ContentModule) -> str:
    """The campaign's ``content_hash``: a later send can tell the file changed since."""
    return hashlib.sha256(module.path.read_bytes()).hexdigest()


def _confirm(job: Job, recipients: int, note: str, yes: bool) -> None:
    settings = job.settings
    rate = settings.send_rate
    eta = f"about {_duration(recipients / rate)} at {rate:g}/s" if rate else "not throttled"
    click.echo(
        f"Subject:    {job.module.subject}\n"
        f"Topic:      {settings.topics[job.topic].name} ({job.topic})\n"
        f"Recipients: {recipients}{f'  ({note})' if note else ''}\n"
        f"Provider:   {settings.provider}\n"
        f"Time:       {eta}"
    )
    if yes:
        return
    if not sys.stdin.isatty():
        raise SendError("not sending without confirmation", hint="add --yes to send without asking")
    click.confirm(f"Send to {recipients} recipient(s)?", abort=True)


MESSAGES_IN_FLIGHT = 8000  # messages one process holds in flight (~1 KB each: see jsonbody)


def lanes(settings: Settings, batch_size: int) -> int:
    """Batches one process may keep in flight: ``[send] in_flight``, else as many as the
    provider allows and ``MESSAGES_IN_FLIGHT`` messages fill (16 of Postmark's 500)."""
    if settings.send_in_flight:
        return settings.send_in_flight
    cap = provider_class(settings.provider).max_in_flight
    return max(1, min(cap, MESSAGES_IN_FLIGHT // max(1, batch_size)))


def make_sender(
    job: Job,
    ledger: Ledger,
    campaign_id: int,
    batch_size: int | None,
    rate: float | None,
    run_id: str,
    policy: str,
) -> Sender:
    from subscribers.send_runs import LEASE
    from subscribers.tokens import subscriber_token

    settings = job.settings
    cap = provider_class(settings.provider).max_batch
    size = min(batch_size or settings.send_batch_size or cap, cap)
    return Sender(
        compiled=job.compiled,
        campaign_id=campaign_id,
        ledger=ledger,
        provider_factory=lambda: get_provider(settings),
        token_for=functools.partial(subscriber_token, settings.secret_key()),
        batch_size=size,
        limiter=RateLimiter(settings.send_rate if rate is None else rate),
        window=Window(lanes(settings, size)),
        run_id=run_id,
        lease=LEASE,
        unknown_policy=policy,
    )


def _helper_args(
    ctx: click.Context, job: Job, sender: Sender, rate: float, policy: str
) -> list[str]:
    config = ctx.find_root().obj.get("config")
    flags = {"resend": ["--resend-unknown"], "skip": ["--skip-unknown"]}.get(policy, [])
    return [
        sys.executable,
        "-m",
        "pipeline",
        *(["--config", config] if config else []),
        "send",
        job.module.slug,
        "--topic",
        job.topic,
        "--child",
        "--batch-size",
        str(sender.batch_size),
        "--rate",
        str(rate),
        *flags,
    ]


def _child(
    job: Job, ledger: Ledger, batch_size: int | None, rate: float | None, policy: str
) -> None:
    """A --concurrency helper: drain the existing campaign, print the tally as JSON."""
    campaign = ledger.campaign(job.module.slug, job.topic)
    if campaign is None:
        raise SendError(f"no campaign {job.module.slug!r} ({job.topic}) to help with")
    run = ledger.start_run(campaign.id, role="helper", provider=job.settings.provider)
    run_child(make_sender(job, ledger, campaign.id, batch_size, rate, run.id, policy), ledger)


def _summary(
    job: Job,
    tally: Tally,
    counts: dict[str, int],
    doubts: dict[str, int],
    elapsed: float,
    window: WindowStats | None = None,
) -> None:
    left = sum(counts.get(s, 0) for s in UNFINISHED)
    settled = ""
    if tally.reconciled or tally.resent:
        settled = (
            f"; lost answers: {tally.reconciled} confirmed by the provider, "
            f"{tally.resent} sent again"
        )
    click.secho(
        f"{job.module.slug} ({job.topic}) via {job.settings.provider}: this run sent {tally.sent}, "
        f"failed {tally.failed}, to retry {tally.retry}, skipped {tally.skipped} (left the list), "
        f"suppressed {tally.suppressed}, in {_duration(elapsed)}{settled}",
        fg="green" if not (tally.failed or left) else "yellow",
    )
    click.echo(
        f"campaign total: {counts_line(counts)}; left to send: {left}"
        + (f"; in doubt: {counts['unknown']}" if counts.get("unknown") else "")
    )
    if window is not None and window.calls:
        click.echo(
            f"provider: {window.calls} call(s), median {window.median_ms():,.0f} ms; up to "
            f"{window.largest} batch(es) in flight"
            + (f", slowed down {window.cuts} time(s) when it pushed back" if window.cuts else "")
        )
    for reason, n in tally.reasons.most_common(5):
        click.echo(f"  {n} x {reason}")


def _warn(message: str | None) -> None:
    if message:
        click.secho(f"warning: {message}", fg="yellow", err=True)


def _duration(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f} min"


@dataclass(frozen=True)
class TestSent:
    """What the provider answered to a test send."""

    email: str
    provider: str
    message_id: str
    provider_id: str
    status: str

    def __str__(self) -> str:
        return (
            f"test message sent to {self.email} via {self.provider} "
            f"(id {self.provider_id or self.message_id}); nothing recorded"
        )


def send_test(job: Job, address: str) -> TestSent:
    """Mail one sample of the job's email to ADDRESS through the configured provider.

    The subject is marked ``[TEST]``; nothing is recorded (no campaign, no ledger row).
    ``newsletter send --test-to`` and the studio's Send test button both come here.
    Raises ``SendError`` when the provider refuses the message, ``ProviderError`` or
    ``ConfigError`` when it cannot be reached or is not configured.
    """
    from subscribers.tokens import subscriber_token
    from subscribers.validation import normalise_email

    email = normalise_email(address)
    msg = job.compiled.personalize(
        Recipient("test", email, "", subscriber_token(job.settings.secret_key(), 0, "")),
        message_id=None,
    )
    msg.subject = f"[TEST] {msg.subject}"
    msg.message_id = msg.message_id.replace(".test@", f".test-{time.time_ns()}@")
    with get_provider(job.settings) as provider:
        (result,) = provider.send_batch([msg])
    if not result.accepted:
        raise SendError(f"test send to {email} was refused: {result.reason or result.status}")
    return TestSent(email, job.settings.provider, msg.message_id, result.provider_id, result.status)


def _dry_run(job: Job, store: Store) -> None:
    from subscribers.tokens import subscriber_token

    token = functools.partial(subscriber_token, job.settings.secret_key())
    start = time.monotonic()
    count = size = 0
    for sid, email, name, link_key in store.eligible_recipients(job.topic):
        msg = job.compiled.personalize(Recipient(sid, email, name, token(sid, link_key)))
        count += 1
        size += len(msg.html) + len(msg.text)
    elapsed = time.monotonic() - start
    click.secho(
        f"dry run: rendered {count} message(s) for {job.module.slug} ({job.topic}), "
        f"{size / max(count, 1) / 1024:.1f} KB each, in {_duration(elapsed)}; nothing sent",
        fg="green",
    )
