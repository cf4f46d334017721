"""`sedd sample`, `sedd infill` (docs/sampling.md).

Heavy imports (torch, the sampling package, Rich Live) happen inside the command bodies.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import SeddError
from ._app import DeviceOpt, JsonOpt, SeedOpt, command, print_json

_SAMPLE_EXAMPLES = (
    "sedd sample",
    "sedd sample --steps 10 --show-intermediate",
    "sedd sample runs/names-20250101-120000 --num-samples 32 --steps 64",
    "sedd sample my-model --predictor euler --precision float32 --seed 3 --json",
    "sedd sample --steps 256 --show-intermediate --every 16 --save-frames frames.jsonl",
    "sedd sample --num-samples 200 --out names.txt",
    "sedd sample --num-samples 20 --top-p 0.9",
    "sedd sample --predictor first-hitting --json",
    "sedd sample --predictor first-hitting --tokens-per-step 4 --show-intermediate",
)
_INFILL_EXAMPLES = (
    'sedd infill --prefix "Hi my name is" --suffix "and that\'s why I\'m late" --steps 1024',
    'sedd infill "The [MASK:5] sat on the [MASK]." --steps 128',
    'sedd infill "ma[MASK:4]" --num-samples 8',
    'sedd infill --prefix "ja" --length 6 --json',
    'sedd infill "ma[MASK:4]" -n 8 --temperature 0.7',
    'sedd infill "ma[MASK:4]" -n 8 --predictor first-hitting',
    'sedd infill "ma[MASK:0-6]a" -m runs/names-infill-RUN -n 8   # the model picks the length',
    'sedd infill --prefix "j" --suffix "n" --gap 1-6 -m runs/names-infill-RUN --json',
)

ModelArg = Annotated[
    str | None,
    typer.Argument(
        metavar="[MODEL]",
        help="Run directory, checkpoint, model folder or pretrained id (default: newest run under runs/).",
        show_default=False,
    ),
]
StepsOpt = Annotated[
    int | None, typer.Option("--steps", help="Reverse-process steps (default: the model's, usually 128).")
]
PredictorOpt = Annotated[
    str | None,
    typer.Option(
        "--predictor",
        help="analytic (Tweedie tau-leaping) | euler | none | first-hitting (absorbing models: "
        "exact, one network call per token; ignores --steps).",
    ),
]
TokensPerStepOpt = Annotated[
    int | None,
    typer.Option(
        "--tokens-per-step",
        help="first-hitting: positions unmasked per network call (default: the model's, 1 = exact; "
        "more is faster and approximate).",
    ),
]
CacheOpt = Annotated[
    bool,
    typer.Option(
        "--cache/--no-cache",
        help="Time-independent models: rerun the network only on sequences that changed (same "
        "samples, fewer network rows).",
    ),
]
NumOpt = Annotated[int | None, typer.Option("--num-samples", "-n", help="How many samples.")]
BatchOpt = Annotated[
    int | None, typer.Option("--batch-size", help="Sequences per batch (larger runs are split).")
]
LengthOpt = Annotated[
    int | None, typer.Option("--length", help="Tokens per sample (default: the model's length).")
]
EpsOpt = Annotated[float | None, typer.Option("--eps", help="End of the time grid (default 1e-5).")]
DenoiseOpt = Annotated[
    bool | None,
    typer.Option("--denoise/--no-denoise", help="Final Tweedie denoising step.", show_default=False),
]
PrecisionOpt = Annotated[
    str | None,
    typer.Option(
        "--precision", help="Categorical draws in float64 (default) or float32 (reference, biased)."
    ),
]
TemperatureOpt = Annotated[
    float | None,
    typer.Option(
        "--temperature",
        help="Draw each unmasked token from exp(logits / T); below 1 sharper, 0 arg-max "
        "(default: the model's, 1). Absorbing models only.",
    ),
]
TopPOpt = Annotated[
    float | None,
    typer.Option(
        "--top-p",
        help="Nucleus: draw each token among the most likely ones holding this much probability "
        "(default: the model's, 1 = all). Absorbing models only.",
    ),
]
ShowOpt = Annotated[
    bool,
    typer.Option("--show-intermediate", help="Show the denoising live on stderr (plain lines if not a tty)."),
]
EveryOpt = Annotated[int, typer.Option("--every", help="With --show-intermediate: show every K-th step.")]
FramesOpt = Annotated[
    Path | None, typer.Option("--save-frames", help="Write every intermediate state as JSON lines to FILE.")
]
OutOpt = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Write the samples to FILE (.jsonl: one JSON object a line)."),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing --out / --save-frames file.")]
InfillForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Overwrite an existing --out / --save-frames file, and try a [MASK:A-B] gap on a model "
        "not trained with data.insert_pads.",
    ),
]
GapOpt = Annotated[
    str | None,
    typer.Option(
        "--gap",
        help="A-B: a gap of A to B tokens between --prefix and --suffix (the suffix right after it); "
        "needs a model trained with data.insert_pads.",
        show_default=False,
    ),
]
GapLawOpt = Annotated[
    str | None,
    typer.Option(
        "--gap-law",
        help="Law of [MASK:A-B] fills: data (the data's, by rejection; default for models trained with "
        "pad insertion) or model (the sampler's own).",
        show_default=False,
    ),
]
KeepEosOpt = Annotated[
    bool, typer.Option("--keep-eos", help="Keep text after the end-of-text token (GPT-2 models).")
]


class _Watch:
    """The on_step callback: live view and/or frame file."""

    def __init__(self, pre: Any, show: bool, every: int, frames: Path | None):
        from ..display import DenoiseView, FrameWriter

        mask_id = pre.graph.dim if not pre.graph.absorb else pre.graph.mask_id
        self.view = DenoiseView(pre.tokenizer, mask_id, every=every) if show else None
        self.frames = FrameWriter(frames, pre.tokenizer, mask_id) if frames is not None else None

    def __call__(self, event: Any) -> None:
        if self.view is not None:
            self.view.update(event)
        if self.frames is not None:
            self.frames.update(event)

    def __enter__(self) -> _Watch:
        if self.view is not None:
            self.view.__enter__()
        return self

    def __exit__(self, exc_type, *rest: Any) -> None:
        if self.view is not None:
            self.view.__exit__(exc_type, *rest)
        if self.frames is not None:
            self.frames.close(ok=exc_type is None)


def _check(
    every: int,
    predictor: str | None,
    precision: str | None,
    out: Path | None,
    frames: Path | None,
    temperature: float | None = None,
    top_p: float | None = None,
    force: bool = False,
    tokens_per_step: int | None = None,
):
    """The library's checks of the options that can fail before a model is loaded."""
    from ..sampling import check_predictor, check_shaping
    from ..sampling.checks import check_every, check_outputs, check_precision, check_tokens_per_step

    check_every(every)
    if tokens_per_step is not None:
        check_tokens_per_step(tokens_per_step)
    check_shaping(1.0 if temperature is None else temperature, 1.0 if top_p is None else top_p)
    if predictor is not None:
        check_predictor(predictor)
    if precision is not None:
        check_precision(precision)
    check_outputs(out, frames, force)


