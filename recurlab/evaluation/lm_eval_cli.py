"""lm-eval's own command line with `--model recurlab` available.

    python -m recurlab.evaluation.lm_eval_cli --model recurlab \
        --model_args run=runs/cpu-demo,r=8,exit=kl:5e-4 --tasks my_task --include_path my_tasks/ --limit 50
    python -m recurlab.evaluation.lm_eval_cli run --model recurlab --model_args model=models/huginn-0125,r=32 \
        --tasks arc_easy --device cuda --batch_size 8

lm-eval 0.4.13 resolves `--model NAME` through a fixed mapping in `lm_eval.models` and loads no
plugins, so this module adds `recurlab` to its model registry and then runs lm-eval's unchanged
CLI on the same argv (`run` is inserted by lm-eval itself when no subcommand is given).
"""

from __future__ import annotations

BACKEND = "recurlab.evaluation.lm:RecurlabLM"


def register() -> None:
    """Add `recurlab` to lm-eval's model registry (lazily: the class loads when first used)."""
    import lm_eval.models  # noqa: F401  (fills the registry with lm-eval's own models first)
    from lm_eval.api.registry import model_registry

    if "recurlab" not in model_registry:
        model_registry.register("recurlab", target=BACKEND)


def main() -> None:
    from lm_eval.__main__ import cli_evaluate

    register()
    cli_evaluate()


if __name__ == "__main__":
    main()
