"""Benchmark evaluation per r on lm-evaluation-harness: a model backend, task resolution, runs
that save to the run's evals/ folder, and the embedded tasks exported as lm-eval tasks.

    recurlab eval cpu-demo --tasks embedded --r 1,4,8,32 --exit kl:5e-4
    recurlab eval --model models/huginn-0125 --tasks gsm8k,arc_easy --r 4,8,16,32 --device cuda
    python -m recurlab.evaluation.lm_eval_cli --model recurlab --model_args run=runs/cpu-demo,r=8 --tasks ...

Modules: `lm` (the `LM` backend, imports lm-eval), `lm_eval_cli` (lm-eval's CLI with the backend
registered), `tasks` (task names, YAML files and folders, the embedded export), `runner` (one
lm-eval run per r, the model built once), `results` (rows, tables, saved files; no torch, no
lm-eval). Importing this package imports neither torch nor lm-eval.
"""
