"""Many runs as one table: their configs flattened, the keys that differ among them, a filter
grammar, sorting, grouping and each run's metric summary. No torch and no Textual: the Runs
screen, `recurlab runs --json` and `recurlab runs --where` share it.

    records = load_records("runs")                       # a RunRecord per run: status + flat config
    differing_keys([r.config for r in records])          # ["train.r_mean", "train.seed"]
    flt = parse_filter("r_mean=16 state=finished")       # FilterError on a bad term
    [r.name for r in records if flt.matches(r)]
    family("cpu-0101-s2")                                # "cpu-0101": the base of a --seeds family
    run_summary(records[0].run)                          # last and best of every metric

The filter: terms separated by spaces, all of which must hold.
    WORD            the name contains WORD, or the state or the profile is WORD
    KEY=VALUE       equal (numbers as numbers, text case-insensitive with * as a wildcard)
    KEY!=VALUE      not equal;  KEY<N, KEY<=N, KEY>N, KEY>=N compare numbers;  KEY~REGEX searches
KEY is name, state, profile, family, a status field (step, loss, tokens, tokens_per_s, params,
device, host) or a config key, dotted (train.r_mean) or bare when one section has it (r_mean).
"""

from __future__ import annotations

import fnmatch
import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from recurlab.errors import FilterError
from recurlab.rundir import MetricsTail, RunDir, list_runs

# status fields a filter, a sort and `runs --json` can name
STATUS_KEYS = ("step", "max_steps", "loss", "tokens", "tokens_per_s", "params", "device", "host", "created")
PSEUDO_KEYS = ("name", "state", "profile", "family")
# config keys that never make a column: the description follows the profile, which has its own
NOT_COLUMNS = ("description",)
OPS = ("!=", "<=", ">=", "==", "=", "<", ">", "~")
TERM_RE = re.compile(r"^([A-Za-z_][\w.@]*)(!=|<=|>=|==|=|<|>|~)(.*)$")
SEED_SUFFIX = re.compile(r"-s\d+$")

_config_cache: dict[Path, tuple[tuple[int, int], dict]] = {}


def _yaml_load(text: str):
    import yaml  # ~20 ms to import: only once configs are read, after the Runs screen's first frame

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader is ~10x faster on 200 run.yaml
    return yaml.load(text, Loader=loader)


def flatten(config: dict) -> dict:
    """`{"train": {"r_mean": 8}}` -> `{"train.r_mean": 8}`; lists become tuples (hashable, comparable)."""
    out = {}
    for top, value in config.items():
        if isinstance(value, dict):
            for key, v in value.items():
                out[f"{top}.{key}"] = tuple(v) if isinstance(v, list) else v
        else:
            out[top] = tuple(value) if isinstance(value, list) else value
    return out


def flat_config(run: RunDir) -> dict | None:
    """The run's run.yaml flattened (cached while the file is unchanged), or None if unreadable."""
    path = run.config_path
    try:
        st = path.stat()
        ident = (st.st_ino, st.st_mtime_ns)
        hit = _config_cache.get(path)
        if hit is not None and hit[0] == ident:
            return hit[1]
        data = _yaml_load(path.read_text())
    except (OSError, ValueError, ImportError):
        return None
    except Exception:  # a YAML syntax error (yaml.YAMLError): a broken run.yaml shows as no config
        return None
    flat = flatten(data) if isinstance(data, dict) else None
    if flat is not None:
        _config_cache[path] = (ident, flat)
    return flat


def family(name: str) -> str:
    """The base name of a `--seeds` family (NAME-s0, NAME-s1 ... -> NAME); other names are their own."""
    return SEED_SUFFIX.sub("", name)


@dataclass
class RunRecord:
    run: RunDir
    status: dict = field(default_factory=dict)
    state: str = "unknown"
    config: dict | None = None

    @property
    def name(self) -> str:
        return self.run.name

    def value(self, key: str):
        """A column's value: a pseudo key, a status field or a (dotted) config key; None if absent."""
        if key == "name":
            return self.name
        if key == "state":
            return self.state
        if key == "family":
            return family(self.name)
        if key == "profile":
            return (self.config or {}).get("profile")
        if key in STATUS_KEYS:
            return self.status.get(key)
        return (self.config or {}).get(key)


