"""Train, save and load tuned lenses (recurlab.engine.lens.TunedLens).

    train, heldout, where = lens_sequences(opened, data=None)         # the run's own task / text data
    train, heldout, where = lens_sequences(opened, data="notes.txt")  # one sequence per non-empty line
    lens, report = train_tuned_lens(opened.model, train, heldout, iterations=16, steps=300,
                                    on_step=lambda step, loss: ...)
    report["kl"]["tuned"][0]       # held-out KL(p_r || q_1) of the tuned lens at iteration 1
    paths = save_tuned_lens(record_root(opened), lens, report, name=None)  # lenses/NAME.{json,safetensors}
    lens = load_tuned_lens(opened)                                     # the newest that fits, or None

Training runs the model's public steps without gradient (embed, init_state, r core steps, decode
for the target p_r) and fits only the translators: the loss is the sum over iterations of the mean
KL(p_r || q_i) over the real (unpadded) positions of a batch. The held-out report has, per
iteration, the mean KL of the coda, logit and tuned lenses over every held-out position.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from recurlab.data import TaskData, make_data
from recurlab.engine.lens import Lens, TunedLens, kl_to_final
from recurlab.engine.records import default_name, read_records, record_root, write_new
from recurlab.errors import InferenceError

LENS_VERSION = 1
MIN_LINES = 2


def lens_sequences(opened, data: str | None = None, n_train: int = 512, n_heldout: int = 64,
                   seed: int = 0) -> tuple[list[list[int]], list[list[int]], str]:
    """(training sequences, held-out sequences, a description of where they came from)."""
    block = int(opened.cfg.model.block_size)
    if data is not None:
        return _file_sequences(opened, Path(data), block)
    if opened.run is None:
        raise InferenceError("a model folder has no training data of its own: give --data FILE (a text file, "
                             "one sequence per line)")
    cfg = opened.cfg
    if cfg.data.source == "task":
        task = TaskData(cfg)
        rng = random.Random(seed)
        # training-distribution examples (steps past the run's own, so different draws)
        exs = task.train_examples(10_000_000 + seed, n_train)
        train = [opened.engine.encode(ex.prompt + ex.answer) for ex in exs]
        held = [ex for d in task.eval_levels for ex in task.heldout(d)]
        rng.shuffle(held)
        heldout = [opened.engine.encode(ex.prompt + ex.answer) for ex in held[:n_heldout]]
        return train, heldout, f"task {cfg.data.task} levels {','.join(map(str, task.eval_levels))} (held-out: its held-out split)"
    text = make_data(cfg, opened.run)
    idx, _ = text.train_batch(10_000_000 + seed, n_train)
    train = [row.tolist() for row in idx]
    heldout = []
    for _, _, vidx, _ in text.eval_batches():
        heldout += [row.tolist() for row in vidx]
        if len(heldout) >= n_heldout:
            break
    return train, heldout[:n_heldout], f"the run's text data ({text.where})"


def _file_sequences(opened, path: Path, block: int):
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InferenceError(f"cannot read --data {path}: {getattr(exc, 'strerror', None) or exc}; give a UTF-8 text file") from None
    if len(lines) < MIN_LINES:
        raise InferenceError(f"--data {path} has {len(lines)} non-empty lines; a tuned lens needs at least "
                             f"{MIN_LINES} (one sequence per line, every 10th held out)")
    seqs = [opened.engine.encode(ln)[:block] for ln in lines]
    seqs = [s for s in seqs if s]
    heldout = seqs[::10]
    train = [s for k, s in enumerate(seqs) if k % 10] or heldout
    return train, heldout, f"text file {path.name} ({len(lines)} lines, every 10th held out)"


def _batch(seqs: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (B, T) and the mask of real positions (padding after a causal sequence
    never reaches its real positions)."""
    width = max(len(s) for s in seqs)
    idx = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.bool)
    for b, s in enumerate(seqs):
        idx[b, :len(s)] = torch.tensor(s)
        mask[b, :len(s)] = True
    return idx.to(device), mask.to(device)


@torch.no_grad()
def _states(model, idx: torch.Tensor, iterations: int, generator: torch.Generator):
    """(rope, states (r, B, T, d), final logits (B, T, V)) through the public steps."""
    rope = model.rope(torch.arange(idx.shape[1], device=idx.device))
    e = model.embed(idx, rope)
    s = model.init_state(e, None, generator)
    states = []
    for i in range(iterations):
        s = model.core_step(s, e, rope, None, i)
        states.append(s)
    return rope, torch.stack(states), model.decode(s, rope)


def _lens_logits(model, lens, s: torch.Tensor, rope, iteration: int) -> torch.Tensor:
    """One iteration's (B, T, d) states through a lens."""
    if isinstance(lens, TunedLens):
        return model.decode(lens.translate(s, iteration), rope, coda=lens.place == "coda")
    return model.decode(s, rope, coda=lens.name == "coda")


