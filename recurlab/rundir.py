"""The run directory: the only interface between a training worker and its readers.

    from recurlab.rundir import RunDir, list_runs, resolve_run
    run = resolve_run("add-1", runs_dir="runs")   # a name, a unique prefix, or a path
    run.read_status(); run.read_metrics(); run.latest_checkpoint()

Contract (version CONTRACT_VERSION; docs/run-directory.md is generated from this docstring):

    run.yaml            resolved config, written once when the run is created
    status.json         replaced atomically (temp file + fsync + os.replace + fsync of the dir); the
                        worker keeps it in memory (own_status) and rewrites it whole:
                        contract, name, state, pid, host, device, world_size, created, started,
                        heartbeat, ended, step, max_steps, tokens, loss, tokens_per_s,
                        last_checkpoint, error, params; a reader drops a field whose JSON type is
                        not the one in STATUS_TYPES, and takes a file that is not an object as {}
    metrics.jsonl       append-only JSON lines; every row has "kind" ("train" | "eval"),
                        "step" and "time"; a reader skips a torn last line
    metrics.jsonl.derived.npz   derived, disposable: the TUI's parsed series of the log's first N
                        bytes (numpy columns + the log's identity, N and a checksum of samples of
                        those bytes). Written by readers (atomically), never by the worker, never
                        trusted over the log: used only while the log still starts with those bytes,
                        else rebuilt from it (recurlab/runlog/cache.py); safe to delete
    worker.log          append-only text log of the worker (stdout and stderr)
    environment.json    replaced at each worker start: torch, python, device, threads, host, the
                        git commit of recurlab if known (recurlab/environment.py)
    tensorboard/, wandb/   files of the optional trackers (hardware.trackers; recurlab/trackers.py)
    checkpoints/step_NNNNNNNN/   complete checkpoints only: built in a ".tmp-" sibling and
                        renamed into place, holding model.safetensors, optimizer.safetensors
                        optimizer.json and state.json (step, tokens, elapsed, world_size, seed).
                        No sampler positions or RNG states are stored: every random draw
                        (batches, sampled depth, latent starts) is keyed on (seed, step), so the
                        step alone resumes exactly
    vocab.json          character vocabulary of embedded-task runs
    tokenizer.json      byte-level BPE of text runs (a `tokenizers` file)
    stop                present while a stop is requested; the worker checkpoints and exits

Results, never replaced: each is written once through `write_new` (exclusive create, fsync of the
file and the folder; a name already used gets the next free suffix):
    sweeps/step_NNNNNNNN[_levels_A-B][_K].{csv,json}   r sweeps of a checkpoint (`recurlab sweep`);
                        the K-th sweep of a step gets _K
    evals/eval-YYYYmmdd-HHMMSS[-K].{json,csv}   one evaluation (`recurlab eval`); the only result
                        rewritten after its first write: by its own writer, atomically, as rows arrive
    evals/tasks/        the run's held-out split exported as lm-eval task YAML and JSON lines
                        (rewritten atomically on each `eval --tasks embedded`; derived, safe to delete)
    traces/NAME[-K].json    latent traces (`recurlab inspect --name NAME`)
    wavefronts/NAME[-K].json    parallel-sampler wavefronts (`generate --save-wavefront`, the TUI's w)
    figures/STEM[-K].{png,svg,pdf,csv}   figures (`recurlab plot`, the TUI's ctrl+s)
    lenses/NAME[-K].{safetensors,json}   tuned lenses (`recurlab lens train`): the translators, and
                        the settings with the held-out KL per iteration of each lens
    interventions/NAME[-K].json   patches, causal traces, injection-off and noise runs
                        (`recurlab inspect --patch-from/--causal-trace/--inject-off/--noise`, the Inspector)
    stability/NAME[-K].json   run-level dynamics summaries (`recurlab inspect --stability`)
In the runs folder, beside the runs: compare[-K].{csv,json} of `recurlab compare`.

Every file is created with mode 0666 less the umask, so another user can read a run.

States: starting, running, finished, failed, stopped. A reader reports "lost" for a running
run whose heartbeat is older than STALE_AFTER_S, and "failed" when its pid on this host is gone.
This module imports no torch.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from recurlab.errors import CheckpointError, RunError  # RunError re-exported: callers catch recurlab.rundir.RunError

CONTRACT_VERSION = 2  # 2: every result folder registered, results written through write_new
STALE_AFTER_S = 60.0
ACTIVE_STATES = ("starting", "running")
DEFAULT_RUNS_DIR = "runs"


STATUS_FIELDS = ("contract", "name", "state", "pid", "host", "device", "world_size", "created", "started", "heartbeat",
                 "ended", "step", "max_steps", "tokens", "loss", "tokens_per_s", "last_checkpoint", "error")
_INT, _NUM, _STR = (int,), (int, float), (str,)
# the JSON type of each status field (None is allowed for every one): a reader drops a field of
# another type, as it drops a file that does not parse, so that no reader trusts a garbled file
STATUS_TYPES = {"contract": _INT, "name": _STR, "state": _STR, "pid": _INT, "host": _STR, "device": _STR,
                "world_size": _INT, "created": _NUM, "started": _NUM, "heartbeat": _NUM, "ended": _NUM, "step": _INT,
                "max_steps": _INT, "tokens": _INT, "loss": _NUM, "tokens_per_s": _NUM, "last_checkpoint": _STR,
                "error": _STR, "params": _INT}



def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in `path` durable (a power loss may otherwise undo it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Replace `path` with `text`: temp file, fsync, rename, fsync of the directory.

    The temp file is created with open(), not mkstemp, so the result has the mode every other
    file gets (0666 less the umask): another user or a watcher with another uid can read a run.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{time.monotonic_ns()}.tmp")
    try:
        with open(tmp, "x") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def current_umask() -> int:
    """The process's umask, read without changing it where /proc says (os.umask alone must set one)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def usual_mode(path: Path) -> None:
    """Give a file written by a library that creates it 0600 (safetensors) the mode every other
    file of a run has, 0666 less the umask, so that another user can read the checkpoint."""
    os.chmod(path, 0o666 & ~current_umask())


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=False) + "\n")


