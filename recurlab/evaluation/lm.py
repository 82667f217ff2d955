"""The lm-evaluation-harness model backend for recurlab models (`--model recurlab`).

    python -m recurlab.evaluation.lm_eval_cli --model recurlab \\
        --model_args run=runs/cpu-demo,r=8,exit=kl:5e-4 --tasks my_task --include_path tasks/

    lm = RecurlabLM(run="runs/cpu-demo", r=8)              # or model="models/huginn-0125"
    lm = RecurlabLM.from_source(open_source(run=...), r=4)   # reuse an OpenedModel for several r
    lm.r = 16; lm.reset_records(); simple_evaluate(model=lm, tasks=[...])
    lm.records["my_task"]["scored"]                          # core iterations per scored token

Options (also as `--model_args key=value,...`): run or model, checkpoint, r, exit, kv_budget,
init_scale, device, dtype, batch_size, batching, seed, runs_dir. Every request goes through the engine:
`loglikelihood` and `loglikelihood_rolling` through `score_continuations` (one cached pass at r,
or teacher-forced columns with per-token exit), `generate_until` through `Engine.stream` (KV cache,
left padding, exit, KV budget), longest first. At fixed r, requests run in left-padded batches of
`batch_size`. Under an exit rule they go through depth batching (recurlab.engine.depth_batch) in a
pool of `batch_size` rows: each token exits at its own iteration and a finished request frees its row
for the next; `batching=padded` keeps left-padded batches that wait for their slowest token.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable

import torch
from lm_eval.api.model import LM

from recurlab.engine import Engine, GenerateOptions, OpenedModel, open_model
from recurlab.engine.scoring import score_continuations
from recurlab.errors import InferenceError
from recurlab.options.generate import BATCHINGS, parse_exit
from recurlab.rundir import RunDir, resolve_run
from recurlab.tasks import VocabError
from recurlab.text.specials import sequence_specials

SCORE_CHUNK = 16  # under depth batching, each call takes this many pools' worth of requests (progress, cancel)

DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}


class EvalCancelled(Exception):
    """Raised inside a request method when the caller's cancel event is set."""


def open_source(run=None, model=None, checkpoint=None, device="cpu", dtype=None, runs_dir="runs") -> OpenedModel:
    """Open a run (name, path or RunDir; latest or given checkpoint) or a model folder through the
    engine's door to a model, on `device`, optionally cast to `dtype`."""
    if bool(run) == bool(model):
        raise InferenceError("give either a run (run=...) or a model folder (model=...), not both or neither")
    torch_dtype = _dtype(dtype)
    if run:
        target = run if isinstance(run, RunDir) else resolve_run(str(run), runs_dir)
    else:
        target = model
    step = None if checkpoint in (None, "") else _int(checkpoint, "checkpoint", minimum=0)
    return open_model(target, step=step, device=device, dtype=torch_dtype)  # a folder's weights load in it


def _dtype(name):
    if name in (None, "", "auto"):
        return None
    if str(name) not in DTYPES:
        raise InferenceError(f"dtype {name!r}: use float32, bfloat16 or float16")
    return getattr(torch, DTYPES[str(name)])


def _int(value, what: str, minimum: int = 1) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise InferenceError(f"{what} must be a whole number, got {value!r}") from None
    if n < minimum:
        raise InferenceError(f"{what} must be >= {minimum}, got {n}")
    return n


