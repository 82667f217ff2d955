"""The derived series cache beside a run: `metrics.jsonl` parsed into columns, so that attaching
to a run with a million rows again does not parse a million JSON lines again.

    cache = SeriesCache(run.metrics_path)        # the file is run/metrics.jsonl.derived.npz
    hit = cache.load()                           # (RunSeries, offset) or None
    if hit: series, offset = hit                 # then read the log from `offset` on, as usual
    cache.save(series.columns(), series.rows, offset)   # after reading the log up to `offset`

The file is derived and disposable. Readers (the TUI) write it, the worker never does, and
deleting it only costs one full parse. It covers the log's first `offset` bytes (always the end of
a complete line, so a torn last line is never in it) and is used only while the log still starts
with exactly those bytes as far as a reader can tell cheaply:
* the same file (device and inode: a resume replaces the log atomically, which changes the inode);
* at least `offset` bytes long (a truncated log is shorter);
* the same CRC32 over SAMPLES windows of the covered bytes, always including the first and the
  last 64 KiB before `offset` (an in-place rewrite of an append-only log changes those);
* a readable file of this FORMAT with aligned columns.
Anything else and the log is parsed from the start and the cache rewritten. It holds float64
columns exactly as RunSeries keeps them (no rounding), so curves from the cache equal curves from
the log. It is written to a temporary file and renamed; it is not fsynced (a torn cache fails the
checks above and is rebuilt); a read-only run directory simply gets no cache.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from recurlab.runlog.series import RunSeries

SUFFIX = ".derived.npz"
FORMAT = 2  # 2: train columns of MFU and the x axes (tokens, r_no_grad, r_grad, seq_len, step_time), distill_kl
WINDOW = 64 * 1024
SAMPLES = 16


def cache_path(metrics_path: Path) -> Path:
    return Path(metrics_path).with_name(Path(metrics_path).name + SUFFIX)


def _fingerprint(f, offset: int) -> int:
    """CRC32 over SAMPLES windows of the first `offset` bytes: first, last and evenly between."""
    if offset <= WINDOW * SAMPLES:
        starts = [0]
        sizes = [offset]
    else:
        starts = [round(i * (offset - WINDOW) / (SAMPLES - 1)) for i in range(SAMPLES)]
        sizes = [WINDOW] * SAMPLES
    crc = 0
    for start, size in zip(starts, sizes):
        f.seek(start)
        data = f.read(size)
        if len(data) != size:
            return -1
        crc = zlib.crc32(data, crc)
    return crc


class SeriesCache:
    def __init__(self, metrics_path: Path):
        self.log = Path(metrics_path)
        self.path = cache_path(self.log)

    def load(self) -> tuple[RunSeries, int] | None:
        """The cached series and the log offset it covers, if the checks in the module docstring pass."""
        try:
            st = os.stat(self.log)
            with np.load(self.path, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                if meta.get("format") != FORMAT or [meta.get("dev"), meta.get("ino")] != [st.st_dev, st.st_ino]:
                    return None
                offset = int(meta["offset"])
                if offset > st.st_size:
                    return None
                with open(self.log, "rb") as f:
                    if _fingerprint(f, offset) != meta["crc"]:
                        return None
                columns = {name: z[name] for name in z.files if name != "meta"}
        except (OSError, ValueError, KeyError, TypeError, EOFError, zlib.error, zipfile.BadZipFile):
            return None
        lengths = {}
        for name, values in columns.items():
            lengths.setdefault(name.rsplit("/", 1)[0], set()).add(len(values))
        if any(len(n) != 1 for n in lengths.values()):
            return None
        return RunSeries.from_columns(columns, int(meta["rows"])), offset

    def save(self, columns: dict[str, np.ndarray], rows: int, offset: int) -> bool:
        """Write the cache of the log's first `offset` bytes (`columns` as RunSeries.columns() gives
        them); False if it could not be written."""
        try:
            st = os.stat(self.log)
            with open(self.log, "rb") as f:
                crc = _fingerprint(f, offset)
            if crc < 0:
                return False
            meta = {"format": FORMAT, "source": self.log.name, "offset": offset, "dev": st.st_dev, "ino": st.st_ino,
                    "crc": crc, "rows": rows, "note": "derived from metrics.jsonl; safe to delete"}
            arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **columns}
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    np.savez(f, **arrays)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            return False
        return True