def create_new(path: Path, data: bytes | str) -> Path:
    """Write a file that must not exist yet: exclusive create (O_EXCL), write, fsync of the file and
    of its folder. FileExistsError if the name is taken; never replaces anything. The mode is 0666
    less the umask, like every other file of a run."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        path.unlink(missing_ok=True)  # ours, half written
        raise
    fsync_dir(path.parent)
    return path


def write_new(folder: Path, stem: str, files: dict[str, bytes | str] | Callable[[str], dict[str, bytes | str]],
              sep: str = "-") -> list[Path]:
    """The one writer of results that are never replaced (sweeps, evaluations, figures, traces,
    wavefronts, comparisons): {suffix: data} as folder/stem.suffix, or at the first free stem of
    stem{sep}2, stem{sep}3, ... A stem is free when no entry of the folder is named stem.*, so the
    files of one result share their stem; each file is created exclusively and fsynced, and the
    folder after them. Two writers racing for a stem both succeed, under different stems. `files`
    may be a function of the stem taken, for results that record their own name."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    existing = [p.name for p in folder.iterdir()]
    n = 1
    while True:
        name = stem if n == 1 else f"{stem}{sep}{n}"
        n += 1
        if any(e.startswith(name + ".") for e in existing):
            continue
        written: list[Path] = []
        try:
            for suffix, data in (files(name) if callable(files) else files).items():
                written.append(create_new(folder / f"{name}.{suffix}", data))
        except FileExistsError:  # another writer took this stem meanwhile: undo ours, take the next
            for path in written:
                path.unlink(missing_ok=True)
            continue
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        return written


