"""The inference engine: cached generation, adaptive exits, KV-cache sharing, continuous chain of
thought, self-speculative decoding and latent traces. The CLI and the TUI both use this API; it
drives only the model's public steps (rope, embed, init_state, core_step, decode).

Importing this package imports torch: a TUI should import it inside the worker or screen that
needs the model, not at start-up.

    from recurlab.engine import Engine, GenerateOptions, open_model, latent_trace, save_trace

    opened = open_model("runs/add-1", step=None, device="cpu")   # or a Huginn folder
    engine = opened.engine            # = Engine(opened.model, opened.tokenizer, device="cpu")

    # blocking, one or several prompts (several are left-padded into one batch)
    res = engine.generate("12345678+87654321=", GenerateOptions(r=16, exit="kl:5e-4"))
    res.text, res.token_ids, res.iterations[0], res.tokens_per_s, res.mean_iterations, res.cache_bytes

    # streaming (a Textual worker iterates this in a thread; stop early by breaking out)
    stream = engine.stream("12+34=", GenerateOptions(r=8, max_new_tokens=32))
    for ev in stream:                       # TokenEvent
        ev.row, ev.index, ev.token_id, ev.text, ev.iterations
    stream.result                           # GenerationResult, set once the iterator is exhausted
    # or: engine.generate(prompts, opts, on_token=callback)   callback(TokenEvent) per token

    trace = latent_trace(model, tok, "12+34=", r=16, criterion="kl:5e-4", starts=4, seed=0)
    path = save_trace(run, "my-trace", trace)   # run.traces_dir / "my-trace.json"; again: my-trace-2.json

Public API (stable):

    open_model(run_dir_or_model_folder, step=None, device="auto", dtype=None) -> OpenedModel
        .model .tokenizer .cfg .device .label .run .checkpoint .step .source .r_mean .engine
        (the one door to a model and its one shape; each model family, run directories included, is
        one entry of recurlab.engine.loading.FAMILIES: it claims its folders and opens them)

    GenerateOptions(r=16, max_new_tokens=64, temperature=0.0, top_k=0, top_p=1.0,
                    stop_ids=None,          # None: (tokenizer.eos_id,)
                    init_scale=None,        # None: the model's config; 0: deterministic zero start
                    seed=0,
                    exit=None,              # None | "kl:5e-4" | ExitCriterion
                    kv_budget=None,         # None: one cache slot per iteration; n: iteration i -> slot i mod n
                    continuous=False,       # warm-start each token from the previous token's final state
                    speculative=None,       # None | "draft=4,lookahead=8" | SpeculativeConfig
                    sampler=None,           # None | "sequential" | "parallel[:inner=4,freeze=latent:0.03,...]"
                                            #   (recurlab.options.parallel.ParallelConfig)
                    batching="auto",        # several prompts: "depth" (each token exits at its own iteration,
                                            #   recurlab.engine.depth_batch), "padded", or auto: depth under an exit rule
                    batch=None)             # rows decoded together (None: all prompts)
        .validate() raises InferenceError with one line (r < 1, top_p outside (0, 1], ...)

    ExitCriterion(kind="kl", threshold=5e-4, min_iterations=1, max_iterations=None, check_every=1)
        kinds: kl, entropy, latent, argmax (threshold = n checks), cosine; threshold 0 disables it.
    parse_exit("kl:5e-4" | "argmax:3" | "cosine:0.999,min=2,max=32,every=2") -> ExitCriterion
    SpeculativeConfig(draft=4, lookahead=8);  parse_speculative("draft=4,lookahead=8")

    Engine(model, tokenizer, device="cpu")
        .generate(prompt_or_prompts, options=None, on_token=None, on_step=None) -> GenerationResult
        .stream(prompt_or_prompts, options=None, on_step=None) -> Stream  (iterable of TokenEvent; .result after)
        on_step(StepEvent) follows the parallel sampler's outer steps (recurlab.engine.parallel_sampler); its
        result has .parallel: outer_steps, core_passes, passes_per_token, rows[b].frozen_at / .wavefront;
        recurlab.engine.wavefronts saves and loads wavefronts (RUN/wavefronts/*.json, never overwritten).
        .encode(prompt) -> list[int]     (wrapped in the model's specials, recurlab.text.specials: <bos> for
                                          task models, a folder's own (Llama: <s>); raises VocabError /
                                          InferenceError for bad prompts)

    TokenEvent(row: int, index: int, token_id: int, text: str, iterations: int)
        text is the decoded piece this token adds to the row's text.

    GenerationResult: prompts, prompt_ids, generated_ids (per row), texts (per row),
        iterations (per row, per generated token), stop_reasons ("stop" | "length"),
        n_tokens, prefill_seconds, decode_seconds, seconds, tokens_per_s, mean_iterations,
        cache_bytes, acceptance_rate (None unless speculative), speculative (dict or None: draft,
        lookahead, rounds, drafted, accepted, acceptance_rate, serial_iteration_speedup),
        options (dict), depth (depth batching: rows, core_passes, token_iterations, rows_per_pass; else None);
        properties text, token_ids (row 0); .to_dict() -> JSON-able dict.
    Stream.stop_row(row): generate no more for that prompt (depth batching frees its row for the next).

    run_sweep(opened, rs=None, on_row=None, cancel=None, difficulties=None) -> SweepResult
        held-out loss and accuracy (or bits per byte) per r of an opened run checkpoint, saved under the
        run's sweeps/ (recurlab.engine.sweep); rs=None: powers of two up to 4 x r_mean
    evaluate_heldout(model, data, rs, device, autocast=None, on_row=None, cancel=None) -> rows
        the held-out loop that sweeps and training share (recurlab.heldout)
    score_continuations(model, [(ctx_ids, cont_ids), ...], r, exit=None, kv_budget=None, init_scale=None, seed=0)
        -> [ContinuationScore(logprob, greedy, iterations)]   (recurlab.engine.scoring; lm-eval's loglikelihood)

    latent_trace(model, tokenizer, prompt, r=16, *, criterion="kl:5e-4", starts=0,
                 init_scale=None, seed=0, generate=None) -> dict   (schema in recurlab.engine.trace)
    save_trace(run, name, trace) -> Path
    KVCache(...)  the cache the model's attention calls (recurlab.engine.cache; the model's side of it
        is the protocol recurlab.model.AttentionCache).

Options and their defaults (GenerateOptions, the exit presets, the device default) live in the
torch-free recurlab.options, so that the CLI's help and the TUI show them before torch loads.
Fast decoding is GenerateOptions(compile=True) (recurlab.engine.compiled); the static-shape decoder
that benchmarks time against it (CUDA graphs) is recurlab.engine.static_decode, not part of this API.

All user mistakes raise recurlab.errors.InferenceError or VocabError with a one-line message.
"""

from recurlab.engine.cache import KVCache
from recurlab.engine.engine import Engine, Stream
from recurlab.engine.generation import GenerationResult, TokenEvent
from recurlab.engine.loading import OpenedModel, open_model
from recurlab.engine.sweep import run_sweep
from recurlab.engine.trace import TRACE_VERSION, latent_trace, save_trace
from recurlab.heldout import evaluate_heldout
from recurlab.options.generate import ExitCriterion, GenerateOptions, SpeculativeConfig, parse_exit, parse_speculative

__all__ = [
    "Engine", "ExitCriterion", "OpenedModel", "open_model", "GenerateOptions", "GenerationResult", "KVCache", "SpeculativeConfig", "Stream",
    "TRACE_VERSION", "TokenEvent", "evaluate_heldout", "latent_trace", "run_sweep", "parse_exit", "parse_speculative", "save_trace",
]
