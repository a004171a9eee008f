"""CLI commands for content modules: ``check`` and ``preview``."""

from __future__ import annotations

import webbrowser
from pathlib import Path

import click

from pipeline.check import check_paths
from pipeline.content import format_delay, load_module, module_paths, peek, pick_newest
from pipeline.errors import PipelineError
from pipeline.preview import write_preview
from pipeline.problems import Problem
from pipeline.sequences import find_any, is_step, load_step, step_paths
from pipeline.settings import Settings


def register(group: click.Group) -> None:
    group.add_command(check)
    group.add_command(preview)


@click.command()
@click.argument("slugs", nargs=-1)
@click.pass_context
def check(ctx: click.Context, slugs: tuple[str, ...]) -> None:
    """Validate content modules and templates.

    Prints one line per problem, `path:line: error|warning: message`, and exits 1
    when there is any error. With no SLUG, checks every module in content/ and every
    sequence step in content/sequences/ (a step is SEQUENCE/STEP).

    \b
    Examples:
      newsletter check
      newsletter check hip-hinge
      newsletter check welcome/hello
    """
    from pipeline.cli import get_settings

    settings = get_settings(ctx)
    paths = [find_any(settings, s) for s in slugs] or [
        *module_paths(settings),
        *step_paths(settings),
    ]
    problems = sorted(check_paths(settings, paths) + new_step_notes(settings, paths))
    errors = _show(problems)
    drafts = [path for path in paths if peek(path)[0]]
    for path in drafts:
        click.secho(f"{path}: draft (draft: true): checked, never sent", fg="cyan")
    warnings = len(problems) - errors
    note = f" ({len(drafts)} draft(s))" if drafts else ""
    steps = sum(is_step(settings, p) for p in paths)
    what = f"{len(paths) - steps} module(s)" + (f" and {steps} sequence step(s)" if steps else "")
    summary = f"checked {what}{note}: {errors} error(s), {warnings} warning(s)"
    click.secho(summary, fg="red" if errors else "green", err=True)
    if errors:
        ctx.exit(1)


def _show(problems: list[Problem]) -> int:
    """Print problems, one per line; the number of errors among them."""
    for problem in problems:
        click.secho(str(problem), fg="red" if problem.level == "error" else "yellow")
    return sum(p.level == "error" for p in problems)


@click.command()
@click.argument("slug", required=False)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the files (default: var/preview).",
)
@click.option("--open", "open_", is_flag=True, help="Open the HTML in your browser.")
@click.pass_context
def preview(ctx: click.Context, slug: str | None, out: Path | None, open_: bool) -> None:
    """Write SLUG.html, SLUG.txt and SLUG.eml as a sample subscriber gets them.

    The .eml is the full message (both parts, every header, CRLF line ends) that any
    mail client opens. In the .html, local images point at files under content/ so
    the page shows offline. With no SLUG, previews the newest content module that is
    not a draft (name a draft to preview it). Problems `newsletter check` finds are
    printed too, and exit status 1 when there is an error (the files are written).

    \b
    Examples:
      newsletter preview hip-hinge --open
      newsletter preview --out /tmp/preview
    """
    from pipeline.cli import get_settings
    from subscribers.tokens import subscriber_token

    settings = get_settings(ctx)
    if slug:
        module = load_module(find_any(settings, slug), settings)
    else:
        found = pick_newest(settings)
        module = found.module
        for path in found.broken:
            click.secho(f"skipped {path}: it has errors (older; newsletter check)", fg="yellow")
    token = subscriber_token(settings.secret_key(), 0, "")  # no reader has id 0
    files = write_preview(module, settings, out or settings.var_dir / "preview", token=token)
    for path in files.paths:
        click.echo(f"wrote {path}")
    errors = _show(sorted(check_paths(settings, [module.path])))
    draft = " (draft: never sent)" if module.draft else ""
    click.secho(
        f"{module.slug}{draft}: {module.kind} to '{settings.topics[module.topic].name}', "
        f"subject {module.subject!r}, HTML {files.html_size / 1024:.1f} KB",
        fg="red" if errors else "green",
    )
    if open_:
        webbrowser.open(files.paths[0].resolve().as_uri())
    if errors:
        click.secho(f"{errors} error(s): fix them before sending", fg="red", err=True)
        ctx.exit(1)


def new_step_notes(settings: Settings, paths: list[Path]) -> list[Problem]:
    """A step added to a sequence that has started reaches only the readers who have not
    yet passed its delay: say so (read from the store when there is one)."""
    from subscribers.automation import Automation
    from subscribers.store import Store

    steps = [p for p in paths if is_step(settings, p)]
    if not steps or not _store_exists(settings):
        return []
    notes = []
    with Store.from_settings(settings) as store:
        automation = Automation(store)
        for path in steps:
            try:
                step = load_step(settings, path)
            except PipelineError:
                continue  # check_module reports it
            started = automation.started(step.sequence)
            if started is None or automation.step_seen(step.sequence, step.slug):
                continue
            notes.append(
                Problem(
                    str(path),
                    step.module.line_of("delay"),
                    "warning",
                    f"new step in {step.sequence}, which started "
                    f"{started:%Y-%m-%d}: readers who confirmed more than "
                    f"{format_delay(step.delay)} before it is first sent will not get it",
                )
            )
    return notes


def _store_exists(settings: Settings) -> bool:
    url = settings.database_url
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).exists()
    return True
