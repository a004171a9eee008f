"""CLI: ``send``, ``campaigns`` and ``report``, wiring content, store, ledger and provider."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from pipeline.check import check_module
from pipeline.commands_report import UNFINISHED, counts_line
from pipeline.content import ContentModule, find_module, load_module, newest
from pipeline.errors import ConfigError, ProviderError, SendError
from pipeline.providers import get_provider, provider_class
from pipeline.render import Compiled, Recipient, compile_campaign
from pipeline.send import RateLimiter, Sender, Tally, abort_message
from pipeline.settings import Settings

if TYPE_CHECKING:  # the CLI wires the store in; imported lazily at run time
    from click._termui_impl import ProgressBar

    from subscribers.ledger import Campaign, Ledger
    from subscribers.store import Store

WORKER_LEASE = dt.timedelta(minutes=10)


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


def _job(settings: Settings, slug: str | None, topic: str | None) -> Job:
    module = load_module(find_module(settings, slug), settings) if slug else newest(settings)
    topic = topic or module.topic
    if topic not in settings.topics:
        raise ConfigError(
            f"unknown topic {topic!r}", hint=f"use one of: {', '.join(settings.topics)}"
        )
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
    """
    from pipeline.cli import get_settings

    settings = get_settings(ctx)
    job = _job(settings, slug, topic)
    if test_to:
        return _test_send(job, test_to)
    from subscribers.ledger import Ledger
    from subscribers.store import Store

    with Store.from_settings(settings) as store:
        if dry_run:
            return _dry_run(job, store)
        if worker and store.dialect != "postgresql":
            raise ConfigError(
                "--worker needs PostgreSQL: SQLite sends from one process",
                hint="set NEWSLETTER_DATABASE_URL=postgresql://... or drop --worker",
            )
        ledger = Ledger(store)
        if child:
            return _child(job, ledger, batch_size, rate)
        campaign, remaining = _open(job, ledger, store, yes=yes or worker, include_new=include_new)
        processes = concurrency or settings.send_concurrency
        rate = settings.send_rate if rate is None else rate
        sender = _sender(job, ledger, campaign.id, batch_size, rate / processes, worker)
        helpers = _helper_args(ctx, job, sender, rate / processes) if processes > 1 else None
        tally, elapsed, error = _run(sender, ledger, remaining, helpers, processes - 1)
        counts = ledger.counts(campaign.id)
    _summary(job, tally, counts, elapsed)
    if error is not None:
        raise abort_message(error, job.resume_command)
    # A worker is done when the queue is empty; batches other workers hold are theirs.
    left = sum(counts.get(s, 0) for s in (("pending", "retry") if worker else UNFINISHED))
    if worker and counts.get("inflight"):
        click.echo(f"{counts['inflight']} recipient(s) in flight with other workers")
    if left:
        raise SendError(
            f"{left} recipient(s) not sent yet", hint=f"resume with: {job.resume_command}"
        )


def _open(
    job: Job, ledger: Ledger, store: Store, *, yes: bool, include_new: bool
) -> tuple[Campaign, int]:
    module = job.module
    content_hash = hashlib.sha256(module.path.read_bytes()).hexdigest()
    campaign = ledger.campaign(module.slug, job.topic)
    if campaign is None:
        audience = ledger.audience(job.topic)
        if audience == 0:
            raise SendError(
                f"nobody to send to: no confirmed subscribers of {job.topic!r}",
                hint="readers sign up through `newsletter serve` (/subscribe); to add one "
                "yourself: newsletter subscribers add EMAIL --confirmed --consent-source "
                "'...'; `make demo` shows the whole flow",
            )
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
            note += f", {added} new subscriber(s) added" if include_new else ""
            _confirm(job, left, note, yes)
        else:
            click.echo(
                f"{module.slug} ({job.topic}): nothing left to send; "
                f"{counts.get('sent', 0)} sent"
                + ("" if include_new else ". Use --include-new for later subscribers.")
            )
    return campaign, sum(ledger.counts(campaign.id).get(s, 0) for s in UNFINISHED)


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


def _sender(
    job: Job,
    ledger: Ledger,
    campaign_id: int,
    batch_size: int | None,
    rate: float | None,
    worker: bool,
) -> Sender:
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
        lease=WORKER_LEASE if worker else dt.timedelta(0),
    )


