"""The first hour of a new author, through the CLI: drafts, every error at once, preview's
exit status, a broken old module that no longer blocks the newest, and a first
`send` on an empty list that says how to add yourself and send (then doing just that)."""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.content import ContentErrors, load_module
from pipeline.settings import Settings

NEWER = "2026-12-01"


@pytest.fixture
def run(project: Path, test_env: dict[str, str]):
    def invoke(*args: str, **env: str | None):
        full = {**test_env, "NEWSLETTER_CONFIG": str(project / "newsletter.toml"), **env}
        return CliRunner().invoke(cli, list(args), env=full, catch_exceptions=False)

    return invoke


def module(project: Path, name: str, front: str, body: str = "Hello there.\n") -> Path:
    path = project / "content" / name
    path.write_text(f"---\n{front}---\n{body}", encoding="utf-8")
    return path


def outbox(settings: Settings) -> list[mailbox.MaildirMessage]:
    if not settings.outbox_dir.exists():
        return []
    return list(mailbox.Maildir(settings.outbox_dir, create=False))


def add_me(run, email: str = "me@example.com") -> None:  # noqa: ANN001
    added = run("subscribers", "add", email, "--confirmed", "--consent-source", "myself")
    assert added.exit_code == 0, added.output


# ---- drafts --------------------------------------------------------------------------


@pytest.fixture
def draft(project: Path) -> Path:
    front = f"title: Work in progress\ndate: {NEWER}\nkind: update\ndraft: true\n"
    return module(project, f"{NEWER}-wip.md", front, "Not ready yet.\n")


def test_a_draft_is_not_the_newest(run, draft: Path, settings: Settings) -> None:
    preview = run("preview")
    assert preview.exit_code == 0, preview.output
    assert "hip-hinge: update to 'Content updates'" in preview.output
    add_me(run)
    sent = run("send", "--yes")
    assert sent.exit_code == 0, sent.output
    assert "hip-hinge (updates) via outbox: this run sent 1" in sent.output
    [mail] = outbox(settings)
    assert mail["Message-ID"].startswith("<hip-hinge.updates.")


def test_a_draft_named_is_refused_by_send_but_previews(
    run, draft: Path, settings: Settings
) -> None:
    add_me(run)
    for args in (["--yes"], ["--dry-run"]):
        refused = run("send", "wip", *args)
        assert refused.exit_code == 1
        assert f"{draft} is a draft (draft: true): not sent" in refused.output
    assert outbox(settings) == []
    preview = run("preview", "wip")
    assert preview.exit_code == 0, preview.output
    assert "wip (draft: never sent): update to 'Content updates'" in preview.output
    test = run("send", "wip", "--test-to", "me@example.com")  # a sample to yourself is fine
    assert test.exit_code == 0, test.output
    assert len(outbox(settings)) == 1


def test_check_marks_drafts(run, draft: Path) -> None:
    result = run("check")
    assert result.exit_code == 0, result.output
    assert f"{draft}: draft (draft: true): checked, never sent" in result.output
    summary = "checked 3 module(s) and 2 sequence step(s) (1 draft(s)): 0 error(s), 0 warning(s)"
    assert summary in result.output


def test_draft_must_be_true_or_false(run, project: Path) -> None:
    path = module(project, "x.md", "title: X\ndate: 2026-01-01\nkind: update\ndraft: maybe\n")
    result = run("check", "x")
    assert result.exit_code == 1
    assert f"{path}:5: error: draft: expected true or false, got 'maybe'" in result.output


def test_only_drafts_left_says_so(run, project: Path, draft: Path) -> None:
    for path in project.joinpath("content").glob("2026-11-*.md"):
        path.unlink()
    result = run("preview")
    assert result.exit_code == 1
    assert "no content module is ready to send: 1 draft(s)" in result.output


# ---- every front-matter error of a file ------------------------------------------------


BROKEN = (
    "title: ''\n"  # line 2
    "date: 23/11/2026\n"  # line 3
    "kind: newsletter\n"  # line 4
    "colour: blue\n"  # line 5
    "image: images/x.png\n"  # line 6 (no image_alt)
    "title: again\n"  # line 7
)