def heldout_kl(model, lenses: list, seqs: list[list[int]], iterations: int, batch_size: int = 32, seed: int = 0) -> dict:
    """{lens name: [mean KL(p_r || q_i) for i = 1..iterations]} over every real held-out position."""
    device = next(model.parameters()).device
    sums = {lens.name: torch.zeros(iterations, dtype=torch.float64) for lens in lenses}
    count = 0
    with torch.no_grad():
        for b in range(0, len(seqs), batch_size):
            idx, mask = _batch(seqs[b:b + batch_size], device)
            gen = torch.Generator(device=device).manual_seed(seed + b)
            rope, states, final = _states(model, idx, iterations, gen)
            for lens in lenses:
                for i in range(iterations):
                    kl = kl_to_final(_lens_logits(model, lens, states[i], rope, i + 1), final)
                    sums[lens.name][i] += float(kl[mask].double().sum())
            count += int(mask.sum())
    return {name: [float(f"{v / max(count, 1):.6g}") for v in s.tolist()] for name, s in sums.items()}


def train_tuned_lens(model, train: list[list[int]], heldout: list[list[int]], iterations: int, *, steps: int = 300,
                     batch_size: int = 32, lr: float = 1e-3, place: str = "coda", seed: int = 0,
                     on_step=None, cancel=None) -> tuple[TunedLens, dict]:
    """Fit one translator per iteration; `on_step(step, loss)` after each optimizer step; a set
    `cancel` (threading.Event) stops early and keeps what was fitted."""
    if steps < 1:
        raise InferenceError(f"--steps must be >= 1, got {steps}")
    if not train or not heldout:
        raise InferenceError("a tuned lens needs training and held-out sequences; the data gave none")
    device = next(model.parameters()).device
    lens = TunedLens(model.cfg.n_embd, iterations, place).to(device)
    opt = torch.optim.Adam(lens.parameters(), lr=lr)
    rng = random.Random(seed)
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:  # gradients flow through the coda to the translators, never into the model
        p.requires_grad_(False)
    done, loss_value = 0, float("nan")
    try:
        for step in range(1, steps + 1):
            if cancel is not None and cancel.is_set():
                break
            idx, mask = _batch(rng.sample(train, min(batch_size, len(train))), device)
            gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + step)
            rope, states, final = _states(model, idx, iterations, gen)
            loss = sum(kl_to_final(_lens_logits(model, lens, states[i], rope, i + 1), final)[mask].mean()
                       for i in range(iterations))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done, loss_value = step, loss.item() / iterations
            if on_step is not None:
                on_step(step, loss_value)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    lens.eval()
    kl = heldout_kl(model, [Lens("coda"), Lens("logit"), lens], heldout, iterations, seed=seed)
    report = {
        "kind": "tuned_lens", "version": LENS_VERSION, "iterations": iterations, "place": place, "d": model.cfg.n_embd,
        "vocab_size": model.cfg.vocab_size, "steps": done, "batch_size": batch_size, "lr": lr, "seed": seed,
        "train_sequences": len(train), "heldout_sequences": len(heldout), "final_train_kl": loss_value,
        "kl_direction": "KL(p_r || q_i), nats, mean over held-out positions", "kl": kl,
    }
    return lens, report


def save_tuned_lens(root: Path, lens: TunedLens, report: dict, name: str | None = None, source: dict | None = None) -> dict:
    """root/lenses/NAME.json (the report) and NAME.safetensors (the translators), never replacing a file."""
    from safetensors.torch import save  # the checkpoint format of the project

    record = {**report, "source": _resolved(source or {})}
    blob = save({"weight": lens.weight.detach().cpu().contiguous(), "bias": lens.bias.detach().cpu().contiguous()},
                metadata={"format": "pt", "place": lens.place})
    stem = name or default_name("tuned")
    paths = write_new(Path(root) / "lenses", stem,
                      {"safetensors": blob, "json": (json.dumps(record, indent=1) + "\n").encode()})
    lens.meta = {**record, "name": paths["json"].stem}  # a record's name is its file stem
    return paths


def _resolved(source: dict) -> dict:
    if "model" in source:
        return {**source, "model": str(Path(source["model"]).resolve())}
    return dict(source)


def load_tuned_lens(opened, name: str | None = None) -> TunedLens | None:
    """The newest saved tuned lens that fits the opened model (or the one called `name`)."""
    from safetensors.torch import load  # the checkpoint format of the project

    folder = record_root(opened) / "lenses"
    want = _resolved(opened.source)
    for rec, path in reversed(read_records(folder, "tuned_lens")):
        if name is not None and path.stem != name:
            continue
        if rec.get("d") != opened.cfg.model.n_embd or rec.get("vocab_size") != opened.model.cfg.vocab_size:
            continue
        if opened.run is None and rec.get("source", {}).get("model") != want.get("model"):
            continue
        st = path.with_suffix(".safetensors")
        try:
            tensors = load(st.read_bytes())
        except (OSError, ValueError, RuntimeError):
            continue
        lens = TunedLens(rec["d"], rec["iterations"], rec.get("place", "coda"))
        lens.weight.data.copy_(tensors["weight"])
        lens.bias.data.copy_(tensors["bias"])
        lens.meta = {**rec, "name": path.stem}
        return lens.to(next(opened.model.parameters()).device).eval()
    if name is not None:
        raise InferenceError(f"no tuned lens {name!r} for this model in {folder}")
    return None
