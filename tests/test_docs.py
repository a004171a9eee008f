"""Every command has help with an example, and the README documents it."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pipeline.cli import cli

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def all_commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        full = f"{prefix}{name}"
        found.append((full, command))
        if isinstance(command, click.Group):
            found += all_commands(command, f"{full} ")
    return found


COMMANDS = all_commands(cli)


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_command_has_help_with_example(name: str, command: click.Command) -> None:
    result = CliRunner().invoke(cli, [*name.split(), "--help"])
    assert result.exit_code == 0
    assert command.help and len(command.help) > 20
    assert "Example" in result.output, f"`newsletter {name} --help` shows no example"


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_command_is_in_readme(name: str, command: click.Command) -> None:
    assert f"newsletter {name}" in README, f"README does not mention `newsletter {name}`"


def test_make_targets_in_readme_exist() -> None:
    makefile = (Path(__file__).resolve().parent.parent / "Makefile").read_text()
    first_block = README.split("```")[1].splitlines()[1:4]
    assert [line.split("#")[0].strip() for line in first_block] == [
        "make demo",
        "make send",
        "make test",
    ]
    targets = ("demo", "send", "test", "lint", "bench", "check", "preview", "serve", "doctor")
    for target in (*targets, "dev"):
        assert f"make {target}" in README
        assert f"\n{target}:" in makefile


def test_every_setting_is_in_the_readme_table_with_its_default() -> None:
    """One README table documents every key of the settings schema, and nothing else."""
    import json
    import re

    from pipeline.settings import SCHEMA

    rows = dict(re.findall(r"(?m)^\| `([a-z_]+\.[a-z_<>]+)` \| `([^`]*)`", README))
    documented = {key for key in rows if not key.startswith("topics.")}
    schema = {f"{section}.{key}" for section, keys in SCHEMA.items() for key in keys}
    assert documented == schema, (
        f"missing from README: {sorted(schema - documented)}; "
        f"not settings: {sorted(documented - schema)}"
    )
    for name in schema:
        section, key = name.split(".")
        default = SCHEMA[section][key][1]
        shown = json.dumps(default) if isinstance(default, str) else str(default)
        assert rows[name] == shown, f"README shows {name} = {rows[name]}, the schema {shown}"
    assert "topics.<key>" in rows


def test_every_newsletter_variable_the_code_reads_is_documented() -> None:
    import re

    root = Path(__file__).resolve().parent.parent
    code = "".join(
        p.read_text() for d in ("pipeline", "subscribers") for p in (root / d).rglob("*.py")
    )
    for name in sorted(set(re.findall(r"\bNEWSLETTER_[A-Z_]+\b", code))):
        assert f"`{name}`" in README, f"README does not document {name}"