def read_json(path: Path):
    """JSON from a file that may be missing, half-written, unreadable, not UTF-8 or a folder: None
    instead of an error. The caller checks the shape (read_json_object, valid_status)."""
    try:
        return json.loads(Path(path).read_bytes())
    except (OSError, ValueError):  # UnicodeDecodeError and RecursionError-free JSON errors are ValueErrors
        return None


def read_json_object(path: Path) -> dict:
    """A JSON object from `path`, or {} for anything else (missing, garbled, a list, a number)."""
    data = read_json(path)
    return data if isinstance(data, dict) else {}


def _well_typed(value, types: tuple) -> bool:
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, types):
        return False
    return not isinstance(value, float) or value == value and abs(value) != float("inf")


def valid_status(data) -> dict:
    """The fields of a status.json object that have their contract's type; the rest are dropped."""
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and _well_typed(v, STATUS_TYPES.get(k, (int, float, str)))}


def pid_alive(pid: int | None) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False  # 0 and -1 would address a process group or every process, not one worker
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    # a zombie child of this process counts as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def parse_jsonl(body: bytes) -> list[dict]:
    """The JSON objects of complete lines; lines that do not parse are skipped."""
    try:  # one C-level parse for the whole chunk; line by line only if some line is bad
        rows = json.loads(b"[" + body.strip(b"\n").replace(b"\n", b",") + b"]")
        return [r for r in rows if isinstance(r, dict)]
    except ValueError:
        pass
    rows = []
    for line in body.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