class RecurlabLM(LM):
    def __init__(self, run=None, model=None, checkpoint=None, r=None, exit=None, kv_budget=None, init_scale=None,
                 device="cpu", dtype=None, batch_size=8, seed=0, runs_dir="runs", source: OpenedModel | None = None,
                 max_batch_size=None, batching="auto", **unknown):
        super().__init__()
        if unknown:
            raise InferenceError(f"unknown recurlab model option(s) {', '.join(sorted(unknown))}: use run, model, "
                                 "checkpoint, r, exit, kv_budget, init_scale, device, dtype, batch_size, batching, seed")
        if batching not in BATCHINGS:
            raise InferenceError(f"batching must be one of {', '.join(BATCHINGS)}, got {batching!r}")
        self.batching = batching

        device = str(device or "cpu")
        if source is None and device.startswith("cuda"):
            if not torch.cuda.is_available():  # lm-eval's CLI asks for cuda:0 unless told otherwise
                logging.getLogger(__name__).warning("CUDA is not available here; evaluating on the CPU")
                device = "cpu"
        self.source = source or open_source(run, model, checkpoint, device, dtype, runs_dir)
        self._device = next(self.source.model.parameters()).device
        self.r = _int(r if r not in (None, "") else self.source.r_mean, "r")
        self.exit = parse_exit(exit or None)
        self.kv_budget = _int(kv_budget, "kv_budget") if kv_budget not in (None, "") else None
        self.init_scale = float(init_scale) if init_scale not in (None, "") else None
        if self.init_scale is not None and not self.init_scale >= 0:
            raise InferenceError(f"init_scale must be >= 0 (0 = zero start), got {init_scale}")
        # lm-eval passes "auto" for automatic batch sizes; a fixed default is safe on every device
        self.batch_size = 8 if str(batch_size).startswith("auto") else _int(batch_size, "batch_size")
        self.seed = int(seed)
        self.records: dict[str, dict[str, list[int]]] = defaultdict(lambda: {"scored": [], "generated": []})
        self.on_progress: Callable[[int, int, str], None] | None = None
        self.cancel: threading.Event | None = None
        self.engine = Engine(self.source.model, self.source.tokenizer, device=str(self._device))

    @classmethod
    def from_source(cls, source: OpenedModel, **options) -> "RecurlabLM":
        return cls(source=source, **options)

    # ---- lm-eval's interface ------------------------------------------------------------
    @property
    def tokenizer_name(self) -> str:
        return f"recurlab:{self.source.label}"

    @property
    def max_length(self) -> int:
        return int(self.source.model.cfg.block_size)

    def reset_records(self) -> None:
        self.records.clear()

    def records_for(self, tasks: list[str]) -> list[int]:
        """Iterations of every scored and generated token of these tasks since the last reset."""
        return [it for t in tasks if t in self.records for kind in ("scored", "generated") for it in self.records[t][kind]]

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        items = []
        for req in requests:
            context, continuation = req.args[0], req.args[1]
            ctx, cont = self._encode_pair(context, continuation, req.task_name)
            items.append((req.task_name, ctx, cont))
        scores = self._score(items, "loglikelihood")
        out = [(s.logprob, s.greedy) for s in scores]
        for req, res in zip(requests, out):
            self.cache_hook.add_partial("loglikelihood", req.args, res)
        return out

    def loglikelihood_rolling(self, requests) -> list[float]:
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        items, owner = [], []
        for i, req in enumerate(requests):
            ids = self._encode(req.args[0], req.task_name)
            windows = get_rolling_token_windows(token_list=ids, prefix_token=self._prefix_id, max_seq_len=self.max_length,
                                                context_len=1)
            for window in map(make_disjoint_window, windows):
                items.append((req.task_name, list(window[0]), list(window[1])))
                owner.append(i)
        totals = [0.0] * len(requests)
        for i, s in zip(owner, self._score(items, "loglikelihood_rolling")):
            totals[i] += s.logprob
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    def generate_until(self, requests) -> list[str]:
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, req in enumerate(requests):
            self._encode(req.args[0], req.task_name)  # unencodable prompts fail here, before any pass
            groups[_kwargs_key(req.args[1])].append(i)
        out: list[str | None] = [None] * len(requests)
        done = 0
        self._progress(0, len(requests), "generate_until")
        for key, idxs in groups.items():
            kw = dict(key)
            until = kw.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            sample = bool(kw.get("do_sample", False)) and float(kw.get("temperature", 1.0) or 0) > 0
            opts = GenerateOptions(
                r=self.r, max_new_tokens=int(kw.get("max_gen_toks", 256)),
                temperature=float(kw.get("temperature", 1.0)) if sample else 0.0,
                top_k=int(kw.get("top_k", 0) or 0), top_p=float(kw.get("top_p", 1.0) or 1.0),
                init_scale=self.init_scale, seed=self.seed, exit=self.exit, kv_budget=self.kv_budget,
                batching=self.batching, batch=self.batch_size,
            ).validate()
            idxs.sort(key=lambda i: -len(requests[i].args[0]))
            # depth batching: the whole group through one pool of batch_size rows, a chunk at a time
            step = self.batch_size * SCORE_CHUNK if opts.depth_batched(len(idxs)) else self.batch_size
            for b in range(0, len(idxs), step):
                self._check_cancel()
                batch = idxs[b:b + step]
                texts = self._generate_batch([requests[i].args[0] for i in batch], until, opts,
                                             [requests[i].task_name for i in batch])
                for i, text in zip(batch, texts):
                    out[i] = text
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
                done += len(batch)
                self._progress(done, len(requests), "generate_until")
        return out

    # ---- internals ---------------------------------------------------------------------------
    @property
    def _prefix_id(self) -> int:
        tok = self.source.tokenizer
        return tok.bos_id if getattr(tok, "bos_id", None) is not None else tok.eos_id

    def _encode(self, text: str, task: str | None) -> list[int]:
        try:
            return list(self.source.tokenizer.encode(text))
        except VocabError as exc:
            raise VocabError(f"task {task}: {exc}") from None

    def _encode_pair(self, context: str, continuation: str, task: str | None) -> tuple[list[int], list[int]]:
        """Context ids (prefixed with <bos> where the model was trained with it) and continuation ids.
        Trailing spaces of the context belong to the continuation, and the pair is encoded whole so
        that a tokenizer merging across the boundary scores the tokens it would really produce."""
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        whole = self._encode(context + continuation, task)
        ctx = self._encode(context, task) if context else []
        cont = whole[len(ctx):]
        # the model's sequence start goes before the context only, never between context and continuation
        # (lm-eval's HF backend does the same); an empty context is scored after the prefix token alone
        start, _ = sequence_specials(self.source.tokenizer)
        if start:
            ctx = [*start, *ctx]
        elif not ctx:
            ctx = [self._prefix_id]
        if not cont:
            raise InferenceError(f"task {task}: the continuation {continuation!r} encodes to no tokens")
        over = len(ctx) + len(cont) - 1 - self.max_length
        if over > 0:  # keep the end of the context, as much as the model's context length allows
            if over >= len(ctx):
                raise InferenceError(f"task {task}: a continuation of {len(cont)} tokens does not fit the model's "
                                     f"context of {self.max_length}")
            ctx = ctx[over:]
        return ctx, cont

    def _score(self, items: list[tuple], kind: str):
        order = sorted(range(len(items)), key=lambda i: -(len(items[i][1]) + len(items[i][2])))
        results = [None] * len(items)
        self._progress(0, len(items), kind)
        pad = getattr(self.source.tokenizer, "pad_id", 0) or 0
        depth = self.exit is not None and self.exit.enabled and self.batching != "padded"
        step = self.batch_size * SCORE_CHUNK if depth else self.batch_size
        for b in range(0, len(order), step):
            self._check_cancel()
            batch = order[b:b + step]
            scores = score_continuations(self.source.model, [(items[i][1], items[i][2]) for i in batch], self.r,
                                         exit=self.exit, kv_budget=self.kv_budget, init_scale=self.init_scale,
                                         seed=self.seed, pad_id=pad, batching=self.batching, batch=self.batch_size)
            for i, s in zip(batch, scores):
                results[i] = s
                if self.exit is not None and self.exit.enabled:
                    self.records[items[i][0]]["scored"].extend(s.iterations)
            self._progress(min(b + len(batch), len(items)), len(items), kind)
        return results

    def _generate_batch(self, prompts: list[str], until: list[str], opts, tasks: list[str]) -> list[str]:
        stream = self.engine.stream(prompts, opts)
        texts = ["" for _ in prompts]
        pieces: list[list[tuple[int, int]]] = [[] for _ in prompts]  # (start offset in text, iterations)
        stopped = [False] * len(prompts)
        for ev in stream:
            if stopped[ev.row]:
                continue
            pieces[ev.row].append((len(texts[ev.row]), ev.iterations))
            texts[ev.row] += ev.text
            if any(s and s in texts[ev.row] for s in until):
                stopped[ev.row] = True
                stream.stop_row(ev.row)  # under depth batching its row takes the next request
                if all(stopped):
                    break  # every row reached a stop sequence: no need to run the batch further
        out = []
        for row, text in enumerate(texts):
            cut = min([text.find(s) for s in until if s and s in text], default=len(text))
            out.append(text[:cut])
            if self.exit is not None and self.exit.enabled:
                self.records[tasks[row]]["generated"].extend(it for start, it in pieces[row] if start < cut)
        return out

    def _progress(self, done: int, total: int, kind: str) -> None:
        if self.on_progress is not None:
            self.on_progress(done, total, kind)

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise EvalCancelled("evaluation cancelled")


def _kwargs_key(kwargs) -> tuple:
    """A hashable key for one generation-kwargs dict (lists become tuples)."""
    items = []
    for k, v in sorted((kwargs or {}).items()):
        items.append((k, tuple(v) if isinstance(v, list) else v))
    return tuple(items)