def _write_out(path: Path, texts: list[str], result: Any, plain: list[str]) -> None:
    import json

    from ..runtime import atomic_write_text

    if path.suffix in (".jsonl", ".json"):
        body = "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in result.to_dict()["samples"])
    elif any("\n" in t for t in plain):
        body = "".join(t + "\n" + "=" * 80 + "\n" for t in plain)
    else:
        body = "".join(t + "\n" for t in plain)
    try:  # atomic: a failed write (disk full) leaves no file, or the old one with --force
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, body)
    except OSError as exc:
        raise SeddError(
            f"could not write the samples to {str(path)!r}: {exc.strerror or exc} "
            f"({len(body.encode('utf-8')):,} bytes needed); nothing was written"
        ) from None
    typer.echo(f"wrote {len(texts)} samples to {path}", err=True)


def _print_texts(plain: list[str], rich_items: list[Any] | None = None) -> None:
    """Final texts on stdout: Rich on a terminal, plain (one a line, or ===-separated) otherwise."""
    multiline = any("\n" in t for t in plain)
    if sys.stdout.isatty() and rich_items is not None:
        from rich.console import Console
        from rich.rule import Rule

        console = Console()
        for k, item in enumerate(rich_items):
            if multiline:
                console.print(Rule(f"sample {k}", style="dim"))
            console.print(item)
        return
    for t in plain:
        typer.echo(t)
        if multiline:
            typer.echo("=" * 80)


def _loaded(model: str | None, device: str) -> Any:
    from ..checkpoints import load_pretrained

    return load_pretrained(model, device=device)


