"""``make demo``: the whole story on embedded defaults, in ``var/demo/``.

Sample readers sign up through the real form endpoint (the Flask app, in process),
their confirmation emails land in the outbox, the demo opens each confirmation link,
``newsletter due`` greets them with the welcome sequence's first step, then it sends
the seed article with ``newsletter send``, says where the mail is, and builds the
public archive (``newsletter archive``).
Everything lives in ``var/demo/`` (its own config, SQLite file and Maildir), which is
made afresh on every run, so the author's own store under ``var/`` is never touched.
"""

from __future__ import annotations

import mailbox
import re
import shutil
import sys
from email import policy
from email.parser import BytesParser
from pathlib import Path
from urllib.parse import urlsplit

import click

from pipeline.cli import cli
from pipeline.guidance import command_name
from pipeline.settings import PACKAGE_ROOT, load_settings

READERS = [
    ("ana@example.com", "Ana Lima", ["updates", "offers"]),
    ("ben@example.org", "Ben O'Neil", ["updates"]),
    ("chloé@exämple.de", "Chloé Durand", ["updates"]),
    ("dev@example.net", "", ["offers"]),
]
CONFIRM = re.compile(r"https?://[^\s\"'<>]+/confirm/[A-Za-z0-9_.\-]+")


def demo_config(root: Path, demo: Path) -> Path:
    """A copy of the project's settings whose var/ is the demo folder."""
    source = root / "newsletter.toml"
    text = source.read_text() if source.exists() else ""
    text += (
        f'\n[paths]\ncontent = "{root / "content"}"\ntemplates = "{root / "templates"}"\n'
        f'var = "{demo}"\n'
    )
    path = demo / "newsletter.toml"
    path.write_text(text)
    return path


def sign_up(config: Path) -> None:
    from subscribers.web import create_app

    settings = load_settings(config, env={"PATH": ""})
    client = create_app(settings).test_client()
    for email, name, topics in READERS:
        form = {"email": email, "name": name, "topics": topics}
        reply = client.post("/subscribe", data=form, environ_base={"REMOTE_ADDR": "127.0.0.1"})
        click.echo(f"  {email:22} signs up for {', '.join(topics):16} -> HTTP {reply.status_code}")
    for link in confirmation_links(settings.outbox_dir):
        reply = client.get(urlsplit(link).path)
        click.echo(f"  opens {urlsplit(link).path[:40]}... -> HTTP {reply.status_code}")


def confirmation_links(outbox: Path) -> list[str]:
    links = []
    for msg in mailbox.Maildir(outbox, create=False):
        parsed = BytesParser(policy=policy.default).parsebytes(msg.as_bytes())
        found = CONFIRM.search(parsed.get_body(("plain",)).get_content())
        if found:
            links.append(found.group(0))
    return links


def main() -> None:
    root = Path.cwd() if (Path.cwd() / "content").is_dir() else PACKAGE_ROOT
    demo = root / "var" / "demo"
    shutil.rmtree(demo, ignore_errors=True)
    demo.mkdir(parents=True)
    config = demo_config(root, demo)
    # `newsletter serve` runs `due` every minute; here once before and once after signing up.
    click.secho("0. The welcome sequence in content/sequences/ starts (newsletter due)", bold=True)
    cli.main(["--config", str(config), "due"], standalone_mode=False)
    click.secho("\n1. Readers fill out the form at the bottom of the article", bold=True)
    sign_up(config)
    click.secho("\n2. The welcome sequence greets them (newsletter due)", bold=True)
    cli.main(["--config", str(config), "due"], standalone_mode=False)
    click.secho("\n3. The author sends the newest content module", bold=True)
    cli.main(["--config", str(config), "send", "--yes"], standalone_mode=False)
    outbox = demo / "outbox"
    count = len(list((outbox / "new").glob("*")))
    click.secho(f"\n4. {count} messages are in the outbox Maildir {outbox}", bold=True)
    click.echo(
        "   (confirmations, welcomes and the article; readers of offers only got no article)\n"
        f"   Open one in any mail client:  xdg-open {next((outbox / 'new').iterdir())}\n"
        f"   Or read the folder as a mailbox:  mutt -f {outbox}\n"
        f"   Campaign report:  {command_name()} --config {config} report hip-hinge"
    )
    click.secho("\n5. The article joins the public archive (web pages and an Atom feed)", bold=True)
    cli.main(["--config", str(config), "archive"], standalone_mode=False)


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # noqa: BLE001 - the demo reports and exits cleanly
        click.secho(f"demo failed: {exc}", fg="red", err=True)
        sys.exit(1)
