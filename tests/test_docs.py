"""The README and docs/ stay true to the code: the generated pages (keys, command line, run
directory) equal what their generator writes now, every command of the Typer app is in the
README's command table, every relative link resolves, every command's --help ends with examples
and has no hard line break inside a sentence, and the pages describe the software, not how it was
built."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def test_generated_pages_are_what_the_generator_writes_now():
    from recurlab.docgen import pages as generated

    for name, text in generated().items():
        page = DOCS / name
        assert page.is_file(), f"{page} is missing: run `python -m recurlab.docgen`"
        assert page.read_text(encoding="utf-8") == text, f"{page} is out of date: run `python -m recurlab.docgen`"


def test_the_check_fails_on_a_stale_page(tmp_path):
    from recurlab.docgen import main, stale

    assert main(["--out", str(tmp_path)]) == 0 and stale(tmp_path) == []
    keys = tmp_path / "keys.md"
    keys.write_text(keys.read_text().replace("| Generate |", "| Generate text |"))
    assert stale(tmp_path) == ["keys.md"] and main(["--check", "--out", str(tmp_path)]) == 1


def command_table_rows() -> list[str]:
    """The first cells of the README's command table (the table under '## Commands')."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Commands", 1)[1].split("\n## ", 1)[0]
    return [line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| `recurlab")]


def test_every_command_of_the_app_is_in_the_readme_command_table():
    from recurlab.cli.docs import commands

    rows = command_table_rows()
    names = list(commands())
    assert len(names) >= 15
    for name in names:
        assert any(re.match(rf"`recurlab {re.escape(name)}(`| )", row) for row in rows), f"`recurlab {name}` is not in the table"


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as -."""
    out = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def test_every_relative_link_resolves():
    link = re.compile(r"\]\(([^)\s]+)\)|<img[^>]* src=\"([^\"]+)\"")
    for page in pages():
        for m in link.finditer(page.read_text(encoding="utf-8")):
            target, _, anchor = (m.group(1) or m.group(2)).partition("#")
            if re.match(r"[a-z]+:", target):  # web links
                continue
            path = (page.parent / target) if target else page
            assert path.exists(), f"{page.name}: broken link to {target}"
            if anchor and path.suffix == ".md":
                assert anchor in anchors(path), f"{page.name}: no heading #{anchor} in {path.name}"


def test_readme_is_short_and_opens_with_a_screenshot_saved_by_the_app():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300
    images = [m.group(1) for line in lines[:12] for m in re.finditer(r"!\[[^\]]*\]\(([^)]+\.svg)\)", line)]
    assert images, "no screenshot at the top"
    svg = (README.parent / images[0]).read_text(encoding="utf-8")
    assert svg.startswith('<svg class="rich-terminal"') and "textualize.io" in svg  # Textual's own screenshot export
    assert "recurlab" in svg and "/tmp/" not in svg and "/work/" not in svg


FORBIDDEN = [r"\bissue\b", r"\bsessions?\b", r"shared with", r"/work/", r"/tmp/", r"\bthe seeds\b", r"#\d+\b"]


@pytest.mark.parametrize("pattern", FORBIDDEN)
def test_pages_describe_the_software_not_its_history(pattern):
    for page in pages():
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            assert not re.search(pattern, line, re.IGNORECASE), f"{page.name}:{n}: {line.strip()[:100]}"


def test_every_command_help_has_examples_and_no_line_break_inside_a_sentence():
    from typer.testing import CliRunner

    from recurlab.cli.docs import command_app, commands

    runner = CliRunner()
    app = command_app()
    for name, cmd in commands().items():
        texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
        for text in texts:
            for para in text.split("\n\n"):
                assert "\n" not in para.strip(), f"{name}: a line break inside {para!r}"
        out = runner.invoke(app, [*name.split(), "--help"], env={"COLUMNS": "200"}).output
        assert "Examples:" in out, name
        assert re.search(rf"^\s*recurlab {re.escape(name)}\b", out, re.MULTILINE), f"{name}: no example of itself"
