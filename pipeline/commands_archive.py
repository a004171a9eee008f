"""CLI command ``newsletter archive``: the public archive of sent issues and its feed."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.archive import Selection, sent_issues
from pipeline.archive_build import Report, build


def register(group: click.Group) -> None:
    group.add_command(archive)


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to write (default: var/archive).",
)
@click.pass_context
def archive(ctx: click.Context, out: Path | None) -> None:
    """Build the public archive of sent issues and its Atom feed.

    Writes a folder to publish on any static host: index.html (newest first, 50 a
    page), SLUG/index.html for every issue sent to at least one reader (with its
    images), latest/ and feed.xml. Links between pages are relative; the feed and
    canonical links use [site] archive_url. Only what changed since the last build is
    written again. `newsletter serve` serves the same pages at /archive/.

    \b
    Examples:
      newsletter archive
      newsletter archive --out public/newsletter
      newsletter archive && rsync -a --delete var/archive/ host:/srv/www/newsletter/
    """
    from pipeline.cli import get_settings
    from subscribers.forms import render_form
    from subscribers.ledger import Ledger
    from subscribers.store import Store

    settings = get_settings(ctx)
    out = out or settings.var_dir / "archive"
    with Store.from_settings(settings) as store:
        selection = sent_issues(settings, Ledger(store))
    form = render_form(settings, "archive")
    count = len(selection.issues)
    if count > 20:
        with click.progressbar(
            length=count, label="archive", file=click.get_text_stream("stderr")
        ) as bar:
            report = build(settings, selection, out, form_html=form, progress=bar.update)
    else:
        report = build(settings, selection, out, form_html=form)
    _summary(report, selection, settings.archive_url)


def _summary(report: Report, selection: Selection, archive_url: str) -> None:
    if selection.held_back:
        click.echo(
            f"kept out (archive: false, or a sequence step): {', '.join(selection.held_back)}"
        )
    if selection.missing:
        click.secho(
            f"sent, but no content module any more (not in the archive): "
            f"{', '.join(selection.missing)}",
            fg="yellow",
        )
    if not report.issues:
        click.echo("nothing sent yet: the archive has an empty index and feed")
    issues = f"{report.issues} issue{'' if report.issues == 1 else 's'}"
    click.secho(
        f"archive: {issues} in {report.out} (rendered {report.rendered}; "
        f"{len(report.written)} file(s) written, {report.unchanged} unchanged, "
        f"{len(report.removed)} removed) in {report.seconds:.2f}s",
        fg="green",
    )
    click.echo(f"open {report.out / 'index.html'}; feed at {archive_url}/feed.xml")
