"""The layering rules of DESIGN.md, checked: import-linter contracts (.importlinter: one layering of
every module, exhaustive, so that a new top-level module fails until it is placed), an import graph
without circles, and what a process really loads when it starts `recurlab runs`, `status`, the TUI's
Runs screen, or `import recurlab`.

    python -m pytest tests/test_layers.py -q
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import grimp

import recurlab
from recurlab.config import load_profile, to_yaml
from recurlab.rundir import RunDir

ROOT = Path(__file__).resolve().parent.parent
# The graph of this checkout's files only: recurlab has no __init__.py, so an editable install of
# another checkout adds that checkout's folder to the namespace package, and grimp would read both.
THIS_CHECKOUT = f"import recurlab; recurlab.__spec__.submodule_search_locations = [{str(ROOT / 'recurlab')!r}]; "


def python(code: str, cwd: Path) -> str:
    """Run `code` in a fresh interpreter with this checkout first on the path; -> its stdout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_import_contracts_hold():
    lint = THIS_CHECKOUT + "from importlinter.cli import lint_imports_command; lint_imports_command()"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-c", lint, "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Contracts: 3 kept, 0 broken." in res.stdout, res.stdout


def import_cycles(graph) -> set[frozenset[str]]:
    """The strongly connected sets (more than one module) of recurlab's import graph, imports inside
    functions included (grimp reads every import statement)."""
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), set()

    def visit(module: str) -> None:  # Tarjan's algorithm
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in edges[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            members = set()
            while module not in members:
                members.add(stack.pop())
            on_stack.difference_update(members)
            if len(members) > 1:
                cycles.add(frozenset(members))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


def test_the_import_graph_has_no_circle(monkeypatch):
    monkeypatch.setattr(recurlab.__spec__, "submodule_search_locations", [str(ROOT / "recurlab")])  # see THIS_CHECKOUT
    cycles = import_cycles(grimp.build_graph("recurlab", cache_dir=None))
    assert not cycles, [sorted(c) for c in cycles]


def test_importing_recurlab_loads_no_lm_eval_textual_or_datasets(tmp_path):
    out = python("""
        import sys
        import recurlab, recurlab.config, recurlab.rundir, recurlab.lifecycle
        print(sorted(m for m in ("lm_eval", "textual", "datasets", "torch") if m in sys.modules))
    """, tmp_path)
    assert out.strip() == "[]"


def test_runs_status_and_the_tuis_runs_screen_load_no_torch(tmp_path):
    runs = tmp_path / "runs"
    run = RunDir.create(runs, "quiet", to_yaml(load_profile("tiny")), device="cpu")
    run.write_status(state="finished", step=60, max_steps=60, loss=2.5)
    cli = """
        import sys
        sys.argv = ["recurlab", {args}, "--runs-dir", {runs!r}]
        from recurlab.cli import main
        try:
            main()
        except SystemExit as exc:
            assert not exc.code, exc.code
        print("torch loaded" if "torch" in sys.modules else "no torch")
    """
    for args in ('"runs"', '"status", "quiet"'):
        out = python(cli.format(args=args, runs=str(runs)), tmp_path).splitlines()
        assert out[-1] == "no torch" and any("quiet" in line for line in out), out
    out = python(f"""
        import asyncio, sys
        from recurlab.tui.app import RecurlabApp

        async def main():
            app = RecurlabApp(runs_dir={str(runs)!r})
            async with app.run_test(size=(120, 40)) as pilot:
                for _ in range(100):
                    table = app.screen.query_one("#runs-table")
                    if table.row_count:
                        break
                    await pilot.pause(0.1)
                print(type(app.screen).__name__, table.row_count)
        asyncio.run(main())
        print("torch loaded" if "torch" in sys.modules else "no torch")
    """, tmp_path).splitlines()
    assert out[-2:] == ["RunsScreen 1", "no torch"], out


def test_errors_is_a_leaf_and_every_user_error_lives_there():
    """errors.py imports nothing (of recurlab or anything else), and every exception class the
    package defines is declared there: a UserError, except two signals that never reach a user and
    TrainingDiverged, a run's failure (recorded in its status), not a mistake of the user's."""
    import ast

    from recurlab import errors

    package = ROOT / "recurlab"
    tree = ast.parse((package / "errors.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    internal = {"EvalCancelled", "_DuplicateKey"}  # a cancel signal inside lm-eval; a YAML loader's signal
    elsewhere = []
    for path in package.rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", getattr(b, "attr", "")).endswith(("Error", "Exception"))
                                                      for b in node.bases):
                elsewhere.append(node.name)
    assert set(elsewhere) <= internal, elsewhere
    declared = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, BaseException)]
    failures = {errors.TrainingDiverged}
    assert len(declared) >= 17 and all(issubclass(c, errors.UserError) for c in declared if c not in failures)
