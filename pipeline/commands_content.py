"""CLI commands for content modules: ``check`` and ``preview``."""

from __future__ import annotations

import webbrowser
from pathlib import Path

import click

from pipeline.check import check_paths
from pipeline.content import find_module, load_module, module_paths, newest
from pipeline.preview import write_preview


def register(group: click.Group) -> None:
    group.add_command(check)
    group.add_command(preview)


@click.command()
@click.argument("slugs", nargs=-1)
@click.pass_context
def check(ctx: click.Context, slugs: tuple[str, ...]) -> None:
    """Validate content modules and templates.

    Prints one line per problem, `path:line: error|warning: message`, and exits 1
    when there is any error. With no SLUG, checks every module in content/.

    \b
    Examples:
      newsletter check
      newsletter check hip-hinge
    """
    from pipeline.cli import get_settings

    settings = get_settings(ctx)
    paths = [find_module(settings, s) for s in slugs] or module_paths(settings)
    problems = sorted(check_paths(settings, paths))
    for problem in problems:
        colour = "red" if problem.level == "error" else "yellow"
        click.secho(str(problem), fg=colour)
    errors = sum(p.level == "error" for p in problems)
    warnings = len(problems) - errors
    summary = f"checked {len(paths)} module(s): {errors} error(s), {warnings} warning(s)"
    click.secho(summary, fg="red" if errors else "green", err=True)
    if errors:
        ctx.exit(1)


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
    the page shows offline. With no SLUG, previews the newest content module.

    \b
    Examples:
      newsletter preview hip-hinge --open
      newsletter preview --out /tmp/preview
    """
    from pipeline.cli import get_settings
    from subscribers.tokens import subscriber_token

    settings = get_settings(ctx)
    module = load_module(find_module(settings, slug), settings) if slug else newest(settings)
    token = subscriber_token(settings.secret_key(), 0, "")  # no reader has id 0
    files = write_preview(module, settings, out or settings.var_dir / "preview", token=token)
    for path in files.paths:
        click.echo(f"wrote {path}")
    click.secho(
        f"{module.slug}: {module.kind} to '{settings.topics[module.topic].name}', "
        f"subject {module.subject!r}, HTML {files.html_size / 1024:.1f} KB",
        fg="green",
    )
    if open_:
        webbrowser.open(files.paths[0].resolve().as_uri())