def record(run: RunDir, with_config: bool = True) -> RunRecord:
    status = run.read_status()
    state = run.effective_state(status) if status else "unreadable"
    return RunRecord(run, status, state, flat_config(run) if with_config else None)


def load_records(runs_dir: str | Path, with_config: bool = True) -> list[RunRecord]:
    return [record(run, with_config) for run in list_runs(runs_dir)]


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def differing_keys(configs: list[dict | None]) -> list[str]:
    """Config keys whose value is not the same in every config given (a key missing from some
    config differs from one that is present), in the order the configs list them."""
    present = [c for c in configs if c is not None]
    if len(present) < 2:
        return []
    order: dict[str, None] = {}
    for c in present:
        order.update(dict.fromkeys(c))
    missing = object()
    out = []
    for key in order:
        if key in NOT_COLUMNS:
            continue
        first = present[0].get(key, missing)
        if any(not _same(c.get(key, missing), first) for c in present[1:]):
            out.append(key)
    return out


def short_names(keys: list[str]) -> dict[str, str]:
    """Column titles: the bare key where no other key shown has the same one (r_mean, not train.r_mean)."""
    bare = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (b if bare.count(b) == 1 else k) for k, b in zip(keys, bare)}


def show(value) -> str:
    """A value as a table cell: lists as 1,4; floats short; None as -."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(show(v) for v in value) if value else "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.replace("_", ""))
        except ValueError:
            return None
    return None


def _config_keys() -> dict[str, list[str]]:
    """Every dotted config key, and every bare key with the dotted keys it may mean."""
    import dataclasses

    from recurlab.config import SECTIONS, TOP_SCALARS  # yaml: not on the TUI's first frame, which reads no config

    bare: dict[str, list[str]] = {k: [k] for k in TOP_SCALARS}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            bare.setdefault(f.name, []).append(f"{section}.{f.name}")
    return bare


@dataclass
class Term:
    key: str | None  # None: a bare word
    op: str
    value: str
    regex: re.Pattern | None = None

    def matches(self, rec: RunRecord) -> bool:
        if self.key is None:
            word = self.value.lower()
            return (word in rec.name.lower() or word == rec.state.lower()
                    or word == str(rec.value("profile") or "").lower())
        got = rec.value(self.key)
        if self.op == "!=":
            return got is None or not _equal(got, self.value)
        if got is None:
            return False
        if self.op == "=":
            return _equal(got, self.value)
        if self.op == "~":
            return bool(self.regex.search(show(got)))
        have, want = _number(got), float(self.value)
        if have is None:
            return False
        return {"<": have < want, "<=": have <= want, ">": have > want, ">=": have >= want}[self.op]


def _equal(got, text: str) -> bool:
    a, b = _number(got), _number(text)
    if a is not None and b is not None:
        return a == b
    return fnmatch.fnmatchcase(show(got).lower(), text.lower())


@dataclass
class Filter:
    terms: list[Term] = field(default_factory=list)
    text: str = ""

    def matches(self, rec: RunRecord) -> bool:
        return all(t.matches(rec) for t in self.terms)

    def __bool__(self) -> bool:
        return bool(self.terms)


def resolve_key(key: str, extra: tuple[str, ...] = ()) -> str:
    """A filter or sort key as a column key: pseudo keys and status fields as they are, a config key
    dotted; FilterError for an unknown or ambiguous one. `extra`: keys that runs on disk have."""
    if key in PSEUDO_KEYS or key in STATUS_KEYS:
        return key
    known = _config_keys()
    dotted = {d for ds in known.values() for d in ds} | set(extra)
    if key in dotted:
        return key
    owners = sorted(set(known.get(key, [])) | {k for k in extra if k.rsplit(".", 1)[-1] == key})
    if len(owners) == 1:
        return owners[0]
    if len(owners) > 1:
        raise FilterError(f"key {key!r} is ambiguous: write {' or '.join(owners)}")
    raise FilterError(f"unknown key {key!r}: use name, state, profile, family, {', '.join(STATUS_KEYS)} "
                      "or a config key such as train.r_mean (see `recurlab profiles show cpu`)")


def parse_filter(text: str, extra_keys: tuple[str, ...] = ()) -> Filter:
    """The filter grammar of the module docstring; FilterError names the term that is wrong."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise FilterError(f"filter {text!r}: {exc}; close the quote") from None
    terms = []
    for word in words:
        m = TERM_RE.match(word)
        if m is None:
            if any(op in word for op in OPS):
                raise FilterError(f"filter term {word!r}: write KEY=VALUE (also != < <= > >= ~), e.g. r_mean=16")
            terms.append(Term(None, "", word))
            continue
        key, op, value = m.groups()
        op = "=" if op == "==" else op
        if value == "":
            raise FilterError(f"filter term {word!r}: no value after {key}{op}; e.g. {key}{op}16")
        try:
            key = resolve_key(key, extra_keys)
        except FilterError as exc:
            raise FilterError(f"filter term {word!r}: {exc}") from None
        regex = None
        if op in ("<", "<=", ">", ">=") and _number(value) is None:
            raise FilterError(f"filter term {word!r}: {op} compares numbers; {value!r} is not one")
        if op == "~":
            try:
                regex = re.compile(value, re.IGNORECASE)
            except re.error as exc:
                raise FilterError(f"filter term {word!r}: bad regular expression: {exc}") from None
        terms.append(Term(key, op, value, regex))
    return Filter(terms, text)