@command("sample", help_examples=_SAMPLE_EXAMPLES)
def sample_command(
    model: ModelArg = None,
    steps: StepsOpt = None,
    predictor: PredictorOpt = None,
    num_samples: NumOpt = None,
    batch_size: BatchOpt = None,
    length: LengthOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    eps: EpsOpt = None,
    denoise: DenoiseOpt = None,
    precision: PrecisionOpt = None,
    temperature: TemperatureOpt = None,
    top_p: TopPOpt = None,
    tokens_per_step: TokensPerStepOpt = None,
    cache: CacheOpt = True,
    show_intermediate: ShowOpt = False,
    every: EveryOpt = 1,
    save_frames: FramesOpt = None,
    out: OutOpt = None,
    force: ForceOpt = False,
    keep_eos: KeepEosOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Generate text from a model by running the reverse diffusion from all-masked sequences."""
    _check(every, predictor, precision, out, save_frames, temperature, top_p, force, tokens_per_step)
    from ..sampling import sample

    pre = _loaded(model, device)
    with _Watch(pre, show_intermediate, every, save_frames) as watch:
        result = sample(
            pre,
            steps=steps,
            predictor=predictor,
            num_samples=num_samples,
            batch_size=batch_size,
            length=length,
            seed=seed,
            eps=eps,
            denoise=denoise,
            precision=precision,
            temperature=temperature,
            top_p=top_p,
            tokens_per_step=tokens_per_step,
            cache=cache,
            keep_eos=keep_eos,
            on_step=watch if (show_intermediate or save_frames) else None,
        )
    if out is not None:
        _write_out(out, result.texts, result, result.texts)
    if json_out:
        print_json(result.to_dict())
    elif out is None:
        _print_texts(result.texts, result.texts)


@command("infill", help_examples=_INFILL_EXAMPLES)
def infill_command(
    template: Annotated[
        str | None,
        typer.Argument(
            help="Text with [MASK] (one token to fill), [MASK:N] (N tokens) or [MASK:A-B] (A to B "
            "tokens); '-' reads stdin.",
            show_default=False,
        ),
    ] = None,
    prefix: Annotated[str | None, typer.Option("--prefix", help="Given text at the start.")] = None,
    suffix: Annotated[
        str | None, typer.Option("--suffix", help="Given text at the end of --length (right after --gap).")
    ] = None,
    gap: GapOpt = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Run directory, checkpoint, model folder or pretrained id."),
    ] = None,
    length: LengthOpt = None,
    steps: StepsOpt = None,
    predictor: PredictorOpt = None,
    num_samples: NumOpt = None,
    batch_size: BatchOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    eps: EpsOpt = None,
    denoise: DenoiseOpt = None,
    precision: PrecisionOpt = None,
    temperature: TemperatureOpt = None,
    top_p: TopPOpt = None,
    tokens_per_step: TokensPerStepOpt = None,
    cache: CacheOpt = True,
    show_intermediate: ShowOpt = False,
    every: EveryOpt = 1,
    save_frames: FramesOpt = None,
    out: OutOpt = None,
    force: InfillForceOpt = False,
    gap_law: GapLawOpt = None,
    keep_eos: KeepEosOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Fill in masked positions, keeping the given text exactly (filled spans are highlighted)."""
    from ._app import read_text_arg

    _check(every, predictor, precision, out, save_frames, temperature, top_p, force, tokens_per_step)
    if template is not None:
        template = read_text_arg(template)
    from ..sampling.checks import check_infill_request

    check_infill_request(template, prefix, suffix, gap)
    from ..display import infill_plain, infill_text
    from ..sampling import infill

    pre = _loaded(model, device)
    with _Watch(pre, show_intermediate, every, save_frames) as watch:
        result = infill(
            pre,
            prefix=prefix,
            suffix=suffix,
            template=template,
            length=length,
            steps=steps,
            predictor=predictor,
            num_samples=num_samples,
            batch_size=batch_size,
            seed=seed,
            eps=eps,
            denoise=denoise,
            precision=precision,
            temperature=temperature,
            top_p=top_p,
            tokens_per_step=tokens_per_step,
            cache=cache,
            keep_eos=keep_eos,
            on_step=watch if (show_intermediate or save_frames) else None,
            force=force,
            gap=gap,
            gap_law=gap_law,
        )
    plain = [infill_plain(s) for s in result.segments]
    if out is not None:
        _write_out(out, result.texts, result, plain)
    if json_out:
        print_json(result.to_dict())
    elif out is None:
        _print_texts(plain, [infill_text(s) for s in result.segments])
