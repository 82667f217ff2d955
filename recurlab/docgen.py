"""The pages of docs/ that are written from the code, so that they cannot drift from it: the key
map (from the screens' bindings), the command-line reference (from the Typer app) and the
run-directory contract (from recurlab/rundir.py's docstring).

    python -m recurlab.docgen               # rewrite docs/keys.md, docs/cli.md, docs/run-directory.md
    python -m recurlab.docgen --check       # list the pages that differ from what it would write; exit 1 if any
    python -m recurlab.docgen --out DIR     # write them elsewhere

tests/test_docs.py runs the check. It imports the CLI and the TUI (it reads their commands and
bindings), so it sits above both: the library never imports this module.
"""

from __future__ import annotations

import sys
from pathlib import Path

from recurlab import rundir
from recurlab.cli.docs import markdown as cli_markdown
from recurlab.tui.app import RecurlabApp
from recurlab.tui.keys import markdown as keys_markdown

DOCS = Path(__file__).resolve().parent.parent / "docs"


def rundir_markdown() -> str:
    """docs/run-directory.md: the contract as rundir.py's docstring states it."""
    doc = rundir.__doc__.strip()
    head = (f"# The run directory (contract version {rundir.CONTRACT_VERSION})\n\n"
            "Generated from the docstring of `recurlab/rundir.py` by `python -m recurlab.docgen`; "
            "`tests/test_docs.py` fails when this page differs from what the command writes.\n\n"
            "A run directory is the only interface between a training worker and everything that watches it "
            "(`recurlab runs`, `status`, `logs`, sweeps, evaluations, the TUI); no sockets, no server, and a run "
            "copied from another machine reads the same. The worker writes the run's own files; the commands and "
            "the TUI read them and add results in their own folders. `recurlab/rundir.py` defines the layout, "
            "reads and writes the status, the metrics and the log, and holds the writers the others use; the "
            "checkpoints are written by `recurlab/checkpoint.py`, and each result by the module that makes it "
            "(sweeps, evaluations, figures, the engine's traces and wavefronts).\n\n")
    return head + _docstring_markdown(doc) + "\n"


def _docstring_markdown(doc: str) -> str:
    """A docstring as Markdown: runs of lines indented by four spaces as code blocks (a blank line
    inside a run stays in it), the other lines joined into paragraphs."""
    out, text, code = [], [], []

    def flush_text():
        if text:
            out.append(" ".join(line.strip() for line in text))
            text.clear()

    def flush_code():
        while code and not code[-1]:
            code.pop()
        if code:
            out.append("```text\n" + "\n".join(code) + "\n```")
            code.clear()

    for line in doc.split("\n"):
        if line.startswith("    "):
            flush_text()
            code.append(line[4:])
        elif not line.strip():
            flush_text()
            if code:
                code.append("")
        else:
            flush_code()
            text.append(line)
    flush_text()
    flush_code()
    return "\n\n".join(out)


def pages() -> dict[str, str]:
    return {"keys.md": keys_markdown(RecurlabApp), "cli.md": cli_markdown(), "run-directory.md": rundir_markdown()}


def stale(folder: Path = DOCS) -> list[str]:
    """The generated pages in `folder` that are missing or differ from what would be written now."""
    return [name for name, text in pages().items()
            if not (folder / name).is_file() or (folder / name).read_text(encoding="utf-8") != text]


def main(argv: list[str]) -> int:
    folder = Path(argv[argv.index("--out") + 1]) if "--out" in argv else DOCS
    if "--check" in argv:
        names = stale(folder)
        for name in names:
            print(f"{folder / name} is out of date: run `python -m recurlab.docgen`")
        return 1 if names else 0
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in pages().items():
        (folder / name).write_text(text, encoding="utf-8")
        print(f"wrote {folder / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