def test_check_shows_every_front_matter_error(run, project: Path) -> None:
    path = module(project, "broken.md", BROKEN)
    result = run("check", "broken")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith(str(path))]
    assert lines == [
        f"{path}:2: error: title: must not be empty",
        f"{path}:3: error: date: expected YYYY-MM-DD",
        f"{path}:4: error: kind: expected one of update, offer, got 'newsletter'",
        f"{path}:5: error: unknown field 'colour' (known: title, date, kind, topic, subject, "
        "preheader, url, image, image_alt, image_width, image_height, cta_text, "
        "cta_url, price, delay, draft, archive)",
        f"{path}:6: error: image_alt: required when image is set (describe the image)",
        f"{path}:7: error: title: given twice",
    ]
    assert "6 error(s)" in result.output


def test_load_raises_all_errors_reading_as_the_first(project: Path, settings: Settings) -> None:
    path = module(project, "broken.md", BROKEN)
    with pytest.raises(ContentErrors) as err:
        load_module(path, settings)
    assert len(err.value.errors) == 6
    assert (
        str(err.value) == f"{path}:2: title: must not be empty (and 5 more: run newsletter check)"
    )


# ---- an old broken module does not block the newest ------------------------------------


def test_an_older_broken_module_is_skipped_with_a_note(
    run, project: Path, settings: Settings
) -> None:
    old = module(project, "2025-03-01-old.md", "title: Old\ndate: 2025-03-01\nkind: bogus\n")
    preview = run("preview")
    assert preview.exit_code == 0, preview.output
    assert f"skipped {old}: it has errors (older; newsletter check)" in preview.output
    add_me(run)
    sent = run("send", "--yes")
    assert sent.exit_code == 0, sent.output
    assert "hip-hinge (updates) via outbox: this run sent 1" in sent.output


def test_a_broken_module_that_may_be_the_newest_stops_preview(run, project: Path) -> None:
    path = module(project, f"{NEWER}-next.md", f"title: Next\ndate: {NEWER}\nkind: bogus\n")
    result = run("preview")
    assert result.exit_code == 1
    assert f"{path}:4: kind: expected one of update, offer" in result.output


def test_a_broken_draft_is_skipped(run, project: Path) -> None:
    module(project, f"{NEWER}-idea.md", f"title: ''\ndate: {NEWER}\nkind: update\ndraft: true\n")
    result = run("preview")
    assert result.exit_code == 0, result.output
    assert "hip-hinge: update" in result.output


# ---- preview exits 1 on errors, after writing the files --------------------------------


def test_preview_writes_the_files_then_exits_1_on_errors(run, project: Path) -> None:
    path = module(
        project, "links.md", "title: Links\ndate: 2026-01-01\nkind: update\n", "[about](/about)\n"
    )
    out = project / "out"
    result = run("preview", "links", "--out", str(out))
    assert result.exit_code == 1
    assert sorted(p.name for p in out.iterdir()) == ["links.eml", "links.html", "links.txt"]
    assert f"{path}:6: error: link '/about' is not http(s) or mailto; use a full URL" in (
        result.output
    )
    assert "1 error(s): fix them before sending" in result.output


def test_preview_of_a_clean_module_exits_0(run) -> None:
    result = run("preview", "hip-hinge")
    assert result.exit_code == 0, result.output
    assert "error" not in result.output


# ---- the first send on an empty list --------------------------------------------------


def test_first_send_explains_how_to_add_yourself_then_that_works(run, settings: Settings) -> None:
    first = run("send", MAKELEVEL=None)  # as typed in a shell, not under `make test`
    assert first.exit_code == 1
    out = first.output
    assert "nobody to send to yet: no confirmed subscribers of 'updates' (Content updates)" in out
    assert (
        "newsletter subscribers add you@example.com --confirmed --topic updates "
        '--consent-source "myself, testing"' in out
    )
    assert "newsletter send hip-hinge --yes" in out
    assert f"mail goes to {settings.outbox_dir}/" in out
    assert "/subscribe while `make serve` runs" in out
    assert len(out.splitlines()) <= 12  # one screen
    # ... and doing what it says sends the module to you.
    add_me(run, "you@example.com")
    again = run("send", "hip-hinge", "--yes")
    assert again.exit_code == 0, again.output
    [mail] = outbox(settings)
    assert mail["To"] == "you@example.com"


def test_under_make_the_hint_names_the_make_target(run) -> None:
    result = run("send", MAKELEVEL="1")
    assert "make send CONTENT=hip-hinge SEND_ARGS=--yes" in result.output
