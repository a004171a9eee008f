"""CLI commands for content modules: check and preview."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    pass