class MetricsTail:
    """Incremental reader of metrics.jsonl: each `read_new()` returns only complete new rows."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = 0
        self._inode = None

    def read_new(self, max_bytes: int | None = None) -> list[dict]:
        """New complete rows; with `max_bytes`, at most that much of the file per call (a
        reader of a huge file calls it until `offset` stops moving)."""
        try:
            st = self.path.stat()
        except OSError:
            return []
        if self._inode is not None and (st.st_ino != self._inode or st.st_size < self.offset):
            self.offset = 0  # replaced or truncated: start over
        self._inode = st.st_ino
        if st.st_size == self.offset:
            return []
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read() if max_bytes is None else f.read(max_bytes)
        except OSError:  # a folder in its place, or unreadable: no rows, as for a missing log
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []  # only a torn line so far
        self.offset += end + 1
        return parse_jsonl(chunk[: end + 1])


@dataclass
class Checkpoint:
    path: Path
    step: int


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._status: dict | None = None  # the writer's own copy, once it owns the status

    # ---- paths ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / "run.yaml"

    @property
    def status_path(self) -> Path:
        return self.path / "status.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def log_path(self) -> Path:
        return self.path / "worker.log"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def stop_path(self) -> Path:
        return self.path / "stop"

    @property
    def vocab_path(self) -> Path:
        return self.path / "vocab.json"

    @property
    def tokenizer_path(self) -> Path:
        return self.path / "tokenizer.json"

    @property
    def sweeps_dir(self) -> Path:
        return self.path / "sweeps"

    @property
    def traces_dir(self) -> Path:
        return self.path / "traces"

    def exists(self) -> bool:
        return self.config_path.exists()

    # ---- creation (the CLI, once) -----------------------------------------------------
    @classmethod
    def create(cls, runs_dir: str | Path, name: str, config_yaml: str, device: str = "") -> "RunDir":
        check_runs_dir(runs_dir)
        runs_dir = Path(runs_dir)
        runs_dir.mkdir(parents=True, exist_ok=True)
        path = runs_dir / name
        try:
            path.mkdir()
        except FileExistsError:
            raise RunError(f"run {name!r} already exists in {runs_dir}; pick another --name or resume it") from None
        run = cls(path)
        atomic_write_text(run.config_path, config_yaml)
        now = time.time()
        run.write_status(
            contract=CONTRACT_VERSION, name=name, state="starting", pid=None, host=socket.gethostname(),
            device=device, world_size=1, created=now, started=None, heartbeat=now, ended=None, step=0,
            max_steps=None, tokens=0, loss=None, tokens_per_s=None, last_checkpoint=None, error=None,
        )
        return run

    # ---- status -----------------------------------------------------------------------
    def read_status(self) -> dict:
        """status.json as far as it has the contract's shape: {} for a garbled file, and a field of
        the wrong type (a pid that is a string, a heartbeat that is "soon") is left out."""
        return valid_status(read_json(self.status_path))

    def own_status(self, **fields) -> dict:
        """Make this process the status's writer: from now on it keeps the status in memory and
        rewrites the file whole, so a file that another process garbled or truncated is repaired
        at the next write instead of stripping the run of its state. The file is read once, here,
        only for what the writer does not know itself (created, device) and what the run reached
        (step, tokens, loss, last checkpoint); the run's name and the contract come from the directory."""
        on_disk = self.read_status()
        status = {key: None for key in STATUS_FIELDS}
        status.update(step=0, tokens=0)  # until the first step (or the resumed checkpoint) says otherwise
        # what the run reached so far stays recorded until the worker knows better (a resume that
        # fails before its checkpoint is loaded must not turn "stopped at step 40" into step 0)
        kept = ("created", "device", "world_size", "max_steps", "step", "tokens", "loss", "last_checkpoint")
        status.update({k: on_disk[k] for k in kept if on_disk.get(k) is not None})
        status.update(contract=CONTRACT_VERSION, name=self.name)
        status.update(fields)
        self._status = status
        atomic_write_json(self.status_path, status)
        return dict(status)

    def write_status(self, **fields) -> dict:
        """Update the status. The writer (after own_status) rewrites its in-memory copy whole;
        any other process (the CLI marking a dead worker stopped) merges into what is on disk."""
        if self._status is not None:
            status = self._status
        else:
            status = self.read_status()
        status.update(fields)
        atomic_write_json(self.status_path, status)
        return dict(status)

    def status_snapshot(self) -> dict:
        """The writer's in-memory status, or what is on disk for a reader."""
        return dict(self._status) if self._status is not None else self.read_status()

    def effective_state(self, status: dict | None = None) -> str:
        """The state a reader should show: 'lost' or 'failed' for dead workers that did not say so."""
        status = self.read_status() if status is None else status
        state = status.get("state", "unknown")
        if state not in ACTIVE_STATES:
            return state
        if status.get("host") == socket.gethostname() and status.get("pid") and not pid_alive(status["pid"]):
            return "failed"
        if time.time() - float(status.get("heartbeat") or 0) > STALE_AFTER_S:
            return "lost"
        return state

    # ---- metrics and log ----------------------------------------------------------------
    def append_metrics(self, rows: list[dict]) -> None:
        if not rows:
            return
        data = "".join(json.dumps(r) + "\n" for r in rows)
        with open(self.metrics_path, "a") as f:
            f.write(data)
            f.flush()

    def read_metrics(self, kind: str | None = None) -> list[dict]:
        rows = MetricsTail(self.metrics_path).read_new()
        return [r for r in rows if kind is None or r.get("kind") == kind]

    def truncate_metrics_after(self, step: int) -> None:
        """On resume: drop rows past the checkpoint's step so that no step appears twice."""
        rows = self.read_metrics()
        keep = [r for r in rows if int(r.get("step", 0)) <= step]
        if len(keep) != len(rows) or self._metrics_torn():
            # a worker killed mid-append leaves a fragment without its newline; the next append
            # would be glued to it and a reader would drop both
            atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in keep))

    def _metrics_torn(self) -> bool:
        try:
            with open(self.metrics_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                if f.tell() == 0:
                    return False
                f.seek(-1, os.SEEK_END)
                return f.read(1) != b"\n"
        except OSError:
            return False

    def append_log(self, msg: str) -> str:
        """One timestamped line at the end of worker.log; returns the line."""
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n"
        with open(self.log_path, "a") as f:
            f.write(line)
        return line

    def log_tail(self, lines: int = 20) -> list[str]:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 64 * 1024))
                data = f.read().decode("utf-8", "replace")
        except OSError:
            return []
        return data.splitlines()[-lines:]

    # ---- checkpoints --------------------------------------------------------------------
    def checkpoints(self) -> list[Checkpoint]:
        out = []
        if self.checkpoints_dir.is_dir():
            for p in self.checkpoints_dir.iterdir():
                if p.name.startswith("step_") and (p / "state.json").exists() and (p / "model.safetensors").exists():
                    try:
                        out.append(Checkpoint(p, int(p.name[5:])))
                    except ValueError:
                        continue
        return sorted(out, key=lambda c: c.step)

    def latest_checkpoint(self) -> Checkpoint | None:
        cks = self.checkpoints()
        return cks[-1] if cks else None

    def checkpoint_problem(self, ckpt: Checkpoint) -> str | None:
        """Why a complete-looking checkpoint cannot be resumed, or None: its state.json is not a
        {step, tokens} object, or a safetensors file is cut short (its header promises more bytes
        than the file holds). Read without torch, before a worker is started for it."""
        state = read_json(ckpt.path / "state.json")
        if not isinstance(state, dict) or not all(_well_typed(state.get(k), _INT) and state.get(k) is not None
                                                  for k in ("step", "tokens")):
            return "its state.json is not a JSON object with an integer step and tokens"
        for name in ("model.safetensors", "optimizer.safetensors"):
            problem = safetensors_problem(ckpt.path / name)
            if problem and (name == "model.safetensors" or (ckpt.path / name).exists()):
                return f"{name} {problem}"
        return None

    def checkpoint_dir_for(self, step: int) -> Path:
        return self.checkpoints_dir / f"step_{step:08d}"

    # ---- control ------------------------------------------------------------------------
    def request_stop(self) -> bool:
        """Ask the worker to checkpoint and exit. Returns True if a stop was already pending."""
        pending = self.stop_path.exists()
        atomic_write_text(self.stop_path, f"{time.time()}\n")
        return pending

    def stop_requested(self) -> bool:
        return self.stop_path.exists()

    def clear_stop(self) -> None:
        self.stop_path.unlink(missing_ok=True)