def _run(
    sender: Sender,
    ledger: Ledger,
    remaining: int,
    helper_args: list[str] | None,
    helpers: int,
) -> tuple[Tally, float, ProviderError | None]:
    """Send with a progress bar; with helper processes, the bar follows the ledger."""
    start = time.monotonic()
    error = None
    with click.progressbar(
        length=max(remaining, 1),
        label="sending",
        show_eta=True,
        show_pos=True,
        file=sys.stderr,
        item_show_func=lambda _: _rate(sender.tally, start),
    ) as bar:
        try:
            if helper_args is None:
                sender.progress = bar.update
                sender.run()
            else:
                sender.run(drain=False)  # in-flight batches first, before any helper claims
                _with_helpers(sender, ledger, helper_args, helpers, bar)
        except ProviderError as exc:
            error = exc
    return sender.tally, time.monotonic() - start, error


def _helper_args(ctx: click.Context, job: Job, sender: Sender, rate: float) -> list[str]:
    config = ctx.find_root().obj.get("config")
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
    ]


def _with_helpers(
    sender: Sender, ledger: Ledger, args: list[str], helpers: int, bar: ProgressBar
) -> None:
    """Run ``helpers`` child processes and this one on the same queue; merge tallies."""
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True) for _ in range(helpers)]
    done = threading.Event()
    poller = threading.Thread(target=_follow, args=(ledger, sender.campaign_id, bar, done))
    poller.start()
    try:
        sender.run(recover=False)
    finally:
        outputs = [p.communicate()[0] for p in procs]
        done.set()
        poller.join()
    for proc, out in zip(procs, outputs, strict=True):
        last = out.strip().splitlines()[-1] if out.strip() else "{}"
        sender.tally.merge(json.loads(last) if last.startswith("{") else {})
        if proc.returncode:
            click.secho(f"a sending process stopped (exit {proc.returncode})", fg="red", err=True)


def _follow(ledger: Ledger, campaign_id: int, bar: ProgressBar, done: threading.Event) -> None:
    """Move the progress bar by what every process has recorded in the ledger."""

    def finished() -> int:
        counts = ledger.counts(campaign_id)
        return sum(counts.get(s, 0) for s in ("sent", "failed", "skipped", "retry"))

    base = finished()
    while not done.wait(0.3):
        bar.update(finished() - base - bar.pos)


def _child(job: Job, ledger: Ledger, batch_size: int | None, rate: float | None) -> None:
    """A --concurrency helper: drain the existing campaign, print the tally as JSON."""
    campaign = ledger.campaign(job.module.slug, job.topic)
    if campaign is None:
        raise SendError(f"no campaign {job.module.slug!r} ({job.topic}) to help with")
    sender = _sender(job, ledger, campaign.id, batch_size, rate, worker=True)
    try:
        sender.run(recover=False)
    finally:
        click.echo(json.dumps(sender.tally.as_dict()))


def _rate(tally: Tally, start: float) -> str:
    elapsed = time.monotonic() - start
    done = tally.sent + tally.failed + tally.retry + tally.skipped
    return f"{done / elapsed:,.0f} msg/s" if elapsed > 0 and done else ""


def _summary(job: Job, tally: Tally, counts: dict[str, int], elapsed: float) -> None:
    left = sum(counts.get(s, 0) for s in UNFINISHED)
    click.secho(
        f"{job.module.slug} ({job.topic}) via {job.settings.provider}: this run sent {tally.sent}, "
        f"failed {tally.failed}, to retry {tally.retry}, skipped {tally.skipped} (left the list), "
        f"suppressed {tally.suppressed}, in {_duration(elapsed)}",
        fg="green" if not (tally.failed or left) else "yellow",
    )
    click.echo(f"campaign total: {counts_line(counts)}; left to send: {left}")
    for reason, n in tally.reasons.most_common(5):
        click.echo(f"  {n} x {reason}")


def _duration(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _test_send(job: Job, address: str) -> None:
    from subscribers.tokens import subscriber_token
    from subscribers.validation import normalise_email

    email = normalise_email(address)
    msg = job.compiled.personalize(
        Recipient("test", email, "", subscriber_token(job.settings.secret_key(), 0, "")),
        message_id=None,
    )
    msg.subject = f"[TEST] {msg.subject}"
    msg.message_id = msg.message_id.replace(".test@", f".test-{int(time.time())}@")
    with get_provider(job.settings) as provider:
        (result,) = provider.send_batch([msg])
    if not result.accepted:
        raise SendError(f"test send to {email} was refused: {result.reason or result.status}")
    click.secho(
        f"test message sent to {email} via {job.settings.provider} "
        f"(id {result.provider_id or msg.message_id}); nothing recorded",
        fg="green",
    )


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
