"""Which lm-eval tasks an evaluation runs: names, YAML files, folders, and the embedded tasks.

    plan = resolve_tasks("arc_easy,gsm8k", run=None)                      # lm-eval's own tasks
    plan = resolve_tasks("my_tasks/qa.yaml,my_tasks/", run=None)         # local YAML files / folders
    plan = resolve_tasks("embedded", run=run, cfg=cfg)                   # the run's task, held-out split
    plan.names, plan.include, plan.manager                                # what simple_evaluate gets
    export_embedded(run, cfg) -> [task names]                             # writes RUN/evals/tasks/*.yaml|jsonl

Every task is built once here (which reads its data), so that an unknown name, a YAML lm-eval
rejects, a missing data file or a hub dataset without network fails with one line before a model
loads or a file is written. Built-in tasks fetch their data from the Hugging Face hub; a local task
is a YAML file over a JSON lines file (docs/evaluation.md: "Writing a local task").
"""

from __future__ import annotations

import difflib
import functools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from recurlab.errors import DataError, EvalTaskError
from recurlab.rundir import atomic_write_text
from recurlab.tasks import get_task

EMBEDDED = "embedded"
TASKS_SUBDIR = "tasks"  # RUN/evals/tasks/: the exported embedded tasks



@dataclass
class TaskPlan:
    names: list[str]  # passed to lm-eval, in the order asked for
    include: list[str] = field(default_factory=list)
    manager: object = None  # lm_eval.tasks.TaskManager
    versions: dict = field(default_factory=dict)
    group_leaves: dict = field(default_factory=dict)  # group -> leaf task names


def embedded_task_name(task: str, level: int) -> str:
    return f"recurlab_{task}_level{level}"


def export_embedded(run, cfg, folder: Path | None = None) -> list[str]:
    """Write the run's held-out split, one lm-eval generate-until task per level, scored by exact match.

    The examples are the sweep's (`TaskData.heldout`: same task, levels, count and seed). A task
    allows len(answer) + 1 new tokens, so a greedy answer is right only when it is followed by
    <eos>, as teacher-forced exact match in `recurlab sweep` demands."""
    if cfg.data.source != "task":
        raise EvalTaskError(f"'{EMBEDDED}' needs a run trained on an embedded task; {run.name} trains on text "
                            f"(data.source={cfg.data.source}): name lm-eval tasks or YAML files instead")
    task = get_task(cfg.data.task)
    folder = Path(folder) if folder is not None else run.path / "evals" / TASKS_SUBDIR
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for level in sorted(cfg.data.difficulties):
        name = embedded_task_name(task.name, level)
        examples = task.heldout(level, cfg.data.eval_examples, cfg.train.seed)
        if not examples:
            raise EvalTaskError(f"level {level} of {task.name} has no held-out prompts to evaluate; drop it from "
                                "data.difficulties")
        data = folder / f"{name}.jsonl"
        _write_if_changed(data, "".join(json.dumps({"prompt": ex.prompt, "answer": ex.answer, "difficulty": level}) + "\n"
                                        for ex in examples))
        spec = {
            "task": name,
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(data.resolve())}},
            "test_split": "test",
            "output_type": "generate_until",
            "doc_to_text": "{{prompt}}",
            "doc_to_target": "{{answer}}",
            "generation_kwargs": {"until": ["\n"], "max_gen_toks": max(len(ex.answer) for ex in examples) + 1,
                                  "do_sample": False},
            "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
            "metadata": {"version": 1.0, "recurlab_task": task.name, "level": level, "seed": cfg.train.seed},
        }
        header = f"# {task.description}, level {level}: the held-out split of `recurlab sweep` ({len(examples)} examples)\n"
        _write_if_changed(folder / f"{name}.yaml", header + yaml.safe_dump(spec, sort_keys=False))
        names.append(name)
    return names


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        atomic_write_text(path, text)


class _TagTolerantLoader(yaml.SafeLoader):
    """Reads lm-eval YAML files, whose `!function` tags plain safe_load refuses."""


_TagTolerantLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _yaml_task_names(path: Path) -> list[str]:
    try:
        data = yaml.load(path.read_text(), Loader=_TagTolerantLoader)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise EvalTaskError(f"{path} is not valid YAML ({first}); fix the file") from None
    except UnicodeDecodeError:
        raise EvalTaskError(f"{path} is not UTF-8 text, so it is not a task YAML file; give the task's .yaml") from None
    except OSError as exc:
        raise EvalTaskError(f"cannot read task file {path}: {exc.strerror}") from None
    if not isinstance(data, dict) or not (data.get("task") or data.get("group")):
        raise EvalTaskError(f"{path} has no `task:` key, so it is not an lm-eval task; see docs/evaluation.md, 'Writing a local task'")
    name = data.get("task") or data.get("group")
    if isinstance(name, list):  # a group file lists its tasks under task:; the group's name is what runs
        name = data.get("group")
    if not isinstance(name, str):
        raise EvalTaskError(f"{path}: `task:` must be a name (a string), got {name!r}")
    return [name]


