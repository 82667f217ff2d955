"""Open a text source through `datasets` and pull one document's text out of each row.

    ds, where = open_rows(cfg.data)            # an iterable of row dicts, and "hub dataset X" / "local files at P"
    for text in iter_texts(ds, cfg.data, where): ...

The hub and local files share everything but the loader call: `load_hub` asks the hub for a
dataset by name, `load_local` points the `text` / `json` / `parquet` builder at files. Local files
are always read as a stream (no Arrow copy in ~/.cache/huggingface; recurlab caches the token ids
itself). Every failure is one DataError line naming the dataset, the field and the fix.
"""

from __future__ import annotations

import hashlib
import json
import string
from pathlib import Path

from recurlab.config import DataConfig
from recurlab.errors import DataError

BUILDERS = {".txt": "text", ".text": "text", ".md": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
LOCAL_FIX = "data.source=local data.name=/path/to/files (.txt, .jsonl/.json, .parquet, or a folder of them)"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def local_files(name: str) -> tuple[str, list[Path]]:
    """The `datasets` builder and the sorted files behind data.name (a file or a folder)."""
    path = Path(name).expanduser()
    if not path.exists():
        raise DataError(f"local files at {name}: no such file or folder; set {LOCAL_FIX}")
    if path.is_file():
        files = [path]
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in BUILDERS)
    kinds = {BUILDERS.get(p.suffix.lower()) for p in files}
    if not files or None in kinds:
        raise DataError(f"local files at {name}: no readable text files (want .txt, .jsonl/.json or .parquet); set {LOCAL_FIX}")
    if len(kinds) > 1:
        raise DataError(f"local files at {name}: mixes {', '.join(sorted(kinds))} files; put one kind in the folder")
    return kinds.pop(), [p.resolve() for p in files]


def check_source(d: DataConfig) -> None:
    """Raise DataError unless the source can be read: local files that exist and hold some text, or
    a hub dataset whose builder resolves (from the hub, or from the local cache when offline)."""
    if d.source == "local":
        _builder, files = local_files(d.name)
        if not any(_has_text(p) for p in files):
            raise DataError(f"local files at {d.name}: every file is empty; add text or set {LOCAL_FIX}")
        return
    import datasets

    try:
        datasets.load_dataset_builder(d.name, d.subset or None)
    except Exception as exc:  # offline, unknown name, bad subset: all surface here, as in load_hub
        raise DataError(
            f"hub dataset {d.name} (subset {d.subset or '-'}) could not be found: {_first_line(exc)}; without "
            f"network, download it elsewhere or point at local files with {LOCAL_FIX}"
        ) from None


def _has_text(path: Path, chunk: int = 1 << 16) -> bool:
    """Whether a file holds anything but whitespace (parquet: any bytes)."""
    with open(path, "rb") as f:
        if path.suffix.lower() == ".parquet":
            return bool(f.read(1))
        while block := f.read(chunk):
            if block.strip():
                return True
    return False


def files_fingerprint(files: list[Path]) -> list[list]:
    """What decides whether cached token ids are still valid: every file's path, size and mtime."""
    out = []
    for p in files:
        st = p.stat()
        out.append([str(p), st.st_size, st.st_mtime_ns])
    return out


def source_key(d: DataConfig, extra: dict) -> str:
    """A short hash of everything that shapes the documents of a source."""
    what = {"source": d.source, "name": d.name, "subset": d.subset, "split": d.split, "field": d.text_field,
            "template": d.template, "max_docs": d.max_docs, **extra}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:20]


def describe(d: DataConfig) -> str:
    if d.source == "local":
        return f"local files at {d.name}"
    parts = [p for p in (d.subset, d.split) if p]
    return f"hub dataset {d.name}" + (f" ({', '.join(parts)})" if parts else "")


def load_local(d: DataConfig):
    builder, files = local_files(d.name)
    import datasets

    kwargs = {"sample_by": "paragraph"} if builder == "text" else {}
    try:
        return datasets.load_dataset(builder, data_files=[str(p) for p in files], split="train", streaming=True, **kwargs)
    except Exception as exc:  # datasets raises many types for unreadable files
        raise DataError(f"local files at {d.name}: cannot read them as {builder} ({_first_line(exc)}); fix or remove the file") from None


def load_hub(d: DataConfig, streaming: bool):
    import datasets

    try:
        return datasets.load_dataset(d.name, d.subset or None, split=d.split, streaming=streaming)
    except Exception as exc:  # offline, unknown name, bad subset or split: all surface here
        raise DataError(
            f"hub dataset {d.name} (subset {d.subset or '-'}, split {d.split}, field {d.template or d.text_field!r}) "
            f"could not be loaded: {_first_line(exc)}; without network, download it elsewhere or point at local files "
            f"with {LOCAL_FIX}"
        ) from None


def open_rows(d: DataConfig, streaming: bool = True):
    """Rows of the source: a `datasets` Dataset or IterableDataset."""
    return (load_local(d) if d.source == "local" else load_hub(d, streaming)), describe(d)


def text_of(d: DataConfig, where: str):
    """A function row -> text (or None to skip), checking the field names on the first row."""
    checked = [False]
    if d.template:
        names = [f for _, f, _, _ in string.Formatter().parse(d.template) if f]

        def get(row):
            if not checked[0]:
                missing = [n for n in names if n not in row]
                if missing:
                    raise DataError(f"{where}: rows have no field {missing[0]!r} used in data.template (fields: "
                                    f"{', '.join(row)}); fix data.template, e.g. data.template='{{{next(iter(row), 'text')}}}'")
                checked[0] = True
            return d.template.format(**{n: "" if row[n] is None else row[n] for n in names})
    else:
        field = d.text_field

        def get(row):
            if not checked[0]:
                if field not in row:
                    raise DataError(f"{where}: rows have no field {field!r} (fields: {', '.join(row)}); "
                                    f"set data.text_field to one of them or data.template='{{a}}\\n{{b}}'")
                checked[0] = True
            value = row[field]
            return None if value is None else str(value)

    return get


def iter_texts(rows, d: DataConfig, where: str, limit: int = 0):
    """Non-empty document texts of `rows`, at most `limit` (or data.max_docs) of them."""
    get = text_of(d, where)
    cap = min(x for x in (limit, d.max_docs) if x) if (limit or d.max_docs) else 0
    n = 0
    for row in rows:
        text = get(row)
        if not text or not text.strip():
            continue
        yield text
        n += 1
        if cap and n >= cap:
            return


def empty_error(where: str, d: DataConfig) -> DataError:
    return DataError(f"{where}: no documents with text in field {d.template or d.text_field!r}; "
                     "check data.split, data.text_field / data.template, and that the files are not empty")
