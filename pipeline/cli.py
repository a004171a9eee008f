"""The ``newsletter`` command: the composition root that wires content, store and providers.

Every command has ``--help`` with an example. Errors of the project's family are
printed as ``error: ...`` (with a hint) and exit 1 (2 for a real send refused as unsafe,
see pipeline.guard); no traceback reaches the user.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from pipeline.errors import PipelineError
from pipeline.settings import Settings, load_settings


class Group(click.Group):
    """A click group that turns PipelineError into a clean message and exit 1 (or the
    error's own ``exit_code``)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PipelineError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(getattr(exc, "exit_code", 1))


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    envvar="NEWSLETTER_CONFIG",
    help="Settings file (default: ./newsletter.toml, if present).",
)
@click.version_option(package_name="newsletter-pipeline")
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """Newsletter pipeline: content modules, subscribers and sending.

    \b
    Examples:
      newsletter check
      newsletter preview hip-hinge --open
      newsletter send hip-hinge --dry-run
    """
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


def get_settings(ctx: click.Context) -> Settings:
    """Settings for this run, loaded once per invocation."""
    root = ctx.find_root()
    root.ensure_object(dict)
    if "settings" not in root.obj:
        root.obj["settings"] = load_settings(root.obj.get("config"))
    return root.obj["settings"]


def main() -> None:
    cli(prog_name="newsletter")


# Commands are registered by the modules that own them.
from pipeline import (  # noqa: E402
    commands_archive,
    commands_content,
    commands_dev,
    commands_doctor,
    commands_due,
    commands_report,
    commands_send,
)

commands_content.register(cli)
commands_dev.register(cli)
commands_send.register(cli)
commands_due.register(cli)
commands_report.register(cli)
commands_doctor.register(cli)
commands_archive.register(cli)

from subscribers import cli as subscribers_cli  # noqa: E402

subscribers_cli.register(cli)