def resolve_tasks(spec: str | list[str], run=None, cfg=None) -> TaskPlan:
    """Names, YAML paths, folders and `embedded` -> a TaskPlan whose tasks all build."""
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s and s.strip()]
    if not items:
        raise EvalTaskError("no tasks given: pass --tasks NAMES_OR_YAML_PATHS, e.g. --tasks embedded or arc_easy")
    names: list[str] = []
    include: list[str] = []
    folder_tasks: list[Path] = []
    bare: list[str] = []
    for item in items:
        p = Path(item).expanduser()
        if item == EMBEDDED:
            if run is None:
                raise EvalTaskError(f"'{EMBEDDED}' needs a run of an embedded task, not a --model folder")
            names += export_embedded(run, cfg)
            include.append(str((run.path / "evals" / TASKS_SUBDIR).resolve()))
        elif p.suffix in (".yaml", ".yml") or p.is_file():
            if not p.is_file():
                raise EvalTaskError(f"task file {item} does not exist; give an lm-eval task name or a YAML file path")
            names += _yaml_task_names(p)
            include.append(str(p.resolve().parent))
        elif p.is_dir():
            include.append(str(p.resolve()))
            folder_tasks.append(p.resolve())
        elif "/" in item:
            raise EvalTaskError(f"task folder {item} does not exist; give an lm-eval task name, a YAML file or a folder")
        else:
            names.append(item)
            bare.append(item)
    include = list(dict.fromkeys(include))
    _quiet_lm_eval()
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=include, include_defaults=False) if include else None
    for folder in folder_tasks:
        found = [n for n, e in manager.task_index.items()
                 if e.yaml_path is not None and Path(e.yaml_path).resolve().is_relative_to(folder)
                 and e.kind.name in ("TASK", "GROUP")]
        if not found:
            raise EvalTaskError(f"folder {folder} holds no lm-eval task YAML files (each needs a `task:` key)")
        names += sorted(found)
    missing = [n for n in names if manager is None or n not in manager.all_tasks]
    if missing:  # lm-eval's own tasks: indexing them takes seconds, so only when needed
        manager = _full_manager(tuple(include))
        for n in missing:
            if n not in manager.all_tasks:
                near = difflib.get_close_matches(n, manager.all_tasks, n=3)
                hint = f" (did you mean {', '.join(near)}?)" if near else ""
                where = "" if n in bare else " (its YAML file did not index: check its keys)"
                raise EvalTaskError(f"unknown task {n!r}{hint}{where}: list lm-eval's tasks with `lm-eval ls tasks`, "
                                    "or give a YAML file or folder")
    names = list(dict.fromkeys(names))
    if missing:
        _offline_if_unreachable()
    plan = TaskPlan(names=names, include=include, manager=manager)
    for n in names:
        _build(plan, n)
    return plan


@functools.lru_cache(maxsize=2)
def _full_manager(include: tuple[str, ...]):
    """lm-eval's task index with its built-in tasks (about 15,000 YAML files), kept for the process."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(include) or None, include_defaults=True)


def _build(plan: TaskPlan, name: str) -> None:
    """Build one task (reading its data) and record its version; any failure becomes one line."""
    try:
        loaded = plan.manager.load([name])
    except (ConnectionError, TimeoutError) as exc:
        raise DataError(f"task {name} needs its data from the Hugging Face hub, which cannot be reached "
                        f"({_first_line(exc)}); connect to the network once so that datasets caches it, "
                        "or write a local task over a JSON lines file (docs/evaluation.md)") from None
    except FileNotFoundError as exc:
        raise DataError(f"task {name}: a data file is missing ({_first_line(exc)}); fix the path in its YAML") from None
    except Exception as exc:  # lm-eval and datasets raise many types for a config they reject
        if "offline" in str(exc).lower() or "couldn't reach" in str(exc).lower():
            raise DataError(f"task {name} needs its data from the Hugging Face hub, which cannot be reached "
                            f"({_first_line(exc)}); connect to the network, or write a local task (docs/evaluation.md)") from None
        raise EvalTaskError(f"task {name}: lm-eval rejected it ({type(exc).__name__}: {_first_line(exc)}); "
                            "fix its YAML") from None
    for tname, task in loaded["tasks"].items():
        plan.versions[tname] = (task.config.metadata or {}).get("version") if hasattr(task, "config") else None
    plan.group_leaves.update({g: sorted(_leaves(g, loaded["group_map"])) for g in loaded["group_map"]})


def _leaves(name: str, group_map: dict) -> set[str]:
    if name not in group_map:
        return {name}
    out: set[str] = set()
    for child in group_map[name]:
        out |= _leaves(getattr(child, "group_name", None) or str(child), group_map)
    return out


def _offline_if_unreachable() -> None:
    """Without a route to the hub, use datasets' offline mode: cached data still loads, and a task
    whose data is not cached fails at once instead of after a minute of retries."""
    import socket

    try:
        socket.getaddrinfo("huggingface.co", 443)
        return
    except OSError:
        pass
    import datasets.config
    import huggingface_hub.constants

    datasets.config.HF_HUB_OFFLINE = True
    huggingface_hub.constants.HF_HUB_OFFLINE = True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _quiet_lm_eval() -> None:
    """lm-eval, datasets and the hub client log at INFO and retry noisily; a CLI line says it all."""
    for name in ("lm_eval", "datasets", "huggingface_hub", "fsspec"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import datasets

    datasets.disable_progress_bars()