def sort_records(records: list[RunRecord], key: str, reverse: bool = False) -> list[RunRecord]:
    """By one column; numbers as numbers; runs without a value last in either direction."""
    def rank(rec: RunRecord):
        v = rec.value(key)
        n = _number(v) if not isinstance(v, str) else None
        return (0, n, "") if n is not None else (1, 0.0, show(v).lower())

    have = [r for r in records if r.value(key) is not None]
    none = [r for r in records if r.value(key) is None]
    return sorted(have, key=rank, reverse=reverse) + none


GROUPS = ("none", "profile", "family")


def group_of(rec: RunRecord, by: str) -> str:
    if by == "profile":
        return str(rec.value("profile") or "-")
    if by == "family":
        return family(rec.name)
    return ""


# ---- one run's summary ------------------------------------------------------------------------------

LOWER_IS_BETTER = ("loss", "grad_norm")
HIGHER_IS_BETTER = ("acc", "tokens_per_s", "mfu")


@dataclass
class Stat:
    metric: str
    last: float
    best: float
    best_step: int
    last_step: int
    count: int


def run_summary(run: RunDir) -> list[Stat]:
    """Last and best of every numeric metric (train metrics, eval metrics per r as "eval loss r=4"):
    best is the lowest loss or grad norm and the highest accuracy, throughput or MFU; others have
    no best (it equals the last). Reads all of metrics.jsonl once."""
    acc: dict[str, Stat] = {}
    for row in MetricsTail(run.metrics_path).read_new():
        kind, step = row.get("kind"), row.get("step")
        if kind not in ("train", "eval") or not isinstance(step, (int, float)):
            continue
        suffix = f" r={row.get('r')}" if kind == "eval" else ""
        for key, value in row.items():
            if key in ("kind", "step", "time", "r") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value):
                continue
            name = f"{kind} {key}{suffix}"
            st = acc.get(name)
            if st is None:
                acc[name] = Stat(name, value, value, int(step), int(step), 1)
                continue
            st.last, st.last_step, st.count = value, int(step), st.count + 1
            base = key.split("@", 1)[0]
            better = (value < st.best if base in LOWER_IS_BETTER else value > st.best if base in HIGHER_IS_BETTER
                      else False)
            if better:
                st.best, st.best_step = value, int(step)
            elif base not in LOWER_IS_BETTER + HIGHER_IS_BETTER:
                st.best, st.best_step = value, int(step)
    return sorted(acc.values(), key=lambda s: (not s.metric.startswith("train"), _metric_order(s.metric)))


def _metric_order(name: str):
    m = re.search(r" r=(\d+)$", name)
    return (name.split(" r=")[0], int(m.group(1)) if m else -1)


def config_diff(a: dict | None, b: dict | None) -> list[tuple[str, object, object]]:
    """(key, value in a, value in b) for every config key that differs between two runs."""
    a, b = a or {}, b or {}
    return [(k, a.get(k), b.get(k)) for k in differing_keys([a, b])]
