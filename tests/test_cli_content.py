"""`newsletter check` and `newsletter preview` through click's CliRunner."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli


@pytest.fixture
def run(project: Path, test_env: dict[str, str]):
    def invoke(*args: str):
        env = {**test_env, "NEWSLETTER_CONFIG": str(project / "newsletter.toml")}
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    return invoke


def add_module(project: Path, name: str, front: str, body: str = "Hello there.\n") -> Path:
    path = project / "content" / name
    path.write_text(f"---\ntitle: T\ndate: 2026-01-01\nkind: update\n{front}---\n{body}")
    return path


def test_check_passes_on_the_shipped_content(run) -> None:
    result = run("check")
    assert result.exit_code == 0, result.output
    assert "checked 2 module(s) and 2 sequence step(s): 0 error(s), 0 warning(s)" in result.output


def test_check_reports_each_problem_with_file_and_line(run, project: Path) -> None:
    body = (
        "Intro.\n\n"  # line 6
        "![](images/hip-hinge.png)\n\n"  # line 8: no alt
        "![Missing](images/nope.png)\n\n"  # line 10: missing file
        "[relative](/articles/x) and [js](javascript:alert(1))\n"  # line 12
    )
    add_module(project, "bad.md", "", body)
    result = run("check", "bad")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    path = str(project / "content" / "bad.md")
    assert (
        f"{path}:8: error: image 'images/hip-hinge.png' has no alt text: "
        "![describe it](images/hip-hinge.png)" in lines
    )
    assert f"{path}:10: error: image 'images/nope.png' not found under content/" in lines
    assert f"{path}:12: error: link '/articles/x' is not http(s) or mailto; use a full URL" in lines
    assert (
        f"{path}:12: error: link 'javascript:alert(1)' is not http(s) or mailto; use a full URL"
        in lines
    )
    assert "4 error(s)" in result.output


def test_check_front_matter_error_has_line_and_no_traceback(run, project: Path) -> None:
    add_module(project, "date.md", "")
    (project / "content" / "date.md").write_text(
        "---\ntitle: T\ndate: soon\nkind: update\n---\nx\n"
    )
    result = run("check", "date")
    assert result.exit_code == 1
    assert f"{project / 'content' / 'date.md'}:3: error: date: expected YYYY-MM-DD" in result.output
    assert "Traceback" not in result.output


def test_check_missing_front_matter_image(run, project: Path) -> None:
    add_module(project, "hero.md", "image: images/none.jpg\nimage_alt: Hero\n")
    result = run("check", "hero")
    assert result.exit_code == 1
    assert ":5: error: image 'images/none.jpg' not found under content/" in result.output


def test_check_warns_on_long_subject(run, project: Path) -> None:
    add_module(project, "long.md", f"subject: {'x' * 79}\n")
    result = run("check", "long")
    assert result.exit_code == 0
    assert ":5: warning: subject is 79 characters; keep it under 78" in result.output


def test_check_offer_without_call_to_action(run, project: Path) -> None:
    (project / "content" / "o.md").write_text(
        "---\ntitle: T\ndate: 2026-01-01\nkind: offer\n---\nBuy.\n"
    )
    result = run("check", "o")
    assert result.exit_code == 1
    assert ":4: error: cta_text: an offer needs a call to action" in result.output


@pytest.mark.parametrize(("kb", "level"), [(78, "warning"), (110, "error")])
def test_check_html_size_against_gmail_clipping(run, project: Path, kb: int, level: str) -> None:
    para = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 8 + "\n\n"
    body = para * (kb * 1024 // len(para))
    add_module(project, "big.md", "", body)
    result = run("check", "big")
    assert result.exit_code == (1 if level == "error" else 0)
    assert f":1: {level}: HTML is " in result.output
    assert "Gmail clip" in result.output


def test_check_template_error(run, project: Path) -> None:
    from pipeline.render import template_env

    template_env.cache_clear()
    tpl = project / "templates" / "email" / "offer.mjml.j2"
    tpl.write_text(tpl.read_text().replace("{{ price }}", "{{ price | nosuchfilter }}", 1))
    result = run("check")
    assert result.exit_code == 1
    assert f"{tpl}:" in result.output and "error:" in result.output
    template_env.cache_clear()


def test_check_unknown_slug(run) -> None:
    result = run("check", "nope")
    assert result.exit_code == 1
    assert "no content module 'nope' (have: " in result.output


def test_preview_writes_html_text_and_eml(run, project: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run("preview", "hip-hinge", "--out", str(out))
    assert result.exit_code == 0, result.output
    html = (out / "hip-hinge.html").read_text()
    assert (project / "content" / "images" / "hip-hinge.png").as_uri() in html
    assert "Hi Sample," in (out / "hip-hinge.txt").read_text()
    raw = (out / "hip-hinge.eml").read_bytes()
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF as on the wire
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    for header in (
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "List-Id",
    ):
        assert msg[header], header
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert (
        "http://127.0.0.1:8000/media/images/hip-hinge.png" in msg.get_body(("html",)).get_content()
    )
    assert "subject 'Master the hip hinge" in result.output


def test_preview_without_slug_uses_newest(run, tmp_path: Path) -> None:
    result = run("preview", "--out", str(tmp_path))
    assert result.exit_code == 0
    assert (tmp_path / "hip-hinge.eml").exists()
