"""CLI: ``dev``, the live preview studio (pipeline.studio)."""

from __future__ import annotations

import click
from click.core import ParameterSource

from pipeline.content import find_module, slug_for


def register(group: click.Group) -> None:
    group.add_command(dev)


@click.command()
@click.argument("slug", required=False)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to serve on. Anything but loopback shows your drafts to the network.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8025,
    show_default=True,
    help="Port (when the default is busy, the next free one up to 8034).",
)
@click.option("--no-open", is_flag=True, help="Do not open the browser.")
@click.pass_context
def dev(ctx: click.Context, slug: str | None, host: str, port: int, no_open: bool) -> None:
    """Live preview studio: every content module as its readers get it, updated on save.

    Opens the browser on a local page listing every module with its check results.
    A module's page shows the email on a phone or desktop width, light or dark, its
    plain text and .eml source, the inbox row, the Gmail clip meter and each check
    message linked to its line in your editor; renders it for sample readers or a
    real subscriber; and sends a test through the configured provider. Saving a file
    under content/ or templates/, or newsletter.toml, updates open pages at once.

    \b
    Examples:
      newsletter dev
      newsletter dev hip-hinge --no-open
      newsletter dev --port 8030
    """
    from pipeline.cli import get_settings
    from pipeline.studio import serve

    settings = get_settings(ctx)
    path = "/"
    if slug:
        found = find_module(settings, slug)
        path = f"/m/{slug_for(found)}"
    serve(
        settings,
        host=host,
        port=port,
        explicit_host=ctx.get_parameter_source("host") == ParameterSource.COMMANDLINE,
        explicit_port=ctx.get_parameter_source("port") == ParameterSource.COMMANDLINE,
        open_browser=not no_open,
        path=path,
        echo=click.echo,
    )