def init_checkpoint(spec: str, key: str = "train.init_from") -> Path:
    """train.init_from (or `key`): a run directory (its latest complete checkpoint) or one checkpoint directory."""
    path = Path(spec)
    if (path / "model.safetensors").exists():
        return path
    ckpt = RunDir(path).latest_checkpoint() if (path / "run.yaml").exists() else None
    if ckpt is None:
        raise CheckpointError(f"{key}: {spec} is neither a run directory with a complete checkpoint "
                              f"nor a checkpoint directory (one holding model.safetensors)")
    return ckpt.path


def safetensors_problem(path: Path) -> str | None:
    """None for a safetensors file whose header parses and whose tensors all fit in the file;
    else what is wrong (missing, cut short, not safetensors). The format: 8 bytes of header length
    (little endian), the JSON header, then the tensor bytes at the header's data_offsets."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 2 or 8 + n > size:
                return "is cut short or not a safetensors file"
            header = json.loads(f.read(n))
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    except ValueError:
        return "has a header that is not JSON"
    if not isinstance(header, dict):
        return "has a header that is not a JSON object"
    ends = [v.get("data_offsets", [0, 0])[1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    if not all(isinstance(e, int) for e in ends) or 8 + n + max(ends, default=0) > size:
        return "is cut short (its header names more bytes than the file holds)"
    return None


def check_runs_dir(runs_dir: str | Path) -> None:
    """A --runs-dir that names something other than a folder is a mistake to name, not an empty list."""
    if str(runs_dir) == "":
        raise RunError("--runs-dir '' is empty: pass the folder that holds the runs (default: runs)")
    root = Path(runs_dir)
    if root.exists() and not root.is_dir():
        raise RunError(f"--runs-dir {str(root)!r} is a file, not a directory: pass the folder that holds the runs")
    if not root.exists() and root.parent != root and root.parent.exists() and not root.parent.is_dir():
        raise RunError(f"--runs-dir {str(root)!r} is inside {str(root.parent)!r}, which is a file: pass a folder")


def check_readable_runs_dir(runs_dir: str | Path) -> None:
    """For readers (`runs`, the TUI): the runs folder must exist and be listable, not only be no file."""
    check_runs_dir(runs_dir)
    root = Path(runs_dir)
    if not root.is_dir():
        raise RunError(f"runs directory {str(root)!r} does not exist: start a run with `recurlab train` or pass --runs-dir")
    if not os.access(root, os.R_OK | os.X_OK):
        raise RunError(f"cannot read runs directory {str(root)!r} (permission denied); pass a folder you can read")


def folder_problem(path: str | Path) -> str | None:
    """Why `path` cannot be (or become) a folder this process writes into, or None: it is a file,
    it lies under a file, or the nearest existing folder above it is not writable. Checked before
    a command writes anything, so that a bad output path is refused with nothing written."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            return f"{str(path)!r} is a file, not a folder"
        above = path
    else:
        above = path.parent
        while not above.exists() and above != above.parent:
            above = above.parent
        if not above.is_dir():
            return f"{str(above)!r} is a file, not a folder"
    if not os.access(above, os.W_OK | os.X_OK):
        return f"cannot write in {str(above)!r} (permission denied)"
    return None


