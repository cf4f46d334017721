"""`sedd perplexity`: the likelihood bound on held-out text, and generative perplexity of samples.

The library side is `sedd_cli.evaluation`; this module parses options, shows progress on stderr and
prints the result on stdout (a table, or one JSON document with ``--json``).
"""

from __future__ import annotations

import math
import sys
from typing import Annotated

import typer

from ._app import DeviceOpt, JsonOpt, SeedOpt, command, print_json, stderr_is_terminal


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


class _Progress:
    """Progress on stderr: a Rich bar on a terminal, a plain line per ~10 % otherwise."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None
        self.task = None
        self.next_report = 0.0

    def __enter__(self):
        if self.enabled and stderr_is_terminal():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("bound"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def __call__(self, ev) -> None:
        if not self.enabled:
            return
        info = f"nll {ev.nll:.4f}  {ev.tokens_per_second:,.0f} tok/s"
        if self.bar is not None:
            if self.task is None:
                self.task = self.bar.add_task("bound", total=ev.blocks_total, info=info)
            self.bar.update(self.task, completed=ev.blocks_done, info=info)
            return
        frac = ev.blocks_done / max(ev.blocks_total, 1)
        if frac >= self.next_report or ev.blocks_done == ev.blocks_total:
            print(f"blocks {ev.blocks_done}/{ev.blocks_total}  {info}", file=sys.stderr, flush=True)
            self.next_report = frac + 0.1


def _print_bound(r) -> None:
    from rich.console import Console
    from rich.table import Table

    unit = {"token": "bits/token", "character": "bits/char", "byte": "bits/byte"}[r.unit]
    t = Table(title=f"likelihood bound: {r.data} ({r.split}) under {r.model}", show_header=False)
    t.add_column(style="bold")
    t.add_column()
    se = r.stderr_nll
    t.add_row("NLL bound (nats/token)", f"<= {_fmt(r.nll)} ± {_fmt(se)}")
    if r.nll_per_record is not None:
        per = r.n_tokens / max(r.n_blocks, 1)
        t.add_row(
            "NLL bound (nats/record)",
            f"<= {_fmt(r.nll_per_record)} ± {_fmt(r.stderr_per_record)}  (one row; {per:.2f} tokens each)",
        )
    lam = r.estimator_name == "lambda-dce"
    if not lam:
        t.add_row("  diffusion part", _fmt(r.nll_diffusion))
        t.add_row("  prior term", f"{_fmt(r.nll_prior, 6)}  ({_fmt(r.prior_per_position, 6)} nats/position)")
    if r.nll_reconstruction > 0:
        t.add_row("  t = 0 reconstruction", _fmt(r.nll_reconstruction, 6))
    t.add_row("perplexity", f"<= {_fmt(r.perplexity, 3)} ± {_fmt(r.stderr_perplexity, 3)}")
    t.add_row(unit, f"<= {_fmt(r.bits)} ± {_fmt(r.stderr_bits)}")
    t.add_row(
        "tokens / blocks", f"{r.n_tokens:,} / {r.n_blocks:,} (L = {r.n_positions // max(r.n_blocks, 1)})"
    )
    t.add_row("estimator", f"{r.estimator_name}: {r.estimator}")
    what, var = ("masking probabilities K", "lambda") if lam else ("time samples K", "t")
    t.add_row(what, f"{r.mc} ({r.spacing} spacing, {var} >= {r.t_min:g})")
    t.add_row("speed", f"{r.tokens_per_second:,.0f} tokens/s ({r.seconds:.1f} s on {r.device})")
    t.add_row("what counts", r.token_rule)
    t.add_row("bound on", r.bound_on)
    Console(soft_wrap=False).print(t)


def _print_generative(r) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"generative perplexity of {r.samples_from} under {r.evaluator}", show_header=False)
    t.add_column(style="bold")
    t.add_column()
    t.add_row("mean of per-sample perplexities (reference)", _fmt(r.mean_sample_perplexity, 3))
    t.add_row("exp(mean token NLL)", _fmt(r.perplexity, 3))
    t.add_row("mean token NLL (nats)", _fmt(r.nll))
    t.add_row("unigram entropy per sample (nats)", _fmt(r.entropy))
    t.add_row("samples / tokens", f"{r.n_samples} / {r.n_tokens:,}")
    t.add_row("scored", r.scored)
    Console(soft_wrap=False).print(t)


@command(
    "perplexity",
    help_examples=(
        "sedd perplexity runs/names --data babynames",
        "sedd perplexity models/sedd-small --data wikitext2 --mc 32 --json",
        "sedd perplexity runs/mine --data notes.txt --split all --max-blocks 64",
        "sedd perplexity --generative samples.txt --eval-model gpt2-large",
        "sedd perplexity --generative runs/names --eval-model sedd:runs/names --num-samples 64",
    ),
)
def perplexity_cmd(
    model: Annotated[
        str | None,
        typer.Argument(help="Run directory, checkpoint or model folder (default: the newest run)."),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="wikitext2 | wikitext103 | ptb | lambada | lm1b | babynames | hf:NAME | a local file "
            "(default: the model's own training data).",
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            help="train | validation | test | all (local files). Default: test for the zero-shot sets, "
            "validation for babynames, all for local files.",
        ),
    ] = None,
    mc: Annotated[
        int,
        typer.Option(
            "--mc",
            help="K, stratified time samples per block (masking probabilities for a time-independent"
            " model; 1 to 10,000).",
        ),
    ] = 16,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            help="Blocks per forward pass (default 32); with --generative, sequences per evaluator pass "
            "(default 8).",
        ),
    ] = None,
    max_blocks: Annotated[
        int | None, typer.Option("--max-blocks", help="Evaluate the first N blocks only.")
    ] = None,
    spacing: Annotated[
        str,
        typer.Option(
            "--time-spacing",
            help="sqrt: t = v^2 with v stratified (low variance, default) | uniform: t stratified.",
        ),
    ] = "sqrt",
    generative: Annotated[
        str | None,
        typer.Option(
            "--generative",
            help="Score samples instead: a samples file (from sedd sample --out) or a MODEL to sample from.",
        ),
    ] = None,
    eval_model: Annotated[
        str,
        typer.Option(
            "--eval-model",
            help="Evaluator for --generative: a local transformers causal LM, "
            "or sedd:PATH (a sedd model's bound).",
        ),
    ] = "gpt2-large",
    num_samples: Annotated[
        int, typer.Option("--num-samples", help="--generative MODEL: number of fresh samples.")
    ] = 32,
    steps: Annotated[
        int | None, typer.Option("--steps", help="--generative MODEL: sampling steps (default: the model's).")
    ] = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Upper bound on the negative log-likelihood (perplexity, bits per token/character, standard
    error) of a model on held-out text, or the generative perplexity of samples.

    The bound: diffusion-weighted score entropy over t in (0, 1], K stratified times per block.

    It adds the prior term at t = 1 and, when sigma(0) > 0, the t = 0 reconstruction term.

    It bounds -log p^pi: the model started from the prior pi, not the all-mask start of sampling.

    Time-independent models (RADD): the lambda-form bound, K masking probabilities, no prior term.
    """
    # every option is checked by the library (sedd_cli.evaluation.options), before any model is loaded
    if generative is not None:
        from ..evaluation import generative_perplexity

        gen = generative_perplexity(
            generative,
            eval_model=eval_model,
            num_samples=num_samples,
            steps=steps,
            batch_size=8 if batch_size is None else batch_size,
            mc=mc,
            seed=seed,
            device=device,
        )
        if json_out:
            print_json({"command": "perplexity", "mode": "generative", **gen.to_dict()})
        else:
            _print_generative(gen)
        return

    from ..evaluation import perplexity

    with _Progress(enabled=True) as progress:
        result = perplexity(
            model,
            data=data,
            split=split,
            mc=mc,
            batch_size=32 if batch_size is None else batch_size,
            max_blocks=max_blocks,
            seed=seed,
            device=device,
            on_step=progress,
            spacing=spacing,
        )
    if json_out:
        print_json({"command": "perplexity", "mode": "bound", **result.to_dict()})
    else:
        _print_bound(result)
