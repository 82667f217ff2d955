"""TUI benchmark: launch-to-first-frame on a run with a million metric rows, and the CPU an
idle TUI uses while attached to a training run.

    python -m recurlab.bench.tui                       # prints JSON, writes bench-results/tui.json
    python -m recurlab.bench.tui --rows 1000000 --idle-seconds 20 --out bench-results/tui.json
    python -m recurlab.bench.tui --mode runs --runs 200 --out bench-results/tui-runs.json
    python -m recurlab.bench.tui --mode runs --runs 200 --starts 9 --boost   # on a shared machine

The TUI runs as `recurlab tui RUN` in a pseudo-terminal (160x48), exactly as a user starts it.
* first_frame_s: from starting the process to the first frame with the navigation bar on screen,
  the median of --starts starts (all of them in first_frame_all_s);
* first_curve_s: until the plot shows rows (the log's tail, or every row when that comes first);
* all_rows_drawn_s: until the curves screen reports every row loaded (it reads in chunks in a
  background worker, drawing the log's tail first and then the rows as they arrive);
* second_attach_*: the same after the first TUI has quit, once it has written the run's derived
  series cache (metrics.jsonl.derived.npz): only the cache and no JSON line is read;
* idle CPU: process CPU time (user + system, from /proc) of the TUI over --idle-seconds while a
  tiny-profile worker trains into the run it shows (curves screen) and on the runs screen,
  after a settling period; as a percentage of one core.
* --mode runs: `recurlab tui --runs-dir DIR` on a folder of --runs finished runs (three r_mean and
  a seed each, 100 metric rows): runs_first_frame_s until the navigation bar and the first run's
  row are on screen, and runs_columns_s until the column of a differing config key (r_mean) is
  (the run.yaml are read after the first frame), medians of --starts starts; one_run_first_frame_s
  the same on a folder of one run, started alternately with the big folder.
* --boost (Linux, root): each TUI starts at autogroup nice -15, so that on a shared machine other
  jobs wait while it draws; without it a busy machine's load is most of what the figures show.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path
from recurlab.bench.results import bench_parser, load_average, write_result
from recurlab.config import load_profile, to_yaml
from recurlab.rundir import RunDir

COLS, LINES = 160, 48


class PtyApp:
    """A command in a pseudo-terminal whose output is drained (and kept) by a thread."""

    def __init__(self, cmd: list[str], boost: bool = False):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLS, 0, 0))
        env = dict(os.environ, TERM="xterm-256color", COLUMNS=str(COLS), LINES=str(LINES))
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
        os.close(slave)
        if boost:  # its own session is its own autogroup: raise that group, not just the process
            Path(f"/proc/{self.proc.pid}/autogroup").write_text("-15")
        self.master = master
        self.output = bytearray()
        self.lock = threading.Lock()
        self.seen: dict[bytes, float] = {}
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            with self.lock:
                self.output += data

    def wait_for(self, needle: bytes, timeout: float, *others: bytes) -> float | None:
        """Seconds from launch until `needle` (or one of `others`) appeared in the output (None on timeout)."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            with self.lock:
                found = any(n in self.output for n in (needle, *others))
            if found:
                return time.perf_counter() - self.started
            time.sleep(0.005)
        return None

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def send(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.send(b"q")
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        os.close(self.master)


def tui_cmd(target: Path, runs_dir: Path | None = None) -> list[str]:
    cmd = [sys.executable, "-c", "from recurlab.cli import main; main()", "tui", str(target)]
    return cmd + (["--runs-dir", str(runs_dir)] if runs_dir else [])


def write_big_run(root: Path, rows: int) -> Path:
    run = RunDir.create(root, "big", to_yaml(load_profile("tiny")))
    rng = random.Random(0)
    with open(run.metrics_path, "w") as f:
        for s in range(1, rows + 1):
            loss = 4.0 / (1 + s / 5000) + rng.random() * 0.1
            f.write(f'{{"kind": "train", "step": {s}, "time": {1e9 + s * 0.01:.2f}, "loss": {loss:.5f}, '
                    f'"lr": 0.001, "tokens": {s * 512}, "tokens_per_s": {2500 + rng.random() * 100:.1f}, '
                    f'"r_no_grad": 2, "r_grad": 2, "grad_norm": {rng.random():.4f}}}\n')
    run.write_status(state="finished", step=rows, max_steps=rows, loss=loss)
    return run.path


def first_frame(run_path: Path, rows: int, timeout: float, starts: int, boost: bool = False) -> dict:
    """Per attach (without, then with the derived cache): the first frame as the median of `starts`
    starts that quit once it is on screen (one start's time varies by tens of milliseconds), then
    one start that stays until every row is drawn."""
    import statistics

    from recurlab.runlog.cache import cache_path  # numpy: loaded only when this runs

    out = {}
    cache = cache_path(run_path / "metrics.jsonl")
    cache.unlink(missing_ok=True)
    for attach in ("", "second_attach_"):
        frames = []
        for _ in range(starts):
            app = PtyApp(tui_cmd(run_path), boost)
            try:
                frames.append(app.wait_for(b"Curves", timeout))
            finally:
                app.close()  # before every row is in, so a first attach writes no cache
        app = PtyApp(tui_cmd(run_path), boost)
        try:
            frames.append(app.wait_for(b"Curves", timeout))
            out[attach + "first_curve_s"] = app.wait_for(b"loading; the latest", timeout, f"{rows:,} rows".encode())
            out[attach + "all_rows_drawn_s"] = app.wait_for(f"{rows:,} rows".encode(), timeout)
            deadline = time.perf_counter() + timeout
            while not cache.exists() and time.perf_counter() < deadline:  # written once all rows are in
                time.sleep(0.05)
        finally:
            app.close()
        seen = [f for f in frames if f is not None]
        out[attach + "first_frame_s"] = statistics.median(seen) if seen else None
        out[attach + "first_frame_all_s"] = [round(f, 3) if f is not None else None for f in frames]
    out["derived_cache_mb"] = round(cache.stat().st_size / 2**20, 1) if cache.exists() else None
    return out


def write_many_runs(root: Path, n: int) -> Path:
    for i in range(n):
        run = RunDir.create(root, f"sweep-{i:03d}", to_yaml(load_profile("tiny", [f"train.r_mean={(4, 8, 16)[i % 3]}",
                                                                            f"train.seed={i}"])))
        with open(run.metrics_path, "w") as f:
            for s in range(1, 101):
                f.write(f'{{"kind": "train", "step": {s}, "time": {1e9 + s:.1f}, "loss": {4.0 / (1 + s / 50):.5f}, '
                        f'"lr": 0.001, "tokens": {s * 512}, "tokens_per_s": 2500.0}}\n')
        run.write_status(state="finished", step=100, max_steps=100, loss=2.0, created=1e9 + i)
    return root


def runs_first_frame(runs_dir: Path, one_run_dir: Path, timeout: float, starts: int, boost: bool) -> dict:
    """The Runs screen's first frame on runs_dir and, alternating with it, on a folder of one run."""
    import statistics

    frames, columns, single = [], [], []
    for _ in range(starts):
        app = PtyApp(tui_cmd(runs_dir, runs_dir), boost)
        try:
            frames.append(app.wait_for(b"Runs", timeout) and app.wait_for(b"sweep-000", timeout))
            columns.append(app.wait_for(b"r_mean", timeout))
        finally:
            app.close()
        app = PtyApp(tui_cmd(one_run_dir, one_run_dir), boost)
        try:
            single.append(app.wait_for(b"Runs", timeout) and app.wait_for(b"sweep-000", timeout))
        finally:
            app.close()
    med = lambda xs: round(statistics.median(x for x in xs if x is not None), 3) if any(x is not None for x in xs) else None
    rounded = lambda xs: [round(f, 3) if f else None for f in xs]
    return {"runs_first_frame_s": med(frames), "runs_first_frame_all_s": rounded(frames),
            "runs_columns_s": med(columns), "one_run_first_frame_s": med(single),
            "one_run_first_frame_all_s": rounded(single)}


def idle_cpu(runs_dir: Path, seconds: float, settle: float) -> dict:
    cfg = load_profile("tiny", ["train.max_steps=100000", "train.eval_every=100000", "train.checkpoint_every=100000"])
    run = RunDir.create(runs_dir, "training", to_yaml(cfg))
    with open(run.log_path, "ab") as log:
        worker = subprocess.Popen([sys.executable, "-m", "recurlab.worker", str(run.path)], stdin=subprocess.DEVNULL,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    out = {}
    try:
        deadline = time.time() + 120
        while run.read_status().get("state") != "running" and time.time() < deadline:
            time.sleep(0.2)
        for label, cmd in (("curves", tui_cmd(run.path)), ("runs", tui_cmd(runs_dir))):
            app = PtyApp(cmd)
            try:
                app.wait_for(b"Runs", 30)
                time.sleep(settle)
                step0, c0, t0 = run.read_status().get("step"), app.cpu_seconds(), time.perf_counter()
                time.sleep(seconds)
                c1, t1, step1 = app.cpu_seconds(), time.perf_counter(), run.read_status().get("step")
            finally:
                app.close()
            out[label] = {"cpu_percent_of_one_core": round(100 * (c1 - c0) / (t1 - t0), 2),
                          "cpu_seconds": round(c1 - c0, 3), "wall_seconds": round(t1 - t0, 2),
                          "worker_steps_meanwhile": (step1 or 0) - (step0 or 0),
                          "worker_rows_per_s": round(((step1 or 0) - (step0 or 0)) / (t1 - t0), 1)}
    finally:
        try:
            os.killpg(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        worker.wait()
    return out


def main(argv: list[str] | None = None) -> int:
    p = bench_parser("tui", __doc__, out="bench-results/tui.json")
    p.add_argument("--rows", type=int, default=1_000_000, help="metric rows in the big run")
    p.add_argument("--starts", type=int, default=7, help="starts per attach whose median is the first frame")
    p.add_argument("--idle-seconds", type=float, default=20.0)
    p.add_argument("--settle-seconds", type=float, default=5.0)
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--mode", choices=("attach", "runs"), default="attach",
                   help="attach: the big run and the idle CPU; runs: the Runs screen on --runs runs")
    p.add_argument("--runs", type=int, default=200, help="runs in the folder of --mode runs (at least 3)")
    p.add_argument("--boost", action="store_true",
                   help="start each TUI at autogroup nice -15 (Linux, root): on a shared machine the other "
                        "jobs then wait while it draws, so the figure is the TUI's own, as on a quiet machine")
    args = p.parse_args(argv)
    if args.mode == "runs" and args.runs < 3:
        p.error("--runs: at least 3 (the r_mean column appears only where runs differ)")
    tmp = Path(tempfile.mkdtemp(prefix="recurlab-bench-tui-"))
    if args.mode == "runs":
        try:
            t0 = time.perf_counter()
            root = write_many_runs(tmp / "runs", args.runs)
            one = write_many_runs(tmp / "one", 1)
            result = {"load_average_before": load_average(), "boost": args.boost,
                      "terminal": f"{COLS}x{LINES}", "runs": args.runs, "write_seconds": round(time.perf_counter() - t0, 1),
                      **runs_first_frame(root, one, args.timeout, args.starts, args.boost),
                      "load_average_after": load_average()}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        write_result(args.out, result)
        print(json.dumps(result, indent=1))
        return 0
    try:
        t0 = time.perf_counter()
        big = write_big_run(tmp / "runs", args.rows)
        size_mb = big.joinpath("metrics.jsonl").stat().st_size / 2**20
        result = {
            "load_average_before": load_average(),
            "boost": args.boost,
            "terminal": f"{COLS}x{LINES}",
            "metric_rows": args.rows,
            "metrics_file_mb": round(size_mb, 1),
            "write_seconds": round(time.perf_counter() - t0, 1),
            **first_frame(big, args.rows, args.timeout, args.starts, args.boost),
            "idle": idle_cpu(tmp / "live", args.idle_seconds, args.settle_seconds),
            "load_average_after": load_average(),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for key in ("first_frame_s", "first_curve_s", "all_rows_drawn_s", "second_attach_first_frame_s",
                "second_attach_first_curve_s", "second_attach_all_rows_drawn_s"):
        if result[key] is not None:
            result[key] = round(result[key], 3)
    write_result(args.out, result)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