def is_run(path: Path) -> bool | None:
    """True for a run directory, False for anything else, None for a folder this user cannot look into."""
    try:
        return (path / "run.yaml").is_file()
    except PermissionError:
        return None


def list_runs(runs_dir: str | Path) -> list[RunDir]:
    """The runs in `runs_dir`, oldest first; a run folder this user cannot read is left out (a
    lookup by its name says why). RunError when the runs folder itself cannot be listed."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    try:
        entries = list(root.iterdir())
    except PermissionError:
        raise RunError(f"cannot read runs directory {str(root)!r} (permission denied); pass a folder you can read") from None
    runs = [RunDir(p) for p in entries if is_run(p)]
    return sorted(runs, key=lambda r: (r.read_status().get("created") or 0, r.name))


def check_readable_run(run: RunDir) -> RunDir:
    if not os.access(run.path, os.R_OK | os.X_OK) or not os.access(run.config_path, os.R_OK):
        raise RunError(f"cannot read run directory {str(run.path)!r} (permission denied); ask its owner to make it "
                       "readable (chmod -R a+rX) or copy it")
    return run


def resolve_run(spec: str, runs_dir: str | Path = DEFAULT_RUNS_DIR) -> RunDir:
    """A run by path, exact name, or unique name prefix within `runs_dir`."""
    if not spec:
        raise RunError("the run '' is empty: give a run name, a unique prefix of one, or a run directory path")
    path = Path(spec)
    if is_run(path) is not False:  # a run, or a folder this user cannot read (then: say so)
        return check_readable_run(RunDir(path))
    check_runs_dir(runs_dir)  # before Path(), which reads '' as the current folder
    root = Path(runs_dir)
    if is_run(root / spec) is not False:
        return check_readable_run(RunDir(root / spec))
    matches = [r for r in list_runs(root) if r.name.startswith(spec)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        names = ", ".join(r.name for r in matches[:5])
        raise RunError(f"run {spec!r} is ambiguous in {root}: matches {names}; give more of the name")
    raise RunError(f"no run {spec!r} in {root}: see `recurlab runs --runs-dir {root}` or pass a run directory path")


def new_run_name(profile: str, runs_dir: str | Path) -> str:
    stamp = time.strftime("%m%d-%H%M%S")
    base = f"{profile}-{stamp}"
    name, n = base, 1
    while (Path(runs_dir) / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name
