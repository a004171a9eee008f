"""`newsletter check`'s rules on the email as readers get it, through the CLI: contrast of
the template's colours, images without size or styled alt text, a missing <h1>, heading
order, plain-text line lengths, bare-URL and vague link text, heavy images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from pipeline.cli import cli


@pytest.fixture
def run(project: Path, test_env: dict[str, str]):
    from pipeline.render import template_env

    template_env.cache_clear()  # templates are edited in some tests

    def invoke(*args: str):
        env = {**test_env, "NEWSLETTER_CONFIG": str(project / "newsletter.toml")}
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    yield invoke
    template_env.cache_clear()


def add_module(project: Path, front: str, body: str, name: str = "m") -> Path:
    path = project / "content" / f"{name}.md"
    path.write_text(f"---\ntitle: T\ndate: 2026-01-01\nkind: update\n{front}---\n{body}")
    return path


def lines_of(output: str, needle: str) -> list[str]:
    return [line for line in output.splitlines() if needle in line]


def test_the_seed_modules_pass_every_rule(run) -> None:
    result = run("check")
    assert result.exit_code == 0, result.output
    assert "0 error(s), 0 warning(s)" in result.output


def test_low_contrast_in_the_palette_is_an_error_at_its_line(run, project: Path) -> None:
    path = project / "templates" / "email" / "palette.toml"
    text = path.read_text().replace('muted = "#4b5563"', 'muted = "#9ca3af"', 1)
    path.write_text(text)
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "#9ca3af" in t)
    result = run("check")
    assert result.exit_code == 1
    found = lines_of(result.output, f"{path}:{line}: error: contrast: light:")
    assert len(found) == 2  # quotes on the card, footer on the page
    assert "muted #9ca3af on card #ffffff is 2.54:1, under WCAG AA 4.5:1" in result.output


def test_colours_that_forced_inversion_spoils_are_a_warning(run, project: Path) -> None:
    path = project / "templates" / "email" / "palette.toml"
    # dark text on a mid green passes AA in light mode (4.79:1); inverted, the green
    # turns dark too and the label sinks into it (2.36:1)
    text = path.read_text().replace('button = "#c2410c"', 'button = "#16a34a"', 1)
    text = text.replace('button_text = "#ffffff"', 'button_text = "#1f2328"', 1)
    path.write_text(text)
    result = run("check")
    assert result.exit_code == 0, result.output
    assert lines_of(result.output, "warning: contrast: forced dark: the button label")
    assert "error" not in result.output.replace("0 error(s)", "")


def test_remote_images_without_a_size_are_a_warning(run, project: Path) -> None:
    body = "Intro.\n\n![A chart](https://cdn.example.com/chart.png)\n"  # image on line 10
    front = "image: https://cdn.example.com/hero.jpg\nimage_alt: A hero\n"  # line 5
    path = add_module(project, front, body)
    result = run("check", "m")
    assert result.exit_code == 0, result.output
    assert lines_of(result.output, f"{path}:5: warning: image 'https://cdn.example.com/hero.jpg'")
    assert "add image_width and image_height to the front matter" in result.output
    assert lines_of(result.output, f"{path}:10: warning: image 'https://cdn.example.com/chart.png'")
    assert "keep a copy under content/" in result.output


def test_a_sized_remote_hero_passes(run, project: Path) -> None:
    front = (
        "image: https://cdn.example.com/hero.jpg\nimage_alt: A hero\n"
        "image_width: 1200\nimage_height: 600\n"
    )
    add_module(project, front, "Body.\n")
    result = run("check", "m")
    assert "warning:" not in result.output, result.output


def test_alt_text_without_style_is_a_warning(run, project: Path) -> None:
    base = project / "templates" / "email" / "base.mjml.j2"
    base.write_text(base.read_text().replace("font-size: 16px; line-height: 1.5; color:", "x:"))
    result = run("check", "hip-hinge")
    found = lines_of(result.output, "warning: image 'images/hip-hinge.png' has unstyled alt text")
    assert found and ":9:" in found[0]  # the front matter line of the hero image


def test_a_template_without_h1_is_an_error(run, project: Path) -> None:
    hero = project / "templates" / "email" / "_hero.mjml.j2"
    hero.write_text(hero.read_text().replace("<h1>", "<div>").replace("</h1>", "</div>"))
    result = run("check", "hip-hinge")
    assert result.exit_code == 1
    template = project / "templates" / "email" / "update.mjml.j2"
    assert f"{template}: error: the email has no <h1>" in result.output


def test_headings_out_of_order_are_warnings(run, project: Path) -> None:
    body = "# Big\n\nText.\n\n## Fine\n\n#### Skipped\n\nText.\n"
    path = add_module(project, "", body)
    result = run("check", "m")
    assert lines_of(result.output, f"{path}:6: warning: heading level 1 in the body")
    assert lines_of(result.output, f"{path}:12: warning: heading skips from level 2 to 4")


def test_long_text_part_lines_are_a_warning(run, project: Path) -> None:
    code = "    " + "x = 1; " * 14  # code is never wrapped
    path = add_module(project, "", f"Look:\n\n{code}\n")
    result = run("check", "m")
    found = lines_of(result.output, f"{path}:1: warning: text part line")
    assert len(found) == 1 and "is 101 characters (keep 78 or fewer)" in found[0]


def test_a_long_url_alone_on_its_line_is_fine(run, project: Path) -> None:
    url = "https://example.com/" + "a" * 90
    add_module(project, "", f"See [the long page]({url}).\n")
    result = run("check", "m")
    assert "text part line" not in result.output, result.output


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ("[https://example.com/page](https://example.com/page)", "link text is a bare URL"),
        ("<https://example.com/page>", "link text is a bare URL"),
        ("[www.example.com](https://www.example.com)", "link text is a bare URL"),
        ("[click here](https://example.com/page)", "link text 'click here' does not say"),
        ("[Read more](https://example.com/page)", "link text 'Read more' does not say"),
    ],
)
def test_link_text_that_makes_no_sense_alone_is_a_warning(
    run, project: Path, link: str, expected: str
) -> None:
    path = add_module(project, "", f"Intro.\n\nSee {link} today.\n")
    result = run("check", "m")
    assert result.exit_code == 0
    assert lines_of(result.output, f"{path}:8: warning: {expected}"), result.output


def test_a_mail_address_as_link_text_is_fine(run, project: Path) -> None:
    add_module(project, "", "Write to [coach@example.com](mailto:coach@example.com).\n")
    assert "warning:" not in run("check", "m").output


def test_images_over_200_kb_are_a_warning(run, project: Path) -> None:
    img = project / "content" / "images" / "heavy.png"
    Image.frombytes("RGB", (400, 300), os.urandom(400 * 300 * 3)).save(img)  # noise: ~350 KB
    path = add_module(project, "", "Intro.\n\n![Noise](images/heavy.png)\n")
    result = run("check", "m")
    assert result.exit_code == 0
    found = lines_of(result.output, f"{path}:8: warning: image 'images/heavy.png' is ")
    assert found and "keep images under 200 KB" in found[0]
