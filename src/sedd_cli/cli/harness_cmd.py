"""`sedd lm-eval`: EleutherAI's lm-evaluation-harness, run with the sedd model registered.

Every argument goes to the harness's own command line unchanged (`evaluation.harness.run_harness`);
its results table goes to stdout and its logs to stderr, as ``lm_eval`` prints them. The library
side is `sedd_cli.evaluation.harness` (the ``eval`` extra).
"""

from __future__ import annotations

from typing import Annotated

import typer

from ._app import command


@command(
    "lm-eval",
    help_examples=(
        "sedd lm-eval --model sedd --model_args pretrained=runs/names,mc=32,batch_size=16 "
        "--tasks mytask --include_path tasks/ --output_path out/",
        "sedd lm-eval --model sedd --model_args pretrained=louaaron/sedd-small,mc=128 --tasks lambada_openai",
        "sedd lm-eval --model sedd --model_args pretrained=runs/mine,bounds_log=bounds.jsonl --tasks mytask "
        "--include_path tasks/ --limit 20 --log_samples --output_path out/",
        "sedd lm-eval run -h",
    ),
    context_settings={
        "allow_extra_args": True,
        "ignore_unknown_options": True,
        "help_option_names": ["--help"],
    },
)
def lm_eval_cmd(
    args: Annotated[
        list[str] | None,
        typer.Argument(
            help="The harness's arguments, passed unchanged (--model sedd --model_args ... --tasks ...).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Evaluate a model with lm-evaluation-harness (needs the eval extra: pip install 'sedd-cli\\[eval]').

    Runs the harness's own command line with the model [bold]sedd[/bold] registered, every argument unchanged.

    model_args: pretrained=MODEL (run, checkpoint, model folder, hub id or RADD folder; required).

    Also: mc (time samples per request, default 32), batch_size, seed, device, weights, greedy.

    Generation: predictor, steps, temperature, top_p. bounds_log=FILE.jsonl: each bound and its error.

    Log-likelihoods are minus an upper bound on -log p, with Monte Carlo error (docs/evaluation.md).

    The harness's own options: [bold]sedd lm-eval run -h[/bold] (-h goes to the harness, --help is this).
    """
    from ..evaluation.harness import run_harness

    run_harness(list(args or []))
