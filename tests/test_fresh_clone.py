"""The README's first commands, run with `make` on a fresh copy of the repository.

What it does, to stay fast and offline: the copy holds the files git would clone (tracked
and new, not ignored: no .venv, no var/), as they are in the working tree. Instead of
`make install` (pip, the network, a minute), its `.venv` is a bare venv that sees the
copy's own code first and this test run's installed dependencies second (two .pth
files), with a `newsletter` script like the one pip writes; its install stamp is newer
than pyproject.toml, so make does not reinstall. Everything else is the real thing: the
Makefile, the README's commands and what the CLI prints, with `newsletter` not on PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def sh_blocks(text: str) -> list[list[str]]:
    """The commands of each ```sh block (comments dropped)."""
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    return [
        [line.split("  #")[0].strip() for line in b.splitlines() if line.strip()] for b in blocks
    ]


def copy_repo(dest: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = REPO / name.decode()
        if source.is_file():
            target = dest / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def offline_venv(clone: Path) -> None:
    venv = clone / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "_a_clone.pth").write_text(f"{clone}\n")  # the copy's code first
    Path(site, "_b_deps.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    script = venv / "bin" / "newsletter"
    script.write_text(f"#!{python}\nimport sys\nfrom pipeline.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)
    (venv / ".installed").touch()  # newer than pyproject.toml: make does not reinstall
    where = subprocess.run(
        [str(python), "-c", "import pipeline; print(pipeline.__file__)"],
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(clone)), f"the copy's venv imports {where}"


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None or shutil.which("make") is None:
        pytest.skip("needs git and make")
    if subprocess.run(["git", "rev-parse"], cwd=REPO, capture_output=True).returncode:
        pytest.skip("not a git checkout")
    root = tmp_path_factory.mktemp("fresh") / "newsletter-pipeline"
    copy_repo(root)
    offline_venv(root)
    return root


def run(clone: Path, command: str) -> subprocess.CompletedProcess[str]:
    """A README command in the copy, as a new user's shell runs it (no venv on PATH)."""
    path = ":".join(p for p in os.environ["PATH"].split(":") if not p.startswith(sys.prefix))
    env = {"PATH": path, "HOME": str(clone.parent), "LANG": "C.UTF-8"}
    return subprocess.run(
        command, shell=True, cwd=clone, env=env, capture_output=True, text=True, timeout=180
    )


def test_the_readme_opens_with_make_demo_send_and_test() -> None:
    assert sh_blocks(README)[0] == ["make demo", "make send", "make test"]


def test_first_commands_on_a_fresh_copy(clone: Path) -> None:
    first, fresh_send = sh_blocks(README)[:2]
    # `make test` is this very suite: running it from inside would recurse.
    demo, send = (c for c in first if c != "make test")

    shown = run(clone, demo)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "this run sent 3, failed 0" in shown.stdout
    assert "Campaign report:  .venv/bin/newsletter --config" in shown.stdout
    # 4 confirmations, 4 welcomes (the sequence's first step), 3 copies of the article
    assert len(list((clone / "var" / "demo" / "outbox" / "new").iterdir())) == 11

    empty = run(clone, send)  # nobody on the author's own list yet
    assert empty.returncode != 0
    told = empty.stderr
    assert "nobody to send to yet: no confirmed subscribers of 'updates'" in told
    assert ".venv/bin/newsletter subscribers add you@example.com --confirmed" in told
    assert "make send CONTENT=hip-hinge SEND_ARGS=--yes" in told
    assert "Traceback" not in told

    # ... and what the README (and that message) says next works.
    assert fresh_send[0].startswith(".venv/bin/newsletter subscribers add you@example.com")
    for command in fresh_send:
        done = run(clone, command)
        assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
    mails = list((clone / "var" / "outbox" / "new").iterdir())
    assert len(mails) == 1
    assert b"To: you@example.com" in mails[0].read_bytes()


def test_preview_and_check_targets_on_a_fresh_copy(clone: Path) -> None:
    preview = run(clone, "make preview")
    assert preview.returncode == 0, preview.stdout + preview.stderr
    assert (clone / "var" / "preview" / "hip-hinge.html").is_file()
    check = run(clone, "make check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "checked 2 module(s) and 2 sequence step(s): 0 error(s), 0 warning(s)" in check.stderr
