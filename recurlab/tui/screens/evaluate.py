"""The Eval screen: lm-evaluation-harness tasks at several r, with exit-iteration histograms.

Type tasks (lm-eval names, YAML files or folders, or `embedded` for the run's own task, comma
separated) or pick a YAML task found in the folder box (enter scans it), the r values, the exit
rule and a document limit; s starts the evaluation in a background worker (the model opens once,
one lm-eval run per r), c cancels it within a batch (the r values finished are kept and saved).
The table (task x r: metric ± stderr, mean iterations per token) and the accuracy-vs-r plot fill
in as each r finishes; under an exit rule each task gets a histogram of the iterations its tokens
used, side by side. Results are saved in the run's evals/ folder (./evals/<folder> for --model);
[ and ] page through the saved evaluations.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, Label, Select, Static
from textual_plotext import PlotextPlot

from recurlab.config import run_config
from recurlab.errors import UserError
from recurlab.evaluation.results import cell, load_evals
from recurlab.evaluation.runner import EvalSettings, default_out_dir, run_eval
from recurlab.options.generate import EXIT_CRITERIA
from recurlab.rundir import RunDir
from recurlab.sweep import parse_rs
from recurlab.tui.screens.resultscreen import ResultScreen, result_bindings
from recurlab.tui.widgets.axes import log2_positions, r_ticks

NO_LM_EVAL = "eval: lm-eval is not installed: pip install 'recurlab[eval]'"
MAX_HISTOGRAMS = 6  # side by side; more tasks than this show the first ones
COLORS = ("cyan", "orange", "green", "magenta", "yellow", "blue", "red", "white")


def find_yaml_tasks(folder: Path) -> list[tuple[str, Path]]:
    """(task name, file) for every YAML file in `folder` (not recursive) with a `task:` name."""
    import yaml

    out = []
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.y*ml")):
        try:
            data = yaml.safe_load(path.read_text())
        except (yaml.YAMLError, OSError):
            continue  # lm-eval's !function files and broken ones are not offered
        if isinstance(data, dict) and isinstance(data.get("task"), str):
            out.append((data["task"], path))
    return out


class EvalScreen(ResultScreen):
    TITLE_SHORT = "Eval"
    MODE = "eval"
    HELP = __doc__.split("\n", 1)[1]
    AUTO_FOCUS = "#eval-table"  # not a text box: digits and ? must reach the app
    BINDINGS = result_bindings("Evaluate")
    JOB, A_JOB, WHAT, STATUS = "evaluation", "an evaluation", "eval", "#eval-status"
    NO_SAVED = "no saved evaluations here"
    CANCELLING = "cancelling: the r values finished so far are kept ..."

    def __init__(self):
        super().__init__()
        self.rs: list[int] = []
        self.histograms: dict[str, dict[str, dict[str, int]]] = {}
        self._target = None  # the model directory the screen was set up for

    def compose(self) -> ComposeResult:
        yield from self.frame(
            Horizontal(
                Label("tasks"), Input(id="eval-tasks", placeholder="embedded, arc_easy or path/to/task.yaml"),
                Label("r"), Input(id="eval-rs", value="1,4,8,32"),
                Label("exit"), Select([("off", "off")] + [(c, c) for c in EXIT_CRITERIA], id="eval-exit",
                                      value="kl:5e-4", allow_blank=False),
                Label("limit"), Input(id="eval-limit", placeholder="all"),
                id="eval-controls",
            ),
            Horizontal(
                Label("folder"), Input(id="eval-folder", placeholder="a folder of task YAML files (enter scans it)"),
                Select([], id="eval-found", prompt="YAML tasks found", allow_blank=True),
                id="eval-controls2",
            ),
            Static("", id="eval-status"),
            Horizontal(DataTable(id="eval-table", cursor_type="row"), PlotextPlot(id="eval-plot"), id="eval-body"),
            Horizontal(id="eval-hists"),
        )

    def on_mount(self) -> None:
        self.on_screen_resume()

    # ---- the model directory and its saved evaluations -------------------------------------------
    def _out_dir(self) -> Path | None:
        target = self.app.model_dir()
        if target is None:
            return None
        if self.app.model_path is not None:
            return default_out_dir(target)
        return Path(target) / "evals"

    def on_screen_resume(self) -> None:
        target = self.app.model_dir()
        if target == self._target and target is not None:
            return
        self._target = target
        if target is None:
            self._status("no run selected: pick one on the Runs screen (1, enter), or start with --model")
            return
        is_task_run = False
        if self.app.model_path is None:
            try:
                is_task_run = run_config(RunDir(target)).data.source == "task"
            except UserError as exc:
                self.report(exc, "eval")
                return
        tasks = self.query_one("#eval-tasks", Input)
        if not tasks.value:
            tasks.value = "embedded" if is_task_run else ""
        folder = self.query_one("#eval-folder", Input)
        if not folder.value:
            exported = Path(target) / "evals" / "tasks"
            folder.value = str(exported if exported.is_dir() else Path("tasks"))
        self.scan_folder()
        self.load_saved(show_last=True)

    def read_saved(self) -> list[dict]:
        out = self._out_dir()
        return load_evals(out) if out is not None else []

    def show_none(self) -> None:
        self.rows, self.rs, self.histograms = [], [], {}
        self.draw()
        self._status(f"no saved evaluations in {self._out_dir()}; press s to run one")

    def show_saved(self, index: int) -> None:
        self.shown = index
        rec = self.saved[index]
        self.rows, self.rs, self.histograms = list(rec["rows"]), list(rec["rs"]), dict(rec.get("histograms", {}))
        state = "" if rec.get("complete") else " (incomplete: cancelled, failed or still running)"
        self._status(f"saved evaluation {index + 1}/{len(self.saved)}{state}: {rec.get('source', {}).get('label', '')}, "
                     f"exit {rec.get('exit') or 'off'}  {rec['path']}")
        self.draw()

    def scan_folder(self) -> int:
        folder = Path(self.query_one("#eval-folder", Input).value.strip() or ".").expanduser()
        found = find_yaml_tasks(folder)
        self.query_one("#eval-found", Select).set_options([(f"{name}  ({p.name})", str(p)) for name, p in found])
        return len(found)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "eval-folder":
            n = self.scan_folder()
            self.app.notify(f"{n} YAML task file(s) in {event.value or '.'}")

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id != "eval-found" or not isinstance(event.value, str):
            return
        tasks = self.query_one("#eval-tasks", Input)
        items = [t.strip() for t in tasks.value.split(",") if t.strip()]
        if event.value not in items:
            tasks.value = ",".join(items + [event.value])

    # ---- running an evaluation ---------------------------------------------------------------------
    def action_start(self) -> None:
        target = self.app.model_dir()
        if not self.may_start(target is not None):
            return
        if importlib.util.find_spec("lm_eval") is None:  # checked here, without importing it (seconds)
            self.fail(NO_LM_EVAL)
            self._status("evaluation not started: " + NO_LM_EVAL.removeprefix("eval: "))
            return
        try:
            rs = parse_rs(self.query_one("#eval-rs", Input).value)
            limit_text = self.query_one("#eval-limit", Input).value.strip()
            limit = int(limit_text) if limit_text else None
            exit_rule = self.query_one("#eval-exit", Select).value
            settings = EvalSettings(tasks=self.query_one("#eval-tasks", Input).value, rs=rs, limit=limit,
                                    exit=None if exit_rule == "off" else exit_rule).validate()
        except ValueError as exc:  # user errors, and a limit that is not a number
            self.report(exc, "eval")
            return
        self.rows, self.rs, self.histograms = [], rs, {}
        cancel = self.begin(f"evaluating {settings.tasks} at r = {', '.join(map(str, rs))} ...")
        self.evaluate(Path(target), settings, cancel)

    @work(thread=True, exclusive=True, group="eval")
    def evaluate(self, target: Path, settings, cancel: threading.Event) -> None:
        def job():
            self.app.call_from_thread(self._status, f"opening {target.name} and building the tasks ...")
            source = self.app.model_cache.get(target)  # the model the other screens share
            return run_eval(
                settings, run=source.run, model_path=None if source.run is not None else target, source=source,
                out_dir=self._out_dir(), cancel=cancel,
                on_progress=lambda r, done, total, kind: self.app.call_from_thread(self._progress, r, done, total, kind),
                on_row=lambda row, hist: self.app.call_from_thread(self.add_row, row, hist),
            )

        self.run_job(job)

    def _progress(self, r: int, done: int, total: int, kind: str) -> None:
        if self.cancel_event is not None and not self.cancel_event.is_set():
            self._status(f"r = {r}: {kind} {done}/{total} requests; {len(self.rows)} rows done; c cancels")

    def add_row(self, row: dict, hist: dict) -> None:
        self.rows.append(row)
        self.histograms.setdefault(row["task"], {})[str(row["r"])] = hist
        self.draw()

    def job_error(self, exc: Exception) -> str:
        # a bad task or a deleted run: its reason stays in the status and error lines
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == "lm_eval":
            self.fail(NO_LM_EVAL)
            return NO_LM_EVAL.removeprefix("eval: ")
        return super().job_error(exc)

    def job_failed(self, reason: str) -> None:
        self._status(f"evaluation failed: {reason}")

    def finished_notice(self, result, state: str) -> str:
        where = f"saved to {result.path}" if result.path else "nothing finished, nothing saved"
        return f"evaluation {state}: {len(result.rows)} rows; {where}"

    # ---- drawing --------------------------------------------------------------------------------
    def draw(self) -> None:
        tasks = list(dict.fromkeys(row["task"] for row in self.rows))
        by = {(row["task"], row["r"]): row for row in self.rows}
        table = self.query_one(DataTable)
        table.clear(columns=True)
        body = [[t.removeprefix("recurlab_")] + [cell(by.get((t, r)), compact=True) for r in self.rs] for t in tasks]
        labels = ["task"] + [f"r={r}" for r in self.rs]
        for i, (label, key) in enumerate(zip(labels, ["task"] + [f"r{r}" for r in self.rs])):
            # explicit widths: auto-sized columns shrank while rows arrived from the worker
            table.add_column(label, key=key, width=max([len(label)] + [len(row[i]) for row in body]))
        for row in body:
            table.add_row(*row)
        self._draw_plot(tasks, by)
        self._draw_histograms(tasks)

    def _draw_plot(self, tasks: list[str], by: dict) -> None:
        plot = self.query_one("#eval-plot", PlotextPlot)
        plt = plot.plt
        plt.clear_figure()
        plotted = set()
        for i, t in enumerate(tasks):
            pts = [(r, by[(t, r)]["value"]) for r in self.rs if (t, r) in by]
            if pts:  # r on a log2 axis, ticks labelled with r
                plt.plot(log2_positions([p[0] for p in pts]), [p[1] for p in pts], label=t.removeprefix("recurlab_")[-28:],
                         color=COLORS[i % len(COLORS)], marker="hd")
                plotted.update(p[0] for p in pts)
        if plotted:
            plt.xticks(*r_ticks(plotted))
        if self.rows and all(row["metric"].split(",")[0] in ("exact_match", "acc", "acc_norm") for row in self.rows):
            plt.ylim(0, 1)
        plt.title("metric vs r")
        plt.xlabel("r (iterations, log2 axis)")
        plot.refresh()

    def figure_specs(self) -> list:
        """ctrl+s: each task's metric vs r and, under an exit rule, the exit histograms per task at
        the largest r (as drawn), for the evaluation shown (saved or still running)."""
        from recurlab.figures import FigureError  # numpy: loaded only when ctrl+s saves a figure
        from recurlab.figures.evals import eval_exits_figure, eval_vs_r_figure

        if not self.rows:
            raise FigureError("no evaluation shown yet: press s to run one")
        saved = self.saved[self.shown] if self.cancel_event is None and 0 <= self.shown < len(self.saved) else None
        record = saved or {"rows": self.rows, "rs": self.rs, "histograms": self.histograms,
                           "exit": None if self.query_one("#eval-exit", Select).value == "off"
                           else self.query_one("#eval-exit", Select).value}
        name = Path(saved["path"]).stem if saved else "running"
        run = self.app.current_run.name if self.app.model_path is None and self.app.current_run else str(self._target)
        specs = [eval_vs_r_figure(record, run=run, name=name)]
        if any(sum(h.values()) for per_r in self.histograms.values() for h in per_r.values()):
            specs.append(eval_exits_figure(record, run=run, name=name))
        return specs

    def _draw_histograms(self, tasks: list[str]) -> None:
        box = self.query_one("#eval-hists", Horizontal)
        with_data = [t for t in tasks if any(sum(h.values()) for h in self.histograms.get(t, {}).values())]
        shown = with_data[:MAX_HISTOGRAMS]
        box.display = bool(shown)
        plots = list(box.query(PlotextPlot))
        for extra in plots[len(shown):]:
            extra.remove()
        for _ in range(len(plots), len(shown)):
            box.mount(PlotextPlot(classes="eval-hist"))
        box.call_after_refresh(self._fill_histograms, shown)

    def _fill_histograms(self, shown: list[str]) -> None:
        for i, (t, plot) in enumerate(zip(shown, self.query_one("#eval-hists", Horizontal).query(PlotextPlot))):
            per_r = self.histograms[t]
            r = max(per_r, key=int)  # the largest r: the most room to exit early
            hist = per_r[r]
            total = sum(hist.values())
            plt = plot.plt
            plt.clear_figure()
            xs = sorted(int(k) for k in hist)
            plt.bar(xs, [100 * hist[str(x)] / total for x in xs], color=COLORS[i % len(COLORS)], width=0.6)
            plt.xlim(0.5, int(r) + 0.5)  # the whole 1..r range, so that early exits stand out
            step = max(1, int(r) // 8)
            plt.xticks(list(range(1, int(r) + 1, step)))
            mean = sum(int(k) * v for k, v in hist.items()) / total
            plt.xlabel(f"{t.removeprefix('recurlab_')[-22:]} r={r} mean {mean:.1f}")  # y: % of tokens
            plot.refresh()
